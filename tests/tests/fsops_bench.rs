//! Host tests of fsops-bench's `serve` mode: the fsguard benchmark asks it, through two
//! fifos, to run the workload inside a capsule, so its protocol is checked here, without a
//! guest.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

/// One request written to `req` (one opening), and the reply line read from `rep`.
fn ask(req: &Path, rep: &Path, request: &str) -> String {
    let mut w = fs::OpenOptions::new().write(true).open(req).unwrap();
    writeln!(w, "{request}").unwrap();
    drop(w);
    let reply = fs::read_to_string(rep).unwrap();
    assert!(reply.ends_with('\n'), "{reply:?}");
    assert_eq!(reply.lines().count(), 1, "{reply:?}");
    reply.trim_end().to_string()
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn serve_answers_requests_through_fifos_until_quit() {
    let tmp = TempDir::new().unwrap();
    let (req, rep) = (tmp.path().join("req"), tmp.path().join("rep"));
    mkfifo(&req);
    mkfifo(&rep);
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_fsops-bench"))
        .arg("serve")
        .args([&req, &rep])
        .spawn()
        .unwrap();

    // The conversation runs in a thread: a server that died would leave an open of a fifo
    // waiting forever.
    let (tx, rx) = mpsc::channel();
    let (r, p, w): (PathBuf, PathBuf, PathBuf) = (req.clone(), rep.clone(), work.clone());
    thread::spawn(move || {
        let ops = ask(&r, &p, &format!("ops {} 20 2", w.display()));
        let cgroup = ask(&r, &p, "where");
        let missing = ask(&r, &p, "ops /no/such/dir 1 1");
        let bad_number = ask(&r, &p, &format!("ops {} many 1", w.display()));
        let unknown = ask(&r, &p, "fly");
        let no_rounds = ask(&r, &p, &format!("ops {} 1 0", w.display()));
        let ops_again = ask(&r, &p, &format!("ops {} 5 1", w.display()));
        let mut q = fs::OpenOptions::new().write(true).open(&r).unwrap();
        writeln!(q, "quit").unwrap();
        tx.send((
            ops, cgroup, missing, bad_number, unknown, no_rounds, ops_again,
        ))
        .unwrap();
    });
    let answers = rx.recv_timeout(Duration::from_secs(60));
    let code = wait_exit(&mut server, Duration::from_secs(20));
    if code.is_none() {
        server.kill().ok();
    }
    let (ops, cgroup, missing, bad_number, unknown, no_rounds, ops_again) = match answers {
        Ok(a) => a,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("fsops-bench serve did not answer within 60 s")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            panic!("the conversation with fsops-bench serve failed (see the panic above)")
        }
    };

    let secs: f64 = ops.parse().unwrap_or_else(|_| panic!("ops reply {ops:?}"));
    assert!(secs > 0.0, "{ops}");
    // The workload leaves its directory as it found it.
    assert_eq!(fs::read_dir(&work).unwrap().count(), 0);
    let own = fs::read_to_string("/proc/self/cgroup").unwrap();
    let own_v2 = own.lines().find(|l| l.starts_with("0::")).unwrap();
    assert_eq!(cgroup, own_v2, "the server reports its cgroup (v2)");
    assert!(
        missing.starts_with("error: /no/such/dir: "),
        "a failed workload names its directory: {missing:?}"
    );
    assert_eq!(bad_number, "error: \"many\" is not a number");
    assert_eq!(unknown, "error: unknown request \"fly\"");
    assert_eq!(no_rounds, "error: ROUNDS must be at least 1");
    assert!(
        ops_again.parse::<f64>().is_ok(),
        "still serving: {ops_again:?}"
    );
    assert_eq!(code, Some(0), "quit ends the server with status 0");
}

#[test]
fn serve_without_its_fifos_fails_naming_the_path() {
    let tmp = TempDir::new().unwrap();
    let req = tmp.path().join("absent");
    let out = Command::new(env!("CARGO_BIN_EXE_fsops-bench"))
        .arg("serve")
        .arg(&req)
        .arg(tmp.path().join("rep"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("{}: ", req.display())), "{stderr}");
}
