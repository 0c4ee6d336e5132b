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

/// How long the index (or the audit log in it) may take to open and be read.
pub const INDEX_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs `f` in a thread of its own and waits for it at most `wait`: a panic or a wait
/// without end there (sled on a crafted database) is an error here, never a hang. A thread
/// still blocked when the process exits ends with it.
pub fn bounded<T: Send + 'static>(
    wait: std::time::Duration,
    f: impl FnOnce() -> std::result::Result<T, String> + Send + 'static,
) -> std::result::Result<T, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
            .unwrap_or_else(|_| Err("reading it panicked".into()));
        let _ = tx.send(r);
    });
    rx.recv_timeout(wait)
        .unwrap_or_else(|_| Err(format!("reading it took more than {} s", wait.as_secs())))
}
