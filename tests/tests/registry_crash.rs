//! Crash safety of the registry, proven by killing: `register`, `register --update`, `remove`,
//! `seal` (on this host it records the seal and stops at "enforcement is NOT active", exit 3)
//! and `registry rebuild` are killed with SIGKILL at random points, at least
//! `CAPSULE_CRASH_KILLS` times (default 300). After each kill:
//!
//! - the registry opens: `list` and `verify --json` answer (exit 0, 1 or 2, never a panic);
//! - every capsule is clean, drifted only where its tree was changed on purpose, or damaged,
//!   by name; damage only ever concerns the capsule the killed command was working on (and
//!   is then repaired with `registry rebuild`, which must find no damaged file: nothing
//!   half-written is ever left under a name that is read);
//! - a capsule whose seal file exists is sealed (or damaged), never just registered; and
//!   one the killed command did not touch is as it was.
//!
//! The run is reproducible from the seed it prints (`CAPSULE_CRASH_SEED=N` sets it).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use capsule_tests::{sealtool, Out};
use serde_json::Value;

/// xorshift64*: enough randomness for kill points, reproducible from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Lab {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    reg: PathBuf,
}

impl Lab {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(sealtool());
        c.env_remove("CAPSULE_REGISTRY")
            .arg("--quiet")
            .arg("--registry")
            .arg(&self.reg)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn run(&self, args: &[&str]) -> Out {
        let o = self.cmd(args).output().expect("run sealtool");
        let out = Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        };
        assert!(
            !out.stderr.contains("panicked"),
            "sealtool {args:?} panicked:\n{out}"
        );
        out
    }

    /// Runs `args` and kills it (SIGKILL) after `delay`. Whether it was still running.
    fn kill_after(&self, args: &[&str], delay: Duration) -> bool {
        let mut child = self.cmd(args).spawn().expect("spawn sealtool");
        std::thread::sleep(delay);
        let running = child.try_wait().expect("try_wait").is_none();
        let _ = child.kill();
        let _ = child.wait();
        running
    }

    fn tree(&self, name: &str) -> PathBuf {
        self.base.join("trees").join(name)
    }

    fn seal_files(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let Ok(dirs) = fs::read_dir(self.reg.join("manifests")) else {
            return out;
        };
        for d in dirs.flatten() {
            let name = d.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            for f in fs::read_dir(d.path()).into_iter().flatten().flatten() {
                let f = f.file_name().to_string_lossy().into_owned();
                if f.ends_with(".seal") && !f.starts_with('.') {
                    out.insert(name.clone());
                }
            }
        }
        out
    }
}

/// A small tree: `n` files in two directories, and a symlink.
fn build_tree(dir: &Path, n: usize) {
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::create_dir_all(dir.join("bin")).unwrap();
    for i in 0..n {
        let sub = if i % 2 == 0 { "etc" } else { "bin" };
        fs::write(
            dir.join(sub).join(format!("f{i}")),
            format!("content {i}\n"),
        )
        .unwrap();
    }
    let _ = std::os::unix::fs::symlink("etc/f0", dir.join("link"));
}

/// What `verify --json` says of each capsule: (status, digest, state).
fn verify_all(lab: &Lab) -> (Out, BTreeMap<String, (String, String, String)>) {
    let out = lab.run(&["verify", "--json"]);
    assert!(
        matches!(out.code, 0..=2),
        "verify --json: unexpected exit:\n{out}"
    );
    let doc: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("verify --json is not JSON ({e}):\n{out}"));
    let mut map = BTreeMap::new();
    for c in doc["capsules"].as_array().expect("capsules") {
        let name = c["name"].as_str().expect("name").to_string();
        let status = c["status"].as_str().expect("status").to_string();
        let digest = c["digest"].as_str().unwrap_or_default().to_string();
        let state = c["state"].as_str().unwrap_or_default().to_string();
        map.insert(name, (status, digest, state));
    }
    (out, map)
}

/// Seals are permanent and each adds a capsule every later check verifies.
const MAX_SEALS: usize = 30;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Register,
    Update,
    Remove,
    Seal,
    Rebuild,
}

