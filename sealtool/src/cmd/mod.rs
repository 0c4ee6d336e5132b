//! One module per subcommand; each exposes `Args` (when it takes any) and `run`.

pub mod audit;
pub mod enforce;
pub mod level;
pub mod list;
pub mod register;
pub mod registry;
pub mod remove;
pub mod run;
pub mod seal;
pub mod show;
pub mod status;
pub mod verify;
pub mod watch;
