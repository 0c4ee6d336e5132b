//! End-to-end tests of the `sealtool` command line: every test builds a tree in a fresh
//! temporary directory, runs the real binary against a fresh registry (`--registry`), and
//! checks exit statuses and what the output names (paths, drift classes, causes).
//!
//! Several tests need root (chown, mknod, mount, setpriv, security.* xattrs); they say so
//! and are skipped when run unprivileged.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// How long any single sealtool run may take before the test kills it and fails.
const DEADLINE: Duration = Duration::from_secs(60);

use capsule_tests::sealtool;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Fails the calling test when not running as root.
macro_rules! require_root {
    () => {
        // Never a silent pass: without root these checks cannot run, so the test fails.
        assert!(
            is_root(),
            "this test needs root (chown, mknod, mount, setpriv); run the suite as root"
        );
    };
}

#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` with stdin closed and stdout/stderr captured (so stderr is not a terminal);
/// kills it and fails the test when it has not finished within `deadline`.
fn run_with_deadline(mut cmd: Command, deadline: Duration) -> Out {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{desc} did not finish within {deadline:?} (killed)");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let text =
        |h: JoinHandle<Vec<u8>>| String::from_utf8_lossy(&h.join().expect("reader")).into_owned();
    let (stdout, stderr) = (text(out), text(err));
    let code = status
        .code()
        .unwrap_or_else(|| panic!("{desc} was killed by a signal: {status:?}\n{stderr}"));
    Out {
        code,
        stdout,
        stderr,
    }
}

/// A temporary directory holding a capsule tree (`tree/`) and a registry (`reg/`).
struct Fixture {
    tmp: TempDir,
    tree: PathBuf,
    reg: PathBuf,
}

fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("capsule-cli-")
            .tempdir()
            .expect("tempdir");
        let tree = tmp.path().join("tree");
        fs::create_dir(&tree).expect("mkdir tree");
        let reg = tmp.path().join("reg");
        Fixture { tmp, tree, reg }
    }

    fn base(&self) -> &Path {
        self.tmp.path()
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

    /// A sealtool command with this fixture's registry and no registry from the environment.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(sealtool());
        c.env_remove("CAPSULE_REGISTRY")
            .arg("--registry")
            .arg(&self.reg)
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Out {
        run_with_deadline(self.cmd(args), DEADLINE)
    }

    /// Registers the tree as `name` and returns the digest it printed.
    fn register(&self, name: &str, extra: &[&str]) -> String {
        let mut args = vec!["register", s(&self.tree), "--name", name];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        assert_eq!(out.code, 0, "register failed:\n{out}");
        field(&out.stdout, "digest")
    }

    /// Names of the manifest files of capsule `name`.
    fn manifest_files(&self, name: &str) -> Vec<String> {
        list_dir(&self.reg.join("manifests").join(name))
    }

    fn show_digest(&self, name: &str) -> String {
        let out = self.run(&["show", name]);
        assert_eq!(out.code, 0, "show failed:\n{out}");
        field(&out.stdout, "digest")
    }

    /// Verifies `name`, expecting exactly the `(path, change)` drifts given, both in the
    /// text output and in `--json`. Returns the JSON document.
    fn expect_drift(&self, name: &str, expected: &[(&str, &str)]) -> Value {
        let text = self.run(&["verify", name]);
        assert_eq!(text.code, 1, "verify should report drift:\n{text}");
        assert!(
            text.stdout
                .contains(&format!("{name}: DRIFT ({} differences)", expected.len())),
            "wrong drift count, expected {expected:?}:\n{text}"
        );
        for (path, change) in expected {
            let named = text.stdout.lines().any(|l| {
                l.trim_start().split_once(' ').is_some_and(|(kind, rest)| {
                    kind == *change && rest.trim_start().starts_with(&format!("{path}: "))
                })
            });
            assert!(
                named,
                "text output does not name {change} at {path}:\n{text}"
            );
        }
        let out = self.run(&["verify", name, "--json"]);
        assert_eq!(out.code, 1, "verify --json should report drift:\n{out}");
        let v = out.json();
        assert_eq!(v["status"], "drift", "{out}");
        assert_eq!(v["capsules"][0]["name"], name, "{out}");
        assert_eq!(v["capsules"][0]["status"], "drift", "{out}");
        let want: BTreeSet<(String, String)> = expected
            .iter()
            .map(|(p, c)| (p.to_string(), c.to_string()))
            .collect();
        assert_eq!(drifts(&v), want, "JSON drift differs:\n{out}");
        v
    }

    fn expect_clean(&self, name: &str) {
        let out = self.run(&["verify", name]);
        assert_eq!(out.code, 0, "verify should be clean:\n{out}");
        assert!(out.stdout.contains(&format!("{name}: clean")), "{out}");
    }
}

/// The value of a `key value` line (register and show output).
fn field(stdout: &str, key: &str) -> String {
    stdout
        .lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some(key)).then(|| it.next().unwrap_or_default().to_string())
        })
        .unwrap_or_else(|| panic!("no {key:?} line in:\n{stdout}"))
}

fn list_dir(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

/// Every file below `dir` whose name contains `needle`.
fn find_named(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("read_dir") {
            let e = e.expect("dir entry");
            if e.file_name().to_string_lossy().contains(needle) {
                found.push(e.path());
            }
            if e.file_type().expect("file type").is_dir() {
                stack.push(e.path());
            }
        }
    }
    found
}

/// All `(path, change)` pairs of a `verify --json` document.
fn drifts(v: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for c in v["capsules"].as_array().expect("capsules array") {
        for d in c["drift"].as_array().into_iter().flatten() {
            out.insert((
                d["path"].as_str().expect("path").to_string(),
                d["change"].as_str().expect("change").to_string(),
            ));
        }
    }
    out
}

/// The `detail` of one drift in a `verify --json` document.
fn detail(v: &Value, path: &str, change: &str) -> String {
    v["capsules"][0]["drift"]
        .as_array()
        .expect("drift array")
        .iter()
        .find(|d| d["path"] == path && d["change"] == change)
        .and_then(|d| d["detail"].as_str())
        .unwrap_or_else(|| panic!("no {change} drift at {path} in {v:#}"))
        .to_string()
}

fn sh(script: &str, args: &[&str]) {
    let out = run_with_deadline(
        {
            let mut c = Command::new("bash");
            c.arg("-c").arg(script).arg("bash").args(args);
            c
        },
        DEADLINE,
    );
    assert_eq!(out.code, 0, "bash -c {script:?} failed:\n{out}");
}

