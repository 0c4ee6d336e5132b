//! End-to-end tests of `sealtool watch` on a host without kernel enforcement: each test
//! seals a tree in a fresh temporary directory (the seal is recorded, enforcement is not
//! active: exit 3), runs `sealtool watch --json` as a child, makes one class of change the
//! verify tests make, and checks that the change and its drift class are reported within
//! one second of the change. Latencies are printed (`--nocapture` shows them).

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// The functional deadline of the issue: each change is reported within a second.
const REPORT_WITHIN: Duration = Duration::from_secs(1);
/// How long starting the watcher or a one-shot sealtool run may take.
const DEADLINE: Duration = Duration::from_secs(60);

use capsule_tests::{sealtool, Out};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// Runs `cmd` to completion (killed and failed after `DEADLINE`).
fn run(mut cmd: Command) -> Out {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let desc = format!("{cmd:?}");
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {desc}: {e}"));
    let out = drain(child.stdout.take().expect("stdout"));
    let err = drain(child.stderr.take().expect("stderr"));
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{desc} did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Out {
        code: status.code().unwrap_or(-1),
        stdout: text(out),
        stderr: text(err),
    }
}

fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

fn text(h: std::thread::JoinHandle<Vec<u8>>) -> String {
    String::from_utf8_lossy(&h.join().expect("reader")).into_owned()
}

