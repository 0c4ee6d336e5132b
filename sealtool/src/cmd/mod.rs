//! One module per subcommand; each exposes `Args` (when it takes any) and `run`.

pub mod list;
pub mod register;
pub mod registry;
pub mod show;
pub mod verify;