#[test]
fn killed_registry_operations_leave_it_consistent() {
    let seed = std::env::var("CAPSULE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
        | 1;
    let want_kills: usize = std::env::var("CAPSULE_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    println!("registry_crash: seed {seed} (CAPSULE_CRASH_SEED={seed} repeats this run)");
    let mut rng = Rng(seed);
    let tmp = tempfile::Builder::new()
        .prefix("capsule-crash-")
        .tempdir()
        .unwrap();
    let lab = Lab {
        base: tmp.path().to_path_buf(),
        reg: tmp.path().join("reg"),
        _tmp: tmp,
    };
    let names = ["c0", "c1", "c2", "c3"];
    for n in names {
        build_tree(&lab.tree(n), 24);
    }
    build_tree(&lab.tree("sealed"), 24);
    // Each op's uninterrupted duration, so that kill points spread over the whole run.
    let mut took: BTreeMap<&str, Duration> = BTreeMap::new();
    let timed = |lab: &Lab, args: &[&str], ok: &[i32]| -> Duration {
        let start = Instant::now();
        let out = lab.run(args);
        assert!(ok.contains(&out.code), "{args:?}:\n{out}");
        start.elapsed()
    };
    for n in names {
        let t = lab.tree(n);
        took.insert(
            "register",
            timed(&lab, &["register", t.to_str().unwrap(), "--name", n], &[0]),
        );
    }
    fs::write(lab.tree("c0").join("etc/f0"), "changed\n").unwrap();
    let t = lab.tree("c0");
    took.insert(
        "update",
        timed(
            &lab,
            &["register", t.to_str().unwrap(), "--name", "c0", "--update"],
            &[0],
        ),
    );
    let t = lab.tree("sealed");
    timed(
        &lab,
        &["register", t.to_str().unwrap(), "--name", "s0"],
        &[0],
    );
    took.insert("seal", timed(&lab, &["seal", "s0"], &[3]));
    took.insert("rebuild", timed(&lab, &["registry", "rebuild"], &[0]));
    timed(&lab, &["remove", "c3"], &[0]);
    took.insert("remove", took["rebuild"].min(took["register"]));
    println!("registry_crash: uninterrupted durations {took:?}");

    let started = Instant::now();
    let (mut kills, mut finished, mut damaged_seen, mut sealed_n) = (0usize, 0usize, 0usize, 1);
    // The digest each capsule had after the last check, and whether its tree has changed
    // since (so that drift is expected).
    let mut iteration = 0u64;
    // What is registered now (the registry is consistent here, and after each round).
    let (_, mut before) = verify_all(&lab);
    while kills < want_kills {
        iteration += 1;
        let registered: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| before.contains_key(*n))
            .collect();
        let absent: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !before.contains_key(*n))
            .collect();
        // Seals are permanent and each adds a capsule to every later check: fewer of them.
        let op = match rng.below(9) {
            0 | 1 if !absent.is_empty() => Op::Register,
            0..=3 => Op::Update,
            4 | 5 if registered.len() > 1 => Op::Remove,
            4 | 5 => Op::Register,
            6 if sealed_n <= MAX_SEALS => Op::Seal,
            6 => Op::Update,
            _ => Op::Rebuild,
        };
        let op = if op == Op::Register && absent.is_empty() {
            Op::Update
        } else {
            op
        };
        let pick = |list: &[&str], r: u64| list[(r % list.len() as u64) as usize].to_string();
        let key = match op {
            Op::Register => "register",
            Op::Update => "update",
            Op::Remove => "remove",
            Op::Seal => "seal",
            Op::Rebuild => "rebuild",
        };
        let budget = took[key];
        let (target, args): (Option<String>, Vec<String>) = match op {
            Op::Register => {
                let n = pick(&absent, rng.next());
                let t = lab.tree(&n).to_str().unwrap().to_string();
                (
                    Some(n.clone()),
                    vec!["register".into(), t, "--name".into(), n],
                )
            }
            Op::Update => {
                let n = pick(&registered, rng.next());
                let t = lab.tree(&n);
                fs::write(
                    t.join("etc/f0"),
                    format!("version {iteration} {}\n", rng.next()),
                )
                .unwrap();
                (
                    Some(n.clone()),
                    vec![
                        "register".into(),
                        t.to_str().unwrap().into(),
                        "--name".into(),
                        n,
                        "--update".into(),
                    ],
                )
            }
            Op::Remove => {
                let n = pick(&registered, rng.next());
                (Some(n.clone()), vec!["remove".into(), n])
            }
            Op::Seal => {
                let n = format!("s{sealed_n}");
                sealed_n += 1;
                let t = lab.tree("sealed");
                let out = lab.run(&["register", t.to_str().unwrap(), "--name", &n]);
                assert_eq!(out.code, 0, "register {n}:\n{out}");
                (Some(n.clone()), vec!["seal".into(), n])
            }
            Op::Rebuild => (None, vec!["registry".into(), "rebuild".into()]),
        };
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        // The registry is written at the end of each command (after starting, walking and
        // checking): two kills in three land in its second half.
        let micros = budget.as_micros().max(1000) as u64;
        let delay = Duration::from_micros(if rng.below(3) == 0 {
            rng.below(micros)
        } else {
            micros / 2 + rng.below(micros / 2)
        });
        // The budget follows the command's real length: shorter when it finished first.
        if lab.kill_after(&argv, delay) {
            kills += 1;
            took.insert(key, budget.mul_f64(1.02));
        } else {
            finished += 1;
            took.insert(key, budget.mul_f64(0.9));
        }

        // The registry opens, and answers for every capsule (`list` every fifth round: it
        // opens the registry as `verify` does).
        if iteration.rem_euclid(5) == 0 {
            let list = lab.run(&["list"]);
            assert!(
                list.code == 0 || (list.code == 2 && list.stdout.contains("DAMAGED")),
                "after {op:?} {argv:?} killed at {delay:?} (seed {seed}): list fails:\n{list}"
            );
        }
        let (out, after) = verify_all(&lab);
        let mut damaged = Vec::new();
        for (name, (status, digest, _)) in &after {
            let touched = target.as_deref() == Some(name.as_str());
            match status.as_str() {
                "damaged" => {
                    assert!(
                        touched,
                        "{name} is damaged though {op:?} {argv:?} (killed at {delay:?}, seed {seed}) did not touch it:\n{out}"
                    );
                    damaged.push(name.clone());
                }
                "clean" => {}
                // Only an update changes a tree; killed before it took, the old baseline
                // stays and the tree has drifted from it.
                "drift" => assert!(
                    touched && op == Op::Update,
                    "{name} drifted after {op:?} {argv:?} (seed {seed}):\n{out}"
                ),
                other => {
                    panic!("{name}: status {other} after {op:?} {argv:?} (seed {seed}):\n{out}")
                }
            }
            if !touched {
                let was = before.get(name).map(|(_, d, _)| d.as_str());
                assert_eq!(
                    was,
                    Some(digest.as_str()),
                    "{name} changed though {op:?} did not touch it (seed {seed}):\n{out}"
                );
            }
        }
        for name in before.keys() {
            let touched = target.as_deref() == Some(name.as_str());
            assert!(
                touched || after.contains_key(name),
                "{name} vanished after {op:?} {argv:?} (seed {seed}):\n{out}"
            );
        }
        if op == Op::Rebuild {
            assert!(
                damaged.is_empty(),
                "a killed rebuild left damage (seed {seed}):\n{out}"
            );
        }
        // A seal on disk is never lost: the capsule is sealed (or damaged).
        for n in lab.seal_files() {
            let (status, _, state) = after
                .get(&n)
                .unwrap_or_else(|| panic!("sealed {n} is not listed (seed {seed}):\n{out}"));
            assert!(
                state == "sealed" || status == "damaged",
                "{n} has a seal file but is {state} and {status} (seed {seed}):\n{out}"
            );
        }
        // Repair, and prove that nothing half-written lies under a name that is read: the
        // rebuild reads every capsule's files and finds none damaged. Also every tenth time.
        if !damaged.is_empty() || iteration.rem_euclid(10) == 0 {
            damaged_seen += damaged.len();
            let out = lab.run(&["registry", "rebuild"]);
            assert_eq!(
                out.code, 0,
                "rebuild after {op:?} {argv:?} (seed {seed}):\n{out}"
            );
            assert!(
                out.stdout.contains(", 0 damaged manifest files"),
                "(seed {seed}):\n{out}"
            );
            let (out, fixed) = verify_all(&lab);
            assert!(
                fixed.values().all(|(s, _, _)| s != "damaged"),
                "still damaged after a rebuild (seed {seed}):\n{out}"
            );
            // A drifted capsule (an update killed before it took) is made current again,
            // so that the next round starts clean.
            for (name, (status, _, _)) in &fixed {
                if status == "drift" {
                    let t = lab.tree(name);
                    let out =
                        lab.run(&["register", t.to_str().unwrap(), "--name", name, "--update"]);
                    assert_eq!(out.code, 0, "{out}");
                }
            }
            before = verify_all(&lab).1;
        } else if op == Op::Update
            && after
                .get(target.as_deref().unwrap_or_default())
                .is_some_and(|(s, _, _)| s == "drift")
        {
            let n = target.as_deref().unwrap_or_default();
            let t = lab.tree(n);
            let out = lab.run(&["register", t.to_str().unwrap(), "--name", n, "--update"]);
            assert_eq!(out.code, 0, "{out}");
            before = verify_all(&lab).1;
        } else {
            before = after;
        }
    }
    println!(
        "registry_crash: {kills} kills, {finished} runs that finished before their kill, \
         {damaged_seen} damaged capsules found and rebuilt, {} sealed, in {:.1} s (seed {seed})",
        sealed_n - 1,
        started.elapsed().as_secs_f64()
    );
    assert!(kills >= want_kills);
}