fn tool(prog: &str, args: &[&str]) {
    let mut c = Command::new(prog);
    c.args(args);
    let out = run(c);
    assert_eq!(out.code, 0, "{prog} {args:?} failed:\n{out}");
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

/// A temporary directory holding a capsule tree (`tree/`) and a registry (`reg/`).
struct Fixture {
    tmp: TempDir,
    tree: PathBuf,
    reg: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("capsule-watch-")
            .tempdir()
            .expect("tempdir");
        let tree = tmp.path().join("tree");
        fs::create_dir(&tree).expect("mkdir tree");
        let reg = tmp.path().join("reg");
        Fixture { tmp, tree, reg }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.tree.join(rel)
    }

    fn write(&self, rel: &str, content: &str) {
        let p = self.p(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("mkdir -p");
        }
        fs::write(&p, content).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(sealtool());
        c.env_remove("CAPSULE_REGISTRY")
            .arg("--registry")
            .arg(&self.reg)
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Out {
        run(self.cmd(args))
    }

    /// Registers and seals the tree as `name`: on this host the seal is recorded and the
    /// kernel does not enforce it (exit 3), the case `watch` is for.
    fn seal(&self, name: &str) {
        let out = self.run(&["register", s(&self.tree), "--name", name, "--seal"]);
        assert_eq!(
            out.code, 3,
            "register --seal should record an unenforced seal:\n{out}"
        );
        assert!(out.stdout.contains("enforcement is NOT active"), "{out}");
    }

    /// Starts `sealtool watch --json NAME...` and waits for its "watching" line.
    fn watch(&self, names: &[&str]) -> Watcher {
        let mut args = vec!["watch", "--json"];
        args.extend_from_slice(names);
        let w = Watcher::start(self.cmd(&args));
        let first = w.wait_for(Instant::now(), DEADLINE, "the watching line", |v| {
            v["event"] == "watching"
        });
        assert_eq!(first.0["prevents"], false, "{}", first.0);
        w
    }
}

/// A running `sealtool watch --json`: its stdout lines arrive, timestamped, on a channel.
/// Killed (by its pid) and reaped on drop.
struct Watcher {
    child: Child,
    lines: mpsc::Receiver<(Instant, Value)>,
    seen: Mutex<Vec<(Instant, Value)>>,
    stderr: Arc<Mutex<String>>,
}

impl Watcher {
    fn start(mut cmd: Command) -> Watcher {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start sealtool watch");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| Value::String(format!("NOT JSON ({e}): {line}")));
                if tx.send((Instant::now(), v)).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("stderr");
        let keep = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                keep.lock()
                    .expect("stderr lock")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Watcher {
            child,
            lines,
            seen: Mutex::new(Vec::new()),
            stderr,
        }
    }

    /// Waits until a line matching `pred` arrives (lines read earlier count when they
    /// arrived after `since`), at most `within` after `since`. Returns the line and its
    /// delay after `since`.
    fn wait_for(
        &self,
        since: Instant,
        within: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> (Value, Duration) {
        let mut seen = self.seen.lock().expect("seen lock");
        if let Some((at, v)) = seen.iter().find(|(at, v)| *at >= since && pred(v)) {
            return (v.clone(), at.saturating_duration_since(since));
        }
        loop {
            let left = (since + within).saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((at, v)) => {
                    seen.push((at, v.clone()));
                    if pred(&v) {
                        return (v, at.saturating_duration_since(since));
                    }
                }
                Err(_) => panic!(
                    "no {what} within {within:?}; lines so far:\n{}\n--- stderr ---\n{}",
                    seen.iter()
                        .map(|(_, v)| v.to_string())
                        .collect::<Vec<_>>()
                        .join("\n"),
                    self.stderr.lock().expect("stderr lock")
                ),
            }
        }
    }

    /// Waits for a `change` line of `kind` at `rel`, within a second of `since`.
    fn change(&self, since: Instant, rel: &str, kind: &str) -> Duration {
        let (_, d) = self.wait_for(since, REPORT_WITHIN, &format!("{kind} of {rel}"), |v| {
            v["event"] == "change" && v["rel"] == rel && v["kind"] == kind
        });
        eprintln!(
            "latency change {kind:<12} {rel:<10} {:>4} ms",
            d.as_millis()
        );
        d
    }

    /// Waits for a `drift` line of `class` at `rel`, within a second of `since`.
    fn drift(&self, since: Instant, rel: &str, class: &str) -> Value {
        let (v, d) = self.wait_for(
            since,
            REPORT_WITHIN,
            &format!("{class} drift at {rel}"),
            |v| v["event"] == "drift" && v["rel"] == rel && v["class"] == class,
        );
        eprintln!(
            "latency drift  {class:<12} {rel:<10} {:>4} ms",
            d.as_millis()
        );
        v
    }

    /// Waits for a `clean` line at `rel` saying it is back in its sealed state.
    fn back(&self, since: Instant, rel: &str) {
        let (_, d) = self.wait_for(
            since,
            REPORT_WITHIN,
            &format!("{rel} back to sealed"),
            |v| v["event"] == "clean" && v["rel"] == rel && v["back"] == true,
        );
        eprintln!(
            "latency back   {:<12} {rel:<10} {:>4} ms",
            "",
            d.as_millis()
        );
    }

    /// A line already read that matches `pred`.
    fn seen_line(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let seen = self.seen.lock().expect("seen lock");
        seen.iter()
            .map(|(_, v)| v)
            .find(|v| pred(v))
            .cloned()
            .unwrap_or_else(|| panic!("no {what} among the lines read"))
    }

    /// The drift classes reported so far at `rel`.
    fn classes(&self, rel: &str) -> BTreeSet<String> {
        // Lines already read are in `seen`; take whatever else has arrived too.
        let mut seen = self.seen.lock().expect("seen lock");
        while let Ok(line) = self.lines.try_recv() {
            seen.push(line);
        }
        seen.iter()
            .map(|(_, v)| v)
            .filter(|v| v["event"] == "drift" && v["rel"] == rel)
            .filter_map(|v| v["class"].as_str().map(str::to_string))
            .collect()
    }

    /// Sends `sig` and waits for the exit status.
    fn stop(mut self, sig: libc::c_int) -> i32 {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill");
        self.wait_exit()
    }

    fn wait_exit(&mut self) -> i32 {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st.code().unwrap_or(-1);
            }
            assert!(start.elapsed() < DEADLINE, "sealtool watch did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One mutation class: seal a tree built by `build`, watch it, apply `mutate`, and expect
/// every `(rel, kind)` change and every `(rel, class)` drift within a second.
fn case(
    build: impl Fn(&Fixture),
    mutate: impl Fn(&Fixture),
    changes: &[(&str, &str)],
    drifts: &[(&str, &str)],
) -> (Fixture, Watcher) {
    let f = Fixture::new();
    build(&f);
    f.seal("app");
    let w = f.watch(&["app"]);
    let t = Instant::now();
    mutate(&f);
    for (rel, kind) in changes {
        w.change(t, rel, kind);
    }
    for (rel, class) in drifts {
        w.drift(t, rel, class);
    }
    (f, w)
}

// ---------------------------------------------------------------------------------------
// Every mutation class of the verify tests
// ---------------------------------------------------------------------------------------

#[test]
fn added_file_and_directory() {
    case(
        |f| f.write("a", "a"),
        |f| {
            f.write("new", "n");
            f.write("nd/x", "x");
        },
        &[("new", "create"), ("nd", "create")],
        &[("new", "added"), ("nd", "added"), ("nd/x", "added")],
    );
}

#[test]
fn removed_file_and_directory() {
    case(
        |f| {
            f.write("a", "a");
            f.write("keep", "k");
            f.write("d/x", "x");
        },
        |f| {
            fs::remove_file(f.p("a")).unwrap();
            fs::remove_dir_all(f.p("d")).unwrap();
        },
        &[("a", "remove"), ("d/x", "remove"), ("d", "remove")],
        &[("a", "removed"), ("d", "removed"), ("d/x", "removed")],
    );
}

#[test]
fn content_same_size() {
    let (_f, w) = case(
        |f| {
            f.write("a", "aaaa");
            f.write("b", "same");
        },
        |f| f.write("a", "bbbb"),
        &[("a", "modify")],
        &[("a", "content")],
    );
    assert_eq!(w.classes("a"), BTreeSet::from(["content".to_string()]));
    assert!(w.classes("b").is_empty());
}

#[test]
fn size() {
    let (_f, w) = case(
        |f| f.write("a", "hello"),
        |f| f.write("a", "hello world"),
        &[("a", "modify")],
        &[("a", "content"), ("a", "size")],
    );
    let detail = w.seen_line("size drift", |v| v["class"] == "size")["detail"].to_string();
    assert!(detail.contains('5') && detail.contains("11"), "{detail}");
}

#[test]
fn type_change() {
    case(
        |f| {
            f.write("to-dir", "x");
            f.write("to-link", "y");
        },
        |f| {
            fs::remove_file(f.p("to-dir")).unwrap();
            fs::create_dir(f.p("to-dir")).unwrap();
            fs::remove_file(f.p("to-link")).unwrap();
            symlink("to-dir", f.p("to-link")).unwrap();
        },
        &[
            ("to-dir", "remove"),
            ("to-dir", "create"),
            ("to-link", "create"),
        ],
        &[("to-dir", "type"), ("to-link", "type")],
    );
}

#[test]
fn mode_and_setuid() {
    let (_f, w) = case(
        |f| {
            f.write("prog", "#!/bin/sh\n");
            f.write("data", "d");
            chmod(&f.p("prog"), 0o755);
            chmod(&f.p("data"), 0o644);
        },
        |f| {
            chmod(&f.p("prog"), 0o4755);
            chmod(&f.p("data"), 0o664);
        },
        &[("prog", "metadata"), ("data", "metadata")],
        &[("prog", "mode"), ("data", "mode")],
    );
    let v = w.seen_line("prog mode drift", |v| {
        v["rel"] == "prog" && v["class"] == "mode"
    });
    let d = v["detail"].to_string();
    assert!(d.contains("0755") && d.contains("4755"), "{d}");
}

#[test]
fn owner() {
    assert!(
        is_root(),
        "this test needs root (chown); run the suite as root"
    );
    case(
        |f| f.write("a", "a"),
        |f| std::os::unix::fs::chown(f.p("a"), Some(1234), Some(5678)).unwrap(),
        &[("a", "metadata")],
        &[("a", "owner")],
    );
}

#[test]
fn symlink_target() {
    case(
        |f| {
            f.write("t1", "1");
            f.write("t2", "2");
            symlink("t1", f.p("link")).unwrap();
        },
        |f| {
            fs::remove_file(f.p("link")).unwrap();
            symlink("t2", f.p("link")).unwrap();
        },
        &[("link", "remove"), ("link", "create")],
        &[("link", "symlink-target")],
    );
}

#[test]
fn device() {
    assert!(
        is_root(),
        "this test needs root (mknod); run the suite as root"
    );
    case(
        |f| tool("mknod", &["-m", "0644", s(&f.p("dev")), "c", "1", "3"]),
        |f| {
            fs::remove_file(f.p("dev")).unwrap();
            tool("mknod", &["-m", "0644", s(&f.p("dev")), "c", "1", "5"]);
        },
        &[("dev", "create")],
        &[("dev", "device")],
    );
}

#[test]
fn xattrs() {
    case(
        |f| {
            for n in ["added", "changed", "removed"] {
                f.write(n, n);
            }
            tool(
                "setfattr",
                &["-n", "user.keep", "-v", "1", s(&f.p("changed"))],
            );
            tool(
                "setfattr",
                &["-n", "user.gone", "-v", "1", s(&f.p("removed"))],
            );
        },
        |f| {
            tool("setfattr", &["-n", "user.new", "-v", "1", s(&f.p("added"))]);
            tool(
                "setfattr",
                &["-n", "user.keep", "-v", "2", s(&f.p("changed"))],
            );
            tool("setfattr", &["-x", "user.gone", s(&f.p("removed"))]);
        },
        &[
            ("added", "metadata"),
            ("changed", "metadata"),
            ("removed", "metadata"),
        ],
        &[
            ("added", "xattrs"),
            ("changed", "xattrs"),
            ("removed", "xattrs"),
        ],
    );
}

#[test]
fn hard_link_inside_tree() {
    case(
        |f| f.write("a", "a"),
        |f| fs::hard_link(f.p("a"), f.p("b")).unwrap(),
        &[("b", "create")],
        &[("a", "hard-links"), ("b", "added")],
    );
}

/// Nothing happens inside the tree: only the inode's own watch sees its link count change.
#[test]
fn hard_link_from_outside() {
    let (f, w) = case(
        |f| {
            f.write("a", "a");
            f.write("other", "o");
        },
        |f| {
            let outside = f.tmp.path().join("outside");
            fs::create_dir(&outside).unwrap();
            fs::hard_link(f.p("a"), outside.join("a-link")).unwrap();
        },
        &[("a", "metadata")],
        &[("a", "hard-links")],
    );
    // Writing through the outside link is seen too.
    let t = Instant::now();
    fs::write(f.tmp.path().join("outside/a-link"), "b").unwrap();
    w.change(t, "a", "modify");
    w.drift(t, "a", "content");
}

// ---------------------------------------------------------------------------------------
// New directories, reverting, roots, names, the registry
// ---------------------------------------------------------------------------------------

/// A directory created while watching is watched too: a file created in it later, and a
/// change to that file, are reported as they happen.
#[test]
fn new_subdirectory_is_watched() {
    let (f, w) = case(
        |f| f.write("a", "a"),
        |f| fs::create_dir(f.p("sub")).unwrap(),
        &[("sub", "create")],
        &[("sub", "added")],
    );
    let t = Instant::now();
    fs::create_dir(f.p("sub/deeper")).unwrap();
    w.change(t, "sub/deeper", "create");
    w.drift(t, "sub/deeper", "added");
    // Seen by the new directories' own watches, not by the walk that added them.
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    f.write("sub/deeper/f", "1");
    w.change(t, "sub/deeper/f", "create");
    w.drift(t, "sub/deeper/f", "added");
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    fs::write(f.p("sub/deeper/f"), "22").unwrap();
    w.change(t, "sub/deeper/f", "modify");
    // Still an added file: no other class for it.
    w.drift(t, "sub/deeper/f", "added");
    assert_eq!(
        w.classes("sub/deeper/f"),
        BTreeSet::from(["added".to_string()])
    );
}

/// Undoing a change is reported as a return to the sealed state.
#[test]
fn reverting_reports_back_to_sealed() {
    let (f, w) = case(
        |f| {
            f.write("etc/passwd", "root:x:0:0\n");
            chmod(&f.p("etc/passwd"), 0o644);
        },
        |f| f.write("etc/passwd", "evil:x:0:0\n"),
        &[("etc/passwd", "modify")],
        &[("etc/passwd", "content")],
    );
    let t = Instant::now();
    f.write("etc/passwd", "root:x:0:0\n");
    w.change(t, "etc/passwd", "modify");
    w.back(t, "etc/passwd");

    let t = Instant::now();
    chmod(&f.p("etc/passwd"), 0o666);
    w.drift(t, "etc/passwd", "mode");
    let t = Instant::now();
    chmod(&f.p("etc/passwd"), 0o644);
    w.back(t, "etc/passwd");

    let t = Instant::now();
    f.write("tmpfile", "x");
    w.drift(t, "tmpfile", "added");
    let t = Instant::now();
    fs::remove_file(f.p("tmpfile")).unwrap();
    w.back(t, "tmpfile");
}

#[test]
fn unknown_name_is_an_error() {
    let f = Fixture::new();
    f.write("a", "a");
    f.seal("app");
    let out = f.run(&["watch", "nope"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr
            .contains("no capsule named \"nope\" is registered"),
        "{out}"
    );
    // Also when named with a known one: nothing is watched in part.
    let out = f.run(&["watch", "app", "nope"]);
    assert_eq!(out.code, 2, "{out}");
}

/// Without names only sealed capsules are watched; an unsealed one is watched when named,
/// and said to be unsealed. Nothing to watch is an error.
#[test]
fn sealed_by_default_unsealed_when_named() {
    let f = Fixture::new();
    f.write("a", "a");
    let out = f.run(&["register", s(&f.tree), "--name", "plain"]);
    assert_eq!(out.code, 0, "{out}");
    let out = f.run(&["watch"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("no sealed capsules to watch"), "{out}");

    let w = f.watch(&["plain"]);
    let first = w.seen.lock().expect("seen")[0].1.clone();
    assert_eq!(first["capsules"][0]["name"], "plain", "{first}");
    assert_eq!(first["capsules"][0]["sealed"], false, "{first}");
    assert_eq!(first["capsules"][0]["enforced"], false, "{first}");
    let t = Instant::now();
    f.write("a", "b");
    w.drift(t, "a", "content");
}

/// The registry is released before watching: other commands run meanwhile.
#[test]
fn registry_is_free_while_watching() {
    let f = Fixture::new();
    f.write("a", "a");
    f.seal("app");
    let w = f.watch(&[]);
    let out = f.run(&["verify", "app"]);
    assert_eq!(out.code, 0, "{out}");
    let out = f.run(&["list"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(w.stop(libc::SIGINT), 0);
}

/// Human output: the banner says it detects and does not prevent; lines name the capsule,
/// the kind and the path. SIGTERM ends it with status 0.
#[test]
fn text_output_and_signals() {
    let f = Fixture::new();
    f.write("a", "a");
    f.seal("app");
    let mut c = f.cmd(&["watch", "app"]);
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("start");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut banner = String::new();
    err.read_line(&mut banner).expect("banner");
    assert!(
        banner.contains(&format!("watching 1 capsule(s): app ({})", s(&f.tree)))
            && banner.contains("detection only: changes are reported, not prevented"),
        "{banner}"
    );
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    f.write("a", "b");
    let mut lines = Vec::new();
    let start = Instant::now();
    while !lines.iter().any(|l: &String| l.contains("drift content")) {
        assert!(start.elapsed() < Duration::from_secs(5), "{lines:?}");
        let mut l = String::new();
        out.read_line(&mut l).expect("line");
        lines.push(l);
    }
    let a = s(&f.tree).to_string() + "/a";
    assert!(lines.contains(&format!("app: modify {a}\n")), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("app: drift content {a} ("))),
        "{lines:?}"
    );
    // SAFETY: kill(2) on our own unreaped child.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// A root that disappears is reported and the others are still watched; when nothing is
/// left, watch exits non-zero.
#[test]
fn vanished_roots() {
    let f = Fixture::new();
    f.write("a", "a");
    f.seal("app");
    let other = f.tmp.path().join("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("o"), "o").unwrap();
    let out = f.run(&["register", s(&other), "--name", "other", "--seal"]);
    assert_eq!(out.code, 3, "{out}");
    let mut w = f.watch(&[]);
    let t = Instant::now();
    fs::remove_dir_all(&f.tree).unwrap();
    w.wait_for(t, REPORT_WITHIN, "root-gone of app", |v| {
        v["event"] == "root-gone" && v["capsule"] == "app"
    });
    let t = Instant::now();
    fs::write(other.join("o"), "changed").unwrap();
    w.wait_for(t, REPORT_WITHIN, "drift in other", |v| {
        v["capsule"] == "other" && v["rel"] == "o" && v["class"] == "content"
    });
    let t = Instant::now();
    fs::rename(&other, f.tmp.path().join("moved")).unwrap();
    w.wait_for(t, REPORT_WITHIN, "root-gone of other", |v| {
        v["event"] == "root-gone" && v["capsule"] == "other"
    });
    assert_eq!(w.wait_exit(), 2);
}

/// A sealed capsule whose index record was lost is not silently left unwatched: `watch`
/// refuses to start, naming it.
#[test]
fn damaged_capsule_is_not_left_unwatched() {
    let f = Fixture::new();
    f.write("a", "a");
    f.seal("app");
    // A tree of its own: one nested in app's would be refused.
    let other = f.tmp.path().join("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("o"), "o").unwrap();
    let out = f.run(&["register", s(&other), "--name", "other", "--seal"]);
    assert_eq!(out.code, 3, "{out}");
    {
        let db = sled::open(f.reg.join("db")).expect("open the index");
        db.open_tree("capsules").unwrap().remove("app").unwrap();
        db.flush().unwrap();
    }
    let out = f.run(&["watch"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr.contains("app: ") && out.stderr.contains("damaged"),
        "{out}"
    );
    assert!(!out.stderr.contains("other: "), "{out}");
}
