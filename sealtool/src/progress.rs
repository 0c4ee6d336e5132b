//! Live progress on a terminal (entries, bytes, rate) while a tree is walked; silent when
//! stderr is not a terminal or with --quiet.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use capsule_core::walk::Progress;

use crate::output::human_bytes;

pub struct Display {
    pub counters: Arc<Progress>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Display {
    pub fn start(label: &str, quiet: bool) -> Self {
        let counters = Arc::new(Progress::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let (c, s, label) = (counters.clone(), stop.clone(), label.to_string());
            std::thread::spawn(move || {
                let start = Instant::now();
                while !s.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                    let (n, b) = (
                        c.entries.load(Ordering::Relaxed),
                        c.bytes.load(Ordering::Relaxed),
                    );
                    let rate = b as f64 / start.elapsed().as_secs_f64().max(0.001);
                    eprint!(
                        "\r\x1b[K{label}: {n} entries, {} ({}/s)",
                        human_bytes(b),
                        human_bytes(rate as u64)
                    );
                    let _ = std::io::stderr().flush();
                }
                eprint!("\r\x1b[K");
            })
        });
        Display {
            counters,
            stop,
            thread,
        }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
