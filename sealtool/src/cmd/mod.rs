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

/// Says on stderr when a registry that refuses writes was read through a copy of its index.
pub fn note_index_copy(reg: &capsule_core::registry::Registry) {
    if let Some(copy) = reg.index_copy() {
        eprintln!(
            "sealtool: note: {} refuses writes: its index was read from a copy ({})",
            capsule_core::display::path(reg.dir()),
            capsule_core::display::path(copy)
        );
    }
}