fn tool(prog: &str, args: &[&str]) {
    let mut c = Command::new(prog);
    c.args(args);
    let out = run_with_deadline(c, DEADLINE);
    assert_eq!(out.code, 0, "{prog} {args:?} failed:\n{out}");
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

/// A tmpfs mounted for the duration of a test; unmounted on drop, even on failure.
struct Mount {
    path: PathBuf,
    mounted: bool,
}

impl Mount {
    fn tmpfs(path: &Path, opts: &str) -> Mount {
        fs::create_dir_all(path).expect("mkdir mount point");
        tool("mount", &["-t", "tmpfs", "-o", opts, "tmpfs", s(path)]);
        Mount {
            path: path.to_path_buf(),
            mounted: true,
        }
    }

    /// `src` also reachable, read-only, at `dst`.
    fn bind_ro(src: &Path, dst: &Path) -> Mount {
        fs::create_dir_all(dst).expect("mkdir mount point");
        tool("mount", &["--bind", s(src), s(dst)]);
        let m = Mount {
            path: dst.to_path_buf(),
            mounted: true,
        };
        m.remount("bind,ro");
        m
    }

    fn remount(&self, opts: &str) {
        tool("mount", &["-o", &format!("remount,{opts}"), s(&self.path)]);
    }

    fn unmount(&mut self) {
        tool("umount", &[s(&self.path)]);
        self.mounted = false;
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if !self.mounted {
            return;
        }
        let ok = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// A child process killed (by its pid) and reaped on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------------------
// 1. register, verify, list, show, CAPSULE_REGISTRY
// ---------------------------------------------------------------------------------------

#[test]
fn register_list_show_and_clean_verify() {
    let f = Fixture::new();
    f.write("a", "hello");
    f.write("sub/b", "abc");
    let out = f.run(&["register", s(&f.tree), "--name", "cap"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("registered cap"), "{out}");
    assert_eq!(field(&out.stdout, "root"), s(&f.tree), "{out}");
    // The root, a, sub and sub/b.
    assert_eq!(field(&out.stdout, "entries"), "4", "{out}");
    assert_eq!(field(&out.stdout, "bytes"), "8", "{out}");
    let digest = field(&out.stdout, "digest");
    assert!(
        digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
        "digest {digest:?}"
    );
    assert_eq!(f.manifest_files("cap"), [format!("{digest}.manifest")]);

    let out = f.run(&["verify", "cap"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("cap: clean (4 entries)"), "{out}");
    let out = f.run(&["verify", "--json"]);
    assert_eq!(out.code, 0, "{out}");
    let v = out.json();
    assert_eq!(v["status"], "clean");
    assert_eq!(v["capsules"][0]["name"], "cap");
    assert_eq!(v["capsules"][0]["status"], "clean");
    assert_eq!(v["capsules"][0]["digest"], digest.as_str());
    assert_eq!(v["capsules"][0]["entries"], 4);
    let out = f.run(&["verify", "--all"]);
    assert_eq!(out.code, 0, "{out}");

    let out = f.run(&["list"]);
    assert_eq!(out.code, 0, "{out}");
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("cap "))
        .unwrap_or_else(|| panic!("cap not listed:\n{out}"));
    assert!(line.contains("registered"), "{line}");
    assert!(line.contains(&digest[..16]), "{line}");
    assert!(line.ends_with(s(&f.tree)), "{line}");

    let out = f.run(&["show", "cap", "--entries"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(field(&out.stdout, "name"), "cap");
    assert_eq!(field(&out.stdout, "digest"), digest);
    assert_eq!(field(&out.stdout, "entries"), "4");
    for (kind, path) in [
        ("dir", "."),
        ("file", "a"),
        ("dir", "sub"),
        ("file", "sub/b"),
    ] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with(kind) && l.ends_with(&format!(" {path}"))),
            "show --entries lacks {kind} {path}:\n{out}"
        );
    }
    // Without --entries, no entry lines.
    let out = f.run(&["show", "cap"]);
    assert!(!out.stdout.contains("sub/b"), "{out}");
}

#[test]
fn registry_env_var_and_override() {
    let f = Fixture::new();
    f.write("a", "x");
    let env_reg = f.base().join("env-reg");
    let with_env = |args: &[&str]| {
        let mut c = Command::new(sealtool());
        c.env("CAPSULE_REGISTRY", &env_reg).args(args);
        run_with_deadline(c, DEADLINE)
    };
    let out = with_env(&["register", s(&f.tree), "--name", "envcap"]);
    assert_eq!(out.code, 0, "{out}");
    let digest = field(&out.stdout, "digest");
    assert!(
        env_reg
            .join("manifests/envcap")
            .join(format!("{digest}.manifest"))
            .is_file(),
        "the manifest is not in $CAPSULE_REGISTRY"
    );
    let out = with_env(&["list"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("envcap"), "{out}");
    let out = with_env(&["verify", "envcap"]);
    assert_eq!(out.code, 0, "{out}");
    // --registry overrides the environment; a registry that does not exist is an error
    // naming it (never "no capsules registered", nor "clean"), and readers don't create it.
    let other = f.base().join("other-reg");
    for args in [
        &["list"][..],
        &["verify"],
        &["verify", "--json"],
        &["show", "envcap"],
        &["audit"],
        &["audit", "--check"],
    ] {
        let mut all = vec!["--registry", s(&other)];
        all.extend_from_slice(args);
        let out = with_env(&all);
        assert_error(&out, &[s(&other), "no registry"]);
        assert!(!out.stdout.contains("clean"), "{args:?}: {out}");
        assert!(!other.exists(), "{args:?} created {}", other.display());
    }
}

// ---------------------------------------------------------------------------------------
// 2. Every drift class, by path, in text and JSON
// ---------------------------------------------------------------------------------------

#[test]
fn drift_added() {
    let f = Fixture::new();
    f.write("a", "a");
    f.register("cap", &[]);
    f.write("new", "n");
    f.write("nd/x", "x");
    f.expect_drift(
        "cap",
        &[("new", "added"), ("nd", "added"), ("nd/x", "added")],
    );
}

#[test]
fn drift_removed() {
    let f = Fixture::new();
    f.write("a", "a");
    f.write("keep", "k");
    f.write("d/x", "x");
    f.register("cap", &[]);
    fs::remove_file(f.p("a")).unwrap();
    fs::remove_dir_all(f.p("d")).unwrap();
    f.expect_drift(
        "cap",
        &[("a", "removed"), ("d", "removed"), ("d/x", "removed")],
    );
}

#[test]
fn drift_content_same_size() {
    let f = Fixture::new();
    f.write("a", "aaaa");
    f.write("b", "same");
    f.register("cap", &[]);
    f.write("a", "bbbb");
    // Only content: same size, and nothing about the untouched file.
    f.expect_drift("cap", &[("a", "content")]);
}

#[test]
fn drift_size() {
    let f = Fixture::new();
    f.write("a", "hello");
    f.register("cap", &[]);
    f.write("a", "hello world");
    let v = f.expect_drift("cap", &[("a", "content"), ("a", "size")]);
    let d = detail(&v, "a", "size");
    assert!(d.contains('5') && d.contains("11"), "{d}");
}

#[test]
fn drift_type() {
    let f = Fixture::new();
    f.write("to-dir", "x");
    f.write("to-link", "y");
    f.register("cap", &[]);
    fs::remove_file(f.p("to-dir")).unwrap();
    fs::create_dir(f.p("to-dir")).unwrap();
    fs::remove_file(f.p("to-link")).unwrap();
    symlink("to-dir", f.p("to-link")).unwrap();
    let v = f.expect_drift("cap", &[("to-dir", "type"), ("to-link", "type")]);
    assert!(detail(&v, "to-dir", "type").contains("now a dir"));
    assert!(detail(&v, "to-link", "type").contains("now a symlink"));
}

#[test]
fn drift_mode_and_setuid() {
    let f = Fixture::new();
    f.write("prog", "#!/bin/sh\n");
    f.write("data", "d");
    chmod(&f.p("prog"), 0o755);
    chmod(&f.p("data"), 0o644);
    f.register("cap", &[]);
    chmod(&f.p("prog"), 0o4755);
    chmod(&f.p("data"), 0o664);
    let v = f.expect_drift("cap", &[("prog", "mode"), ("data", "mode")]);
    let d = detail(&v, "prog", "mode");
    assert!(d.contains("0755") && d.contains("4755"), "{d}");
}

#[test]
fn drift_owner() {
    require_root!();
    let f = Fixture::new();
    f.write("a", "a");
    f.register("cap", &[]);
    std::os::unix::fs::chown(f.p("a"), Some(1234), Some(5678)).unwrap();
    let v = f.expect_drift("cap", &[("a", "owner")]);
    assert!(detail(&v, "a", "owner").contains("1234:5678"));
}

#[test]
fn drift_symlink_target() {
    let f = Fixture::new();
    f.write("t1", "1");
    f.write("t2", "2");
    symlink("t1", f.p("link")).unwrap();
    f.register("cap", &[]);
    fs::remove_file(f.p("link")).unwrap();
    symlink("t2", f.p("link")).unwrap();
    let v = f.expect_drift("cap", &[("link", "symlink-target")]);
    let d = detail(&v, "link", "symlink-target");
    assert!(d.contains("t1") && d.contains("t2"), "{d}");
}

#[test]
fn drift_device() {
    require_root!();
    let f = Fixture::new();
    tool("mknod", &["-m", "0644", s(&f.p("dev")), "c", "1", "3"]);
    f.register("cap", &[]);
    let out = f.run(&["show", "cap", "--entries"]);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("char-device") && l.contains("1:3")),
        "{out}"
    );
    fs::remove_file(f.p("dev")).unwrap();
    tool("mknod", &["-m", "0644", s(&f.p("dev")), "c", "1", "5"]);
    let v = f.expect_drift("cap", &[("dev", "device")]);
    let d = detail(&v, "dev", "device");
    assert!(d.contains("1:3") && d.contains("1:5"), "{d}");
}

#[test]
fn drift_xattrs() {
    let f = Fixture::new();
    for n in ["added", "changed", "removed", "cap"] {
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
    f.register("cap", &[]);
    f.expect_clean("cap");
    tool("setfattr", &["-n", "user.new", "-v", "1", s(&f.p("added"))]);
    tool(
        "setfattr",
        &["-n", "user.keep", "-v", "2", s(&f.p("changed"))],
    );
    tool("setfattr", &["-x", "user.gone", s(&f.p("removed"))]);
    let mut expected = vec![
        ("added", "xattrs"),
        ("changed", "xattrs"),
        ("removed", "xattrs"),
    ];
    if is_root() {
        // A file capability (cap_net_bind_service+ep), the xattr that grants privilege.
        tool(
            "setfattr",
            &[
                "-n",
                "security.capability",
                "-v",
                "0sAQAAAgAEAAAAAAAAAAAAAAAAAAA=",
                s(&f.p("cap")),
            ],
        );
        expected.push(("cap", "xattrs"));
    } else {
        eprintln!("security.capability part skipped: needs root");
    }
    let v = f.expect_drift("cap", &expected);
    assert!(detail(&v, "added", "xattrs").contains("added user.new"));
    assert!(detail(&v, "changed", "xattrs").contains("changed user.keep"));
    assert!(detail(&v, "removed", "xattrs").contains("removed user.gone"));
    if is_root() {
        assert!(detail(&v, "cap", "xattrs").contains("security.capability"));
    }
}

#[test]
fn drift_hard_link_inside_tree() {
    let f = Fixture::new();
    f.write("a", "a");
    f.register("cap", &[]);
    fs::hard_link(f.p("a"), f.p("b")).unwrap();
    f.expect_drift("cap", &[("a", "hard-links"), ("b", "added")]);
}

#[test]
fn drift_hard_link_from_outside() {
    let f = Fixture::new();
    f.write("a", "a");
    f.write("other", "o");
    f.register("cap", &[]);
    let outside = f.base().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::hard_link(f.p("a"), outside.join("a-link")).unwrap();
    let v = f.expect_drift("cap", &[("a", "hard-links")]);
    let d = detail(&v, "a", "hard-links");
    assert!(d.contains("outside"), "{d}");
}

// ---------------------------------------------------------------------------------------
// 3. Non-UTF-8 names
// ---------------------------------------------------------------------------------------

#[test]
fn non_utf8_names() {
    let f = Fixture::new();
    let cafe = f.tree.join(OsStr::from_bytes(b"caf\xe9"));
    fs::write(&cafe, "latin-1").unwrap();
    let dir = f.tree.join(OsStr::from_bytes(b"d\xff"));
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("x"), "x").unwrap();
    f.register("cap", &[]);
    f.expect_clean("cap");
    let out = f.run(&["show", "cap", "--entries"]);
    assert!(out.stdout.contains(r"caf\xe9"), "{out}");
    assert!(out.stdout.contains(r"d\xff/x"), "{out}");
    fs::write(&cafe, "LATIN-1").unwrap();
    fs::write(f.tree.join(OsStr::from_bytes(b"new\x80")), "n").unwrap();
    f.expect_drift("cap", &[(r"caf\xe9", "content"), (r"new\x80", "added")]);
}

// ---------------------------------------------------------------------------------------
// 4. Excludes, re-registration, one tree under two names
// ---------------------------------------------------------------------------------------

#[test]
fn excludes_reregister_and_two_names() {
    let f = Fixture::new();
    f.write("keep", "k");
    f.write("x.log", "log");
    f.write("cache/c", "c");
    f.write("sub/z", "z");
    let d1 = f.register("cap", &["--exclude", "*.log", "--exclude", "cache/"]);
    let out = f.run(&["show", "cap", "--entries"]);
    assert!(out.stdout.contains("excludes    *.log cache/"), "{out}");
    let entries = out.stdout.split("\n\n").nth(1).expect("entry lines");
    assert!(entries.contains(" keep"), "{out}");
    assert!(!entries.contains("x.log"), "{out}");
    assert!(!entries.contains("cache"), "{out}");
    f.write("x.log", "more log");
    f.write("sub/y.log", "y");
    f.write("cache/new", "n");
    f.expect_clean("cap");
    // A change outside the excludes is still reported, alone.
    f.write("keep", "K");
    f.expect_drift("cap", &[("keep", "content")]);

    // Re-registering a drifted tree changes nothing without --update, and names the drift.
    assert_eq!(f.manifest_files("cap"), [format!("{d1}.manifest")]);
    let out = f.run(&[
        "register",
        s(&f.tree),
        "--name",
        "cap",
        "--exclude",
        "*.log",
        "--exclude",
        "cache/",
    ]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stdout.contains("content        keep"), "{out}");
    assert!(out.stdout.contains("--update"), "{out}");
    assert_eq!(f.manifest_files("cap"), [format!("{d1}.manifest")]);
    assert_eq!(f.show_digest("cap"), d1);
    // With --update it becomes the baseline; the previous manifest is kept.
    let d2 = f.register(
        "cap",
        &["--exclude", "*.log", "--exclude", "cache/", "--update"],
    );
    assert_ne!(d1, d2);
    let mut both = vec![format!("{d1}.manifest"), format!("{d2}.manifest")];
    both.sort();
    assert_eq!(f.manifest_files("cap"), both);
    assert_eq!(f.show_digest("cap"), d2);
    f.expect_clean("cap");

    // The same tree under a second name.
    let d3 = f.register("twin", &["--exclude", "*.log", "--exclude", "cache/"]);
    assert_eq!(d3, d2, "the same tree must have the same root digest");
    let out = f.run(&["verify"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("cap: clean"), "{out}");
    assert!(out.stdout.contains("twin: clean"), "{out}");
    let out = f.run(&["list"]);
    assert!(out.stdout.lines().any(|l| l.starts_with("cap ")), "{out}");
    assert!(out.stdout.lines().any(|l| l.starts_with("twin ")), "{out}");
    // Registered without the excludes, it is another tree and the excludes are drift.
    f.write("keep", "k");
    f.expect_drift("twin", &[("keep", "content")]);
}

// ---------------------------------------------------------------------------------------
// 5. Bad input
// ---------------------------------------------------------------------------------------

fn assert_error(out: &Out, needles: &[&str]) {
    assert_eq!(out.code, 2, "expected exit 2:\n{out}");
    for n in needles {
        assert!(
            out.all().contains(n),
            "output does not mention {n:?}:\n{out}"
        );
    }
}

fn assert_nothing_registered(f: &Fixture) {
    let out = f.run(&["list"]);
    if f.reg.exists() {
        assert_eq!(out.code, 0, "{out}");
        assert!(out.stdout.contains("no capsules registered"), "{out}");
    } else {
        // Not even created; and `list` does not create it either.
        assert_error(&out, &[s(&f.reg), "no registry"]);
        assert!(!f.reg.exists(), "list created {}", f.reg.display());
    }
}

#[test]
fn bad_roots() {
    let f = Fixture::new();
    f.write("file", "f");
    let missing = f.base().join("missing");
    let out = f.run(&["register", s(&missing), "--name", "x"]);
    assert_error(&out, &[s(&missing), "does not exist"]);
    let link = f.base().join("link");
    symlink(&f.tree, &link).unwrap();
    let out = f.run(&["register", s(&link), "--name", "x"]);
    assert_error(&out, &[s(&link), "symbolic link"]);
    let file = f.p("file");
    let out = f.run(&["register", s(&file), "--name", "x"]);
    assert_error(&out, &[s(&file), "not a directory"]);
    assert_nothing_registered(&f);
}

#[test]
fn unknown_capsule() {
    let f = Fixture::new();
    f.write("a", "a");
    f.register("cap", &[]);
    let out = f.run(&["verify", "nope"]);
    assert_error(&out, &["nope", "no capsule named \"nope\""]);
    let out = f.run(&["verify", "nope", "--json"]);
    assert_eq!(out.code, 2, "{out}");
    let v = out.json();
    assert_eq!(v["status"], "error");
    assert_eq!(v["capsules"][0]["status"], "error");
    assert!(v["capsules"][0]["error"]
        .as_str()
        .is_some_and(|e| e.contains("no capsule named \"nope\"")));
    // A known capsule is still checked next to an unknown one; the error decides the exit.
    let out = f.run(&["verify", "cap", "nope"]);
    assert_error(&out, &["cap: clean", "nope: ERROR"]);
    let out = f.run(&["show", "nope"]);
    assert_error(&out, &["no capsule named \"nope\""]);
}

#[test]
fn invalid_name_and_bad_glob() {
    let f = Fixture::new();
    f.write("a", "a");
    let out = f.run(&["register", s(&f.tree), "--name", "../x"]);
    assert_error(&out, &["\"../x\" is not a valid capsule name"]);
    assert!(!f.reg.join("x").exists() && !f.base().join("x").exists());
    let out = f.run(&["register", s(&f.tree), "--exclude", "[abc"]);
    assert_error(&out, &["\"[abc\" is not a valid glob", "'['"]);
    assert_nothing_registered(&f);
}

#[test]
fn unreadable_entries_as_unprivileged_user() {
    require_root!();
    let f = Fixture::new();
    chmod(f.base(), 0o755);
    chmod(&f.tree, 0o755);
    f.write("public", "p");
    f.write("secret", "s");
    chmod(&f.p("secret"), 0o600);
    // Readable but not searchable: cannot be listed either.
    f.write("locked/inner", "i");
    chmod(&f.p("locked"), 0o644);
    fs::create_dir(&f.reg).unwrap();
    std::os::unix::fs::chown(&f.reg, Some(65534), Some(65534)).unwrap();
    let nobody = |args: &[&str]| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(sealtool())
            .arg("--registry")
            .arg(&f.reg)
            .args(args)
            .env_remove("CAPSULE_REGISTRY");
        run_with_deadline(c, DEADLINE)
    };
    let out = nobody(&["register", s(&f.tree), "--name", "cap"]);
    let secret = f.p("secret");
    let locked = f.p("locked");
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr.contains(&format!("{}: unreadable", s(&secret)))
            || out.stderr.contains(&format!("{}: unreadable", s(&locked))),
        "{out}"
    );
    assert_eq!(
        out.stderr.matches("Permission denied").count(),
        1,
        "the cause is given once:\n{out}"
    );
    assert!(out.stderr.contains("--skip-unreadable"), "{out}");
    let out = nobody(&["list"]);
    assert!(out.stdout.contains("no capsules registered"), "{out}");

    let out = nobody(&["register", s(&f.tree), "--name", "cap", "--skip-unreadable"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout
            .contains("note: secret is unreadable: recorded as such"),
        "{out}"
    );
    assert!(
        out.stdout
            .contains("note: locked is unreadable: recorded as such"),
        "{out}"
    );
    // root, public, secret, locked (not its content).
    assert_eq!(field(&out.stdout, "entries"), "4", "{out}");
    let out = nobody(&["verify", "cap"]);
    assert_eq!(out.code, 0, "unchanged, still unreadable: clean\n{out}");

    chmod(&secret, 0o644);
    let out = nobody(&["verify", "cap", "--json"]);
    assert_eq!(out.code, 1, "{out}");
    let v = out.json();
    let want: BTreeSet<(String, String)> = [("secret", "readability"), ("secret", "mode")]
        .iter()
        .map(|(p, c)| (p.to_string(), c.to_string()))
        .collect();
    assert_eq!(drifts(&v), want, "{out}");
    assert!(detail(&v, "secret", "readability").contains("now readable"));
    let out = nobody(&["verify", "cap"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout
            .lines()
            .any(|l| l.trim_start().starts_with("readability") && l.contains("secret:")),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------
// 6. Fifos, symlink loops, trees deeper than PATH_MAX
// ---------------------------------------------------------------------------------------

#[test]
fn fifo_does_not_hang() {
    let f = Fixture::new();
    f.write("a", "a");
    tool("mkfifo", &[s(&f.p("pipe"))]);
    let out = run_with_deadline(
        f.cmd(&["register", s(&f.tree), "--name", "cap"]),
        Duration::from_secs(20),
    );
    assert_eq!(out.code, 0, "{out}");
    let out = run_with_deadline(f.cmd(&["verify", "cap"]), Duration::from_secs(20));
    assert_eq!(out.code, 0, "{out}");
    let out = f.run(&["show", "cap", "--entries"]);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("fifo") && l.ends_with(" pipe")),
        "{out}"
    );
}

#[test]
fn symlink_loops_are_recorded_not_followed() {
    let f = Fixture::new();
    symlink("b", f.p("a")).unwrap();
    symlink("a", f.p("b")).unwrap();
    symlink(".", f.p("self")).unwrap();
    let out = f.run(&["register", s(&f.tree), "--name", "cap"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(field(&out.stdout, "entries"), "4", "{out}");
    let out = f.run(&["show", "cap", "--entries"]);
    for (target, name) in [("b", "a"), ("a", "b"), (".", "self")] {
        assert!(
            out.stdout.lines().any(|l| l.starts_with("symlink")
                && l.contains(&format!("-> {target} "))
                && l.ends_with(&format!(" {name}"))),
            "{name} -> {target} not shown:\n{out}"
        );
    }
    f.expect_clean("cap");
    fs::remove_file(f.p("a")).unwrap();
    symlink("a", f.p("a")).unwrap();
    f.expect_drift("cap", &[("a", "symlink-target")]);
}

#[test]
fn tree_deeper_than_path_max() {
    const DIR: &str = "abcdefghijklmnop";
    let f = Fixture::new();
    let descend = format!(
        "cd \"$1\" || exit 1; i=0; while [ $i -lt 300 ]; do \
         {{ [ -d {DIR} ] || mkdir {DIR}; }} && cd {DIR} || exit 1; i=$((i+1)); done; \
         printf \"$2\" > file"
    );
    sh(&descend, &[s(&f.tree), "bottom"]);
    let rel = format!("{}file", format!("{DIR}/").repeat(300));
    assert!(s(&f.tree).len() + rel.len() > 4096);
    let out = f.run(&["register", s(&f.tree), "--name", "deep"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(field(&out.stdout, "entries"), "302", "{out}");
    f.expect_clean("deep");
    sh(&descend, &[s(&f.tree), "BOTTOM"]);
    f.expect_drift("deep", &[(&rel, "content")]);
}

// ---------------------------------------------------------------------------------------
// 7. A file that keeps changing while it is hashed
// ---------------------------------------------------------------------------------------

/// Appends to a file from a thread until dropped.
struct Writer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    fn start(path: &Path) -> Writer {
        let mut file = OpenOptions::new().append(true).open(path).expect("open");
        file.write_all(b"first\n").expect("append");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let _ = file.write_all(b"more\n");
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Writer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn file_changing_while_hashed() {
    let f = Fixture::new();
    f.write("steady", "s");
    let grow = f.p("grow");
    let file = fs::File::create(&grow).unwrap();
    file.set_len(200 << 20).unwrap();
    drop(file);
    let out = {
        let _writer = Writer::start(&grow);
        f.run(&["register", s(&f.tree), "--name", "cap"])
    };
    assert_error(&out, &[s(&grow), "changed while it was being hashed"]);
    assert_nothing_registered(&f);
}

// ---------------------------------------------------------------------------------------
// 8. Registry robustness
// ---------------------------------------------------------------------------------------

#[test]
fn damaged_manifest_file() {
    let f = Fixture::new();
    f.write("a", "a");
    let digest = f.register("cap", &[]);
    let path = f
        .reg
        .join("manifests/cap")
        .join(format!("{digest}.manifest"));
    let mut bytes = fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let out = f.run(&["verify", "cap"]);
    assert_error(&out, &[s(&path), "damaged manifest"]);
    let out = f.run(&["verify", "--json"]);
    assert_eq!(out.code, 2, "{out}");
    assert_eq!(out.json()["status"], "error");
    let out = f.run(&["show", "cap"]);
    assert_error(&out, &[s(&path), "damaged manifest"]);
}

#[test]
fn damaged_database_and_rebuild() {
    let f = Fixture::new();
    f.write("a", "a");
    let digest = f.register("cap", &[]);
    let db = f.reg.join("db");
    let mut damaged = 0;
    for p in find_named(&db, "") {
        if p.is_file() {
            fs::write(&p, b"this is not a sled database\n".repeat(100)).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0, "no database files under {}", db.display());
    for args in [&["verify", "cap"][..], &["list"], &["show", "cap"]] {
        let out = f.run(args);
        assert_error(&out, &[s(&db), "registry rebuild"]);
    }
    let out = f.run(&["registry", "rebuild"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout.contains(&format!("recovered cap ({digest}")),
        "{out}"
    );
    f.expect_clean("cap");
    assert_eq!(f.show_digest("cap"), digest);
    // A second rebuild right away (same second) works as well.
    let out = f.run(&["registry", "rebuild"]);
    assert_eq!(out.code, 0, "{out}");
    f.expect_clean("cap");
    assert!(find_named(&f.reg, "db.rebuild-").is_empty());
}

#[test]
fn registry_lock_held_by_another_process() {
    let f = Fixture::new();
    f.write("a", "a");
    let first = f.cmd(&["register", s(&f.tree), "--name", "cap"]);
    let first_pid;
    let digest = {
        let mut c = first;
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = c.spawn().unwrap();
        first_pid = child.id();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        field(&String::from_utf8_lossy(&out.stdout), "digest")
    };
    let before = f.manifest_files("cap");
    f.write("a", "changed");
    let lock = f.reg.join("lock");
    let holder = Killed(
        Command::new("flock")
            .args(["--no-fork", s(&lock), "sleep", "10"])
            .spawn()
            .expect("flock"),
    );
    let start = Instant::now();
    loop {
        let probe = Command::new("flock")
            .args(["-n", s(&lock), "true"])
            .status()
            .unwrap();
        if !probe.success() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "flock never took the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = f.run(&["register", s(&f.tree), "--name", "cap"]);
    assert_error(&out, &[s(&f.reg), "in use"]);
    assert!(
        !out.stderr.contains(&format!("pid {first_pid}")),
        "names a sealtool that has long finished:\n{out}"
    );
    assert_eq!(f.manifest_files("cap"), before);
    drop(holder);
    assert_eq!(f.show_digest("cap"), digest);
    f.expect_drift("cap", &[("a", "content"), ("a", "size")]);
}

#[test]
fn registry_lock_planted_as_a_symlink_or_fifo_is_refused() {
    let f = Fixture::new();
    f.write("a", "a");
    let digest = f.register("cap", &[]);
    f.write("a", "changed");
    let lock = f.reg.join("lock");
    // A symlink to a file elsewhere: never followed (the file would be truncated and locked).
    let elsewhere = f.reg.parent().unwrap().join("precious");
    std::fs::write(&elsewhere, "keep me").unwrap();
    std::fs::remove_file(&lock).unwrap();
    symlink(&elsewhere, &lock).unwrap();
    for args in [
        &["register", s(&f.tree), "--name", "cap", "--update"][..],
        &["list"],
    ] {
        let out = f.run(args);
        assert_error(&out, &[s(&lock), "lock file"]);
    }
    assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "keep me");
    // A fifo: refused at once, never waited on.
    std::fs::remove_file(&lock).unwrap();
    let made = Command::new("mkfifo").arg(&lock).status().expect("mkfifo");
    assert!(made.success());
    let start = Instant::now();
    let out = f.run(&["register", s(&f.tree), "--name", "cap", "--update"]);
    assert_error(&out, &[s(&lock), "not a regular file"]);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "waited on the fifo"
    );
    // Nothing was lost: with the fifo gone, the baseline is the one registered.
    std::fs::remove_file(&lock).unwrap();
    assert_eq!(f.show_digest("cap"), digest);
}

#[test]
fn a_tree_nested_in_a_sealed_one_is_refused_before_its_seal_is_recorded() {
    let f = Fixture::new();
    f.write("a", "a");
    f.write("sub/b", "b");
    f.register("outer", &[]);
    let sub = f.tree.join("sub");
    let out = f.run(&["register", s(&sub), "--name", "inner"]);
    assert_eq!(out.code, 0, "{out}");
    // Control: the outer tree seals (recorded; this host can't enforce: exit 3).
    assert_eq!(f.run(&["seal", "outer"]).code, 3);
    let out = f.run(&["seal", "inner"]);
    assert_error(
        &out,
        &["inner", "lies in the tree of sealed capsule \"outer\""],
    );
    assert!(
        !f.manifest_files("inner")
            .iter()
            .any(|n| n.ends_with(".seal")),
        "a seal was recorded: {:?}",
        f.manifest_files("inner")
    );
}

#[test]
fn planted_fifos_and_symlinks_in_the_registry_never_hang_a_reader() {
    let f = Fixture::new();
    f.write("a", "a");
    f.register("cap", &[]);
    let planted = f.reg.join("manifests").join("00x");
    std::fs::create_dir(&planted).unwrap();
    let fifo = planted.join(format!("{}.seal", "ab".repeat(32)));
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    // A capsule directory that is a symlink to another capsule's is never followed.
    symlink(
        f.reg.join("manifests").join("cap"),
        f.reg.join("manifests").join("01y"),
    )
    .unwrap();
    for args in [&["status"][..], &["list"]] {
        let out = f.run(args);
        assert_eq!(out.code, 2, "{out}");
        if args == ["status"] {
            assert_error(&out, &[s(&fifo), "not a regular file"]);
        }
    }
}

#[test]
fn a_planted_giant_manifest_is_an_error_not_an_abort() {
    let f = Fixture::new();
    f.write("a", "a");
    let digest = f.register("cap", &[]);
    assert_eq!(f.run(&["seal", "cap"]).code, 3);
    // Root replaces the sealed manifest with a sparse 60 GiB file (nothing on disk).
    let manifest = f
        .reg
        .join("manifests")
        .join("cap")
        .join(format!("{digest}.manifest"));
    std::fs::remove_file(&manifest).unwrap();
    let file = std::fs::File::create(&manifest).unwrap();
    file.set_len(60 << 30).unwrap();
    let out = f.run(&["status"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.all().contains("more than such a file can hold"),
        "{out}"
    );
    // Sealing another capsule looks at where its tree is (its header only): no abort either.
    let other = f.tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("o"), "o").unwrap();
    let out = f.run(&["register", s(&other), "--name", "other"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(f.run(&["seal", "other"]).code, 3);
}

#[test]
fn registry_on_full_filesystem() {
    require_root!();
    let f = Fixture::new();
    let mut mount = Mount::tmpfs(&f.reg, "size=2m");
    f.write("a", "a");
    let digest = f.register("cap", &[]);
    // About 3 MB of manifest: 800 symlinks with 4000-byte targets.
    let target = "t".repeat(4000);
    for i in 0..800 {
        symlink(&target, f.p(&format!("link{i:04}"))).unwrap();
    }
    let out = f.run(&["register", s(&f.tree), "--name", "cap", "--update"]);
    assert_error(&out, &["No space left on device"]);
    assert_eq!(f.manifest_files("cap"), [format!("{digest}.manifest")]);
    assert!(
        find_named(&f.reg, ".tmp").is_empty(),
        "temporary files left: {:?}",
        find_named(&f.reg, ".tmp")
    );
    assert_eq!(f.show_digest("cap"), digest);
    let out = f.run(&["verify", "cap", "--json"]);
    assert_eq!(
        out.code, 1,
        "the previous registration still applies:\n{out}"
    );
    assert_eq!(drifts(&out.json()).len(), 800);
    mount.unmount();
}

#[test]
fn read_only_registry() {
    require_root!();
    let f = Fixture::new();
    let mount = Mount::tmpfs(&f.reg, "size=16m");
    f.write("a", "a");
    let digest = f.register("cap", &[]);
    let before = f.manifest_files("cap");
    mount.remount("ro");
    f.write("a", "b");
    let out = f.run(&["register", s(&f.tree), "--name", "cap"]);
    assert_error(&out, &[s(&f.reg), "Read-only file system"]);
    assert_eq!(
        out.stderr.matches("Read-only file system").count(),
        1,
        "the cause is given once:\n{out}"
    );
    mount.remount("rw");
    assert_eq!(f.manifest_files("cap"), before);
    assert!(find_named(&f.reg, ".tmp").is_empty());
    assert_eq!(f.show_digest("cap"), digest);
    f.expect_drift("cap", &[("a", "content")]);
}

// ---------------------------------------------------------------------------------------
// 9. Mount points inside the tree
// ---------------------------------------------------------------------------------------

#[test]
fn mount_point_inside_tree() {
    require_root!();
    let f = Fixture::new();
    f.write("a", "a");
    let mut mount = Mount::tmpfs(&f.p("mnt"), "size=1m");
    f.write("mnt/inside", "i");
    let out = f.run(&["register", s(&f.tree), "--name", "cap"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("note: mnt is a mount point"), "{out}");
    // root, a, mnt
    assert_eq!(field(&out.stdout, "entries"), "3", "{out}");
    let out = f.run(&["show", "cap", "--entries"]);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("mount-point") && l.ends_with(" mnt")),
        "{out}"
    );
    assert!(!out.stdout.contains("inside"), "{out}");
    f.expect_clean("cap");
    mount.unmount();
    let v = f.expect_drift("cap", &[("mnt", "type")]);
    assert!(detail(&v, "mnt", "type").contains("was a mount-point, now a dir"));
}

// ---------------------------------------------------------------------------------------
// 10. No progress output when stderr is not a terminal
// ---------------------------------------------------------------------------------------

#[test]
fn quiet_stderr_when_not_a_terminal() {
    let f = Fixture::new();
    f.write("a", "a");
    // Big enough that a progress display would have had time to tick.
    let big = fs::File::create(f.p("big")).unwrap();
    big.set_len(64 << 20).unwrap();
    drop(big);
    for args in [
        &["register", s(&f.tree), "--name", "cap"][..],
        &["verify", "cap"],
        &["verify", "cap", "--json"],
        &["--quiet", "verify", "cap"],
        &["list"],
        &["show", "cap", "--entries"],
    ] {
        let out = f.run(args);
        assert_eq!(out.code, 0, "{out}");
        assert!(!out.stdout.is_empty(), "{out}");
        assert_eq!(out.stderr, "", "stderr of {args:?} is not empty");
    }
}

/// On a machine without the BPF LSM (this host: no active LSM list is readable), a seal is
/// recorded, says plainly that enforcement is NOT active and why, and exits 3; from then on
/// the capsule can never be re-registered, removed or sealed again, and survives a rebuild.
#[test]
fn seal_without_kernel_enforcement_is_recorded_and_final() {
    let f = Fixture::new();
    f.write("bin/tool", "#!/bin/sh\n");
    f.write("etc/conf", "x = 1\n");
    let out = f.run(&[
        "register",
        s(&f.tree),
        "--name",
        "app",
        "--seal",
        "--frozen",
        "bin/**",
    ]);
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stdout.contains("sealed app"), "{out}");
    assert!(out.stdout.contains("enforcement is NOT active"), "{out}");
    assert!(out.stdout.contains("frozen   bin/** (2 entries)"), "{out}");
    let digest = f.show_digest("app");
    assert_eq!(
        f.manifest_files("app"),
        [format!("{digest}.manifest"), format!("{digest}.seal")]
    );
    let out = f.run(&["list"]);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("app ") && l.contains("sealed")),
        "{out}"
    );

    for (args, action) in [
        (
            vec!["register", s(&f.tree), "--name", "app"],
            "re-registering",
        ),
        (vec!["remove", "app"], "removing"),
        (vec!["seal", "app"], "sealing again"),
    ] {
        let out = f.run(&args);
        assert_eq!(out.code, 2, "{args:?}: {out}");
        assert!(
            out.stderr.contains(&format!("{action} is refused")),
            "{args:?}: {out}"
        );
    }
    let out = f.run(&["status"]);
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stdout.contains("enforcement  NOT active"), "{out}");
    assert!(out.stdout.contains("NOT enforced"), "{out}");

    // The seal is in the files, not only in the database.
    std::fs::remove_dir_all(f.reg.join("db")).unwrap();
    let out = f.run(&["registry", "rebuild"]);
    assert_eq!(out.code, 0, "{out}");
    let out = f.run(&["register", s(&f.tree), "--name", "app"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("re-registering is refused"), "{out}");
    let out = f.run(&["verify", "app"]);
    assert_eq!(out.code, 0, "{out}");
}

/// A tree that drifted since registration is not sealed; a registered capsule can be removed.
#[test]
fn seal_refuses_a_drifted_tree_and_remove_forgets_unsealed_capsules() {
    let f = Fixture::new();
    f.write("a", "one");
    f.register("app", &[]);
    f.write("a", "two");
    let out = f.run(&["seal", "app"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("cannot be sealed"), "{out}");
    assert!(out.stderr.contains("content a"), "{out}");
    assert_eq!(f.manifest_files("app").len(), 1, "no seal file was written");
    let out = f.run(&["remove", "app"]);
    assert_eq!(out.code, 0, "{out}");
    let out = f.run(&["show", "app"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(f.p("a").exists(), "remove leaves the tree alone");
    let out = f.run(&["register", s(&f.tree), "--name", "app", "--frozen", "x"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("go with --seal"), "{out}");
}

/// On a terminal, long work shows progress (entries, bytes, rate) on stderr; `--quiet` hides it.
#[test]
fn progress_on_a_terminal_and_quiet_hides_it() {
    let f = Fixture::new();
    f.write("a", "a");
    // Over a second of hashing (sparse, so it costs no disk): the display ticks every 200 ms.
    let big = fs::File::create(f.p("big")).unwrap();
    big.set_len(1 << 30).unwrap();
    drop(big);
    let under_pty = |extra: &str, name: &str| {
        let line = format!(
            "{} --registry {} {extra} register {} --name {name}",
            sealtool().display(),
            s(&f.reg),
            s(&f.tree)
        );
        let out = Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .output()
            .expect("script(1) from util-linux");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let shown = under_pty("", "cap");
    assert!(
        shown.contains("hashing: "),
        "no progress on a terminal:\n{shown}"
    );
    assert!(
        shown.contains(" entries, ") && shown.contains("/s)"),
        "{shown}"
    );
    assert!(shown.contains("registered cap"), "{shown}");
    let quiet = under_pty("--quiet", "cap2");
    assert!(
        !quiet.contains("hashing: "),
        "--quiet still shows progress:\n{quiet}"
    );
    assert!(quiet.contains("registered cap2"), "{quiet}");
}

/// Root may rewrite the sled index at every level: `verify` and `status` take the tree's
/// location from the manifest (the index only helps find it), and an index that disagrees
/// is reported as damaged, never as a clean capsule somewhere else.
#[test]
fn verify_and_status_take_the_tree_from_the_manifest_not_the_index() {
    let f = Fixture::new();
    f.write("etc/conf", "sealed");
    f.register("cap", &[]);
    // Sealed (on this host, not enforced: exit 3), so that `status` lists it.
    let out = f.run(&["seal", "cap"]);
    assert_eq!(out.code, 3, "{out}");
    // A pristine copy at a path of the same length, then the real tree drifts.
    let copy = f.base().join("copy");
    fs::create_dir_all(copy.join("etc")).unwrap();
    fs::write(copy.join("etc/conf"), "sealed").unwrap();
    let copy_meta = fs::metadata(f.p("etc/conf")).unwrap();
    fs::set_permissions(copy.join("etc/conf"), copy_meta.permissions()).unwrap();
    f.write("etc/conf", "changed");
    let out = f.run(&["verify", "cap"]);
    assert_eq!(out.code, 1, "control: the drift is seen\n{out}");
    // The attacker points the index at the copy.
    {
        let db = sled::open(f.reg.join("db")).expect("open the index");
        let capsules = db.open_tree("capsules").unwrap();
        let rec = capsules.get("cap").unwrap().expect("the record");
        let (from, to) = (s(&f.tree).as_bytes(), s(&copy).as_bytes());
        assert_eq!(from.len(), to.len());
        let at = rec
            .windows(from.len())
            .position(|w| w == from)
            .expect("the root in the record");
        let mut bad = rec.to_vec();
        bad[at..at + to.len()].copy_from_slice(to);
        capsules.insert("cap", bad).unwrap();
        db.flush().unwrap();
    }
    let out = f.run(&["verify", "cap"]);
    assert_error(&out, &["index is damaged", s(&copy), s(&f.tree), "DRIFT"]);
    let out = f.run(&["verify", "cap", "--json"]);
    assert_eq!(out.code, 2, "{out}");
    let doc = out.json();
    assert_eq!(doc["capsules"][0]["root"], s(&f.tree), "{out}");
    let out = f.run(&["status"]);
    assert_error(&out, &["index is damaged", s(&f.tree)]);
}

// ---------------------------------------------------------------------------------------
// 11. Seals hold whatever happens to the registry (issue 18)
// ---------------------------------------------------------------------------------------

/// Every path below `dir` with its size: what a command that must not write is checked by.
fn snapshot(dir: &Path) -> BTreeSet<(String, u64)> {
    find_named(dir, "")
        .into_iter()
        .map(|p| {
            let size = fs::symlink_metadata(&p).map(|m| m.len()).unwrap_or(0);
            (p.display().to_string(), size)
        })
        .collect()
}

/// An attribute set with chattr for the life of the value (removed on drop, even on failure).
struct Chattr(PathBuf, &'static str);

impl Chattr {
    fn set(path: &Path, flag: &'static str) -> Chattr {
        tool("chattr", &[&format!("+{flag}"), s(path)]);
        Chattr(path.to_path_buf(), flag)
    }
}

impl Drop for Chattr {
    fn drop(&mut self) {
        let _ = Command::new("chattr")
            .arg(format!("-{}", self.1))
            .arg(&self.0)
            .status();
    }
}

/// `list`, `show`, `verify` and `audit` work on a registry they can't write (a read-only
/// bind mount: chmod doesn't stop root), and write nothing to it.
#[test]
fn readers_work_on_a_read_only_registry() {
    require_root!();
    let f = Fixture::new();
    f.write("a", "a");
    let d1 = f.register("cap", &[]);
    f.write("a", "b");
    let d2 = f.register("cap", &["--update"]);
    f.register("other", &[]);
    let out = run_with_deadline(
        {
            let mut c = Command::new(env!("CARGO_BIN_EXE_audit-tamper"));
            c.arg("inject").arg(&f.reg).arg("3");
            c
        },
        DEADLINE,
    );
    assert_eq!(out.code, 0, "audit-tamper: {out}");
    let ro = f.base().join("ro");
    let _mount = Mount::bind_ro(&f.reg, &ro);
    let before = snapshot(&f.reg);
    let on_ro = |args: &[&str]| {
        let mut c = Command::new(sealtool());
        c.env_remove("CAPSULE_REGISTRY")
            .arg("--registry")
            .arg(&ro)
            .args(args);
        run_with_deadline(c, DEADLINE)
    };
    // Control: the mount refuses writes.
    assert!(
        fs::write(ro.join("probe"), "x").is_err(),
        "the bind mount is writable"
    );
    let out = on_ro(&["list"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("cap ") && l.contains(&d2[..16])),
        "{out}"
    );
    assert!(out.stdout.lines().any(|l| l.starts_with("other ")), "{out}");
    assert!(
        out.stderr.contains("refuses writes"),
        "the copy is said: {out}"
    );
    let out = on_ro(&["show", "cap", "--history"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(field(&out.stdout, "digest"), d2);
    assert!(out.stdout.contains(&d1), "{out}");
    let out = on_ro(&["verify", "--json"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json()["status"], "clean", "{out}");
    let out = on_ro(&["audit", "--json"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(
        out.stdout.lines().count(),
        4,
        "3 records and the lost count: {out}"
    );
    let out = on_ro(&["audit", "--check"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("intact"), "{out}");
    // Writers say why they can't.
    let out = on_ro(&["remove", "other"]);
    assert_error(&out, &["Read-only file system"]);
    assert_eq!(snapshot(&f.reg), before, "a reader wrote to the registry");
    // (Copies are made straight in the temporary directory; other tests' files come and go
    // below it, so only its top level is read.)
    let left: Vec<_> = fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("capsule-index-")
        })
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "copies of the index left behind: {left:?}");
}

/// Manifest or seal files without their index records (lost, undecodable) are damage, named,
/// exit 2: never "clean" or "no capsules registered".
#[test]
fn lost_index_records_are_damage_by_name() {
    let f = Fixture::new();
    f.write("a", "a");
    f.register("cap", &[]);
    f.register("sealed", &[]);
    assert_eq!(f.run(&["seal", "sealed"]).code, 3);
    f.register("fine", &[]);
    {
        let db = sled::open(f.reg.join("db")).expect("open the index");
        let capsules = db.open_tree("capsules").unwrap();
        capsules.remove("cap").unwrap();
        capsules.insert("sealed", &b"\x01garbage"[..]).unwrap();
        db.flush().unwrap();
    }
    let out = f.run(&["list"]);
    assert_error(&out, &["cap ", "sealed ", "DAMAGED", "registry rebuild"]);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("fine ") && l.contains("registered")),
        "{out}"
    );
    let out = f.run(&["verify", "--json"]);
    assert_eq!(out.code, 2, "{out}");
    let v = out.json();
    assert_eq!(v["status"], "error", "{out}");
    assert_eq!(v["damaged"], serde_json::json!(["cap", "sealed"]), "{out}");
    let status = |name: &str| {
        v["capsules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["status"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(status("cap").as_deref(), Some("damaged"));
    assert_eq!(status("sealed").as_deref(), Some("damaged"));
    assert_eq!(status("fine").as_deref(), Some("clean"));
    let out = f.run(&["verify", "cap"]);
    assert_error(&out, &["cap: DAMAGED", "no record"]);
    let out = f.run(&["show", "sealed"]);
    assert_error(&out, &["\"sealed\" is damaged", "undecodable"]);
    // A registration over the damage is refused: its baseline is unknown.
    let out = f.run(&["register", s(&f.tree), "--name", "cap"]);
    assert_error(&out, &["\"cap\" is damaged"]);
    // The whole index gone: still every capsule, by name.
    fs::remove_dir_all(f.reg.join("db")).unwrap();
    let out = f.run(&["verify"]);
    assert_error(&out, &["cap: DAMAGED", "sealed: DAMAGED", "fine: DAMAGED"]);
    assert!(!out.stdout.contains("no capsules registered"), "{out}");
    assert!(!f.reg.join("db").exists(), "a reader recreated the index");
    let out = f.run(&["registry", "rebuild"]);
    assert_eq!(out.code, 0, "{out}");
    let out = f.run(&["verify"]);
    assert_eq!(out.code, 0, "{out}");
    let out = f.run(&["list"]);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("sealed ") && l.contains("sealed")),
        "{out}"
    );
}

/// A baseline changes only on purpose, and its history stays.
#[test]
fn register_of_a_drifted_tree_needs_update_and_history_is_kept() {
    let f = Fixture::new();
    f.write("a", "one");
    f.write("b", "b");
    let d1 = f.register("cap", &[]);
    let file = f.reg.join("manifests/cap").join(format!("{d1}.manifest"));
    let ino = || {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(&file).unwrap().ino()
    };
    let first_ino = ino();
    // Unchanged: exit 0, nothing rewritten.
    let out = f.run(&["register", s(&f.tree), "--name", "cap"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout.contains("unchanged") && out.stdout.contains("nothing rewritten"),
        "{out}"
    );
    assert_eq!(ino(), first_ino, "the manifest was rewritten");
    // Drifted: exit 1, the drift listed, nothing changed.
    f.write("a", "two");
    fs::remove_file(f.p("b")).unwrap();
    let before = snapshot(&f.reg.join("manifests"));
    let out = f.run(&["register", s(&f.tree), "--name", "cap"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stdout.contains("content        a: "), "{out}");
    assert!(out.stdout.contains("removed        b"), "{out}");
    assert_eq!(snapshot(&f.reg.join("manifests")), before);
    assert_eq!(f.show_digest("cap"), d1);
    // A moved root with the same content is a change too.
    let moved = f.base().join("moved");
    fs::rename(&f.tree, &moved).unwrap();
    let out = f.run(&["register", s(&moved), "--name", "cap"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stdout.contains("the root was"), "{out}");
    fs::rename(&moved, &f.tree).unwrap();
    // --update: the new baseline; the old manifest kept, both in the history.
    let d2 = f.register("cap", &["--update"]);
    assert_ne!(d1, d2);
    assert_eq!(ino(), first_ino, "the previous manifest is kept as it was");
    let out = f.run(&["show", "cap", "--history"]);
    assert_eq!(out.code, 0, "{out}");
    let hist: Vec<&str> = out
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("history"))
        .skip(1)
        .collect();
    assert_eq!(hist.len(), 2, "{out}");
    assert!(
        hist[0].contains(&d2) && hist[0].contains("(current)"),
        "{out}"
    );
    assert!(
        hist[1].contains(&d1) && !hist[1].contains("current"),
        "{out}"
    );
    assert!(
        hist[0].trim_start().starts_with("20"),
        "a time first: {out}"
    );
    f.expect_clean("cap");
}

/// Registry operations the manifest directory refuses midway (immutable, append-only,
/// read-only) change nothing: the index and the files agree as before.
#[test]
fn refused_manifest_directory_changes_nothing() {
    require_root!();
    let f = Fixture::new();
    let _m = Mount::tmpfs(&f.reg, "size=16m");
    f.write("a", "a");
    let d1 = f.register("cap", &[]);
    f.write("a", "changed");
    let dir = f.reg.join("manifests/cap");
    // The manifests (temporary files, named with a leading dot, are never read).
    let manifests = || -> Vec<String> {
        f.manifest_files("cap")
            .into_iter()
            .filter(|n| !n.starts_with('.'))
            .collect()
    };
    let agree = |what: &str, current: &str, files: &[&String]| {
        let out = f.run(&["list"]);
        assert_eq!(out.code, 0, "{what}: index and files disagree:\n{out}");
        assert_eq!(f.show_digest("cap"), current, "{what}");
        let mut want: Vec<String> = files.iter().map(|d| format!("{d}.manifest")).collect();
        want.sort();
        assert_eq!(manifests(), want, "{what}");
    };
    {
        let _attr = Chattr::set(&dir, "i");
        let out = f.run(&["register", s(&f.tree), "--name", "cap", "--update"]);
        assert_error(&out, &[s(&dir), "Operation not permitted"]);
        let out = f.run(&["remove", "cap"]);
        assert_error(&out, &[s(&dir), "Operation not permitted"]);
    }
    agree("immutable", &d1, &[&d1]);
    let d2 = {
        // Append-only: a new manifest can be added (as at level 2), nothing removed or
        // replaced.
        let _attr = Chattr::set(&dir, "a");
        let out = f.run(&["remove", "cap"]);
        assert_error(&out, &[s(&dir), "Operation not permitted"]);
        agree("append-only, remove", &d1, &[&d1]);
        let d2 = f.register("cap", &["--update"]);
        agree("append-only, a new manifest", &d2, &[&d1, &d2]);
        // The first tree again: its manifest would be replaced (a new time), refused.
        f.write("a", "a");
        let out = f.run(&["register", s(&f.tree), "--name", "cap", "--update"]);
        assert_error(&out, &[s(&dir), "Operation not permitted"]);
        agree("append-only, a replaced manifest", &d2, &[&d1, &d2]);
        d2
    };
    {
        let _attr = Chattr::set(&f.reg.join("manifests"), "a");
        let out = f.run(&["remove", "cap"]);
        assert_error(&out, &["Operation not permitted"]);
    }
    agree("append-only manifests", &d2, &[&d1, &d2]);
    {
        let _ro = Mount::bind_ro(&dir, &dir);
        let out = f.run(&["register", s(&f.tree), "--name", "cap", "--update"]);
        assert_error(&out, &["Read-only file system"]);
        // (A mount point can't be moved aside: EBUSY, as refused.)
        let out = f.run(&["remove", "cap"]);
        assert_error(&out, &[s(&dir), "cannot remove the manifests"]);
    }
    agree("read-only", &d2, &[&d1, &d2]);
    // The control: without the refusals both work.
    let d3 = f.register("cap", &["--update"]);
    assert_eq!(d3, d1);
    agree("control", &d1, &[&d1, &d2]);
    let out = f.run(&["remove", "cap"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(!dir.exists());
    assert!(
        find_named(&f.reg.join("manifests"), "").is_empty(),
        "nothing is left aside"
    );
}

/// A registry path that is a file, for readers and writers: exit 2 naming it, no panic.
#[test]
fn a_registry_path_that_is_not_a_directory() {
    let f = Fixture::new();
    f.write("a", "a");
    let file = f.base().join("not-a-dir");
    fs::write(&file, "x").unwrap();
    for args in [
        vec!["list"],
        vec!["verify", "--json"],
        vec!["show", "cap"],
        vec!["audit", "--since", "10m"],
        vec!["register", s(&f.tree), "--name", "cap"],
        vec!["registry", "rebuild"],
    ] {
        let mut all = vec!["--registry", s(&file)];
        all.extend_from_slice(&args);
        let mut c = Command::new(sealtool());
        c.env_remove("CAPSULE_REGISTRY").args(&all);
        let out = run_with_deadline(c, DEADLINE);
        assert_error(&out, &[s(&file)]);
        assert!(!out.stderr.contains("panicked"), "{args:?}: {out}");
    }
    assert_eq!(fs::read_to_string(&file).unwrap(), "x");
}
