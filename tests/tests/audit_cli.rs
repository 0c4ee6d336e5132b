//! Host tests of `sealtool audit`: option parsing, `--check` on empty, intact and tampered
//! logs, the shape of the human and JSON output, the filters, and `--follow`. The records
//! are written by the test helper `audit-tamper` (tests/src/bin) through capsule-core's audit
//! API, as the collector would, and tampered with straight in the sled tree; refusals from
//! the real kernel are covered by the guest suite (vm_audit.rs).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use capsule_tests::{sealtool, Out};

fn output(mut cmd: Command) -> Out {
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    Out {
        code: o.status.code().expect("killed by a signal"),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

struct Reg {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Reg {
    /// A fresh registry, made as a writer makes one (readers such as `audit` never create
    /// a registry).
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("reg");
        use capsule_core::registry::{Access, Registry};
        drop(Registry::open(&dir, Access::Write).expect("create the registry"));
        Reg { _tmp: tmp, dir }
    }

    fn sealtool(&self, args: &[&str]) -> Out {
        let mut c = Command::new(sealtool());
        c.env_remove("CAPSULE_REGISTRY")
            .arg("--registry")
            .arg(&self.dir)
            .arg("audit")
            .args(args);
        output(c)
    }

    fn tamper(&self, op: &str, n: u64) {
        let mut c = Command::new(env!("CARGO_BIN_EXE_audit-tamper"));
        c.arg(op).arg(&self.dir).arg(n.to_string());
        let out = output(c);
        assert_eq!(out.code, 0, "audit-tamper {op} {n}: {out}");
    }

    fn json_lines(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.sealtool(&all);
        assert_eq!(out.code, 0, "{out}");
        out.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect()
    }
}

#[test]
fn since_must_be_a_time() {
    let reg = Reg::new();
    for bad in [
        "yesterday",
        "10x",
        "2026-13-01T00:00:00Z",
        "2026-11-28",
        "-5m",
        "5µ",
        "µ",
        "2026-11-28T19:00:00+0é00",
        "99999999999999999999d",
    ] {
        let out = reg.sealtool(&[&format!("--since={bad}")]);
        assert_eq!(out.code, 2, "--since {bad}: {out}");
        assert!(out.stderr.contains("--since"), "--since {bad}: {out}");
        assert!(out.stderr.contains(bad), "the input is named: {out}");
        assert!(!out.stderr.contains("panicked"), "--since {bad}: {out}");
    }
    let out = reg.sealtool(&["--since", "10x"]);
    assert!(out.stderr.contains("unknown unit"), "{out}");
    for good in ["2026-11-28T19:00:00Z", "1795892400", "10m", "2h", "30s"] {
        let out = reg.sealtool(&["--since", good]);
        assert_eq!(out.code, 0, "--since {good}: {out}");
    }
}

#[test]
fn check_and_collect_do_not_mix_with_showing() {
    let reg = Reg::new();
    for args in [
        &["--check", "--follow"][..],
        &["--check", "--capsule", "app"],
        &["--collect", "--json"],
    ] {
        let out = reg.sealtool(args);
        assert_eq!(out.code, 2, "{args:?}: {out}");
        assert!(out.stderr.contains("cannot be used with"), "{out}");
    }
}

#[test]
fn empty_log_checks_intact_and_shows_nothing() {
    let reg = Reg::new();
    let out = reg.sealtool(&["--check"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("audit log intact: 0 records"), "{out}");
    let out = reg.sealtool(&[]);
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out}");
}

#[test]
fn json_output_has_every_field() {
    let reg = Reg::new();
    reg.tamper("inject", 4);
    let lines = reg.json_lines(&[]);
    assert_eq!(lines.len(), 5);
    let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    let r = &lines[1];
    assert_eq!(r["kind"], "refusal");
    assert_eq!(r["time"], "2026-11-28T19:00:01.000000Z");
    assert_eq!(r["time_ns"], 1_795_892_401_000_000_000u64);
    assert_eq!(r["capsule"], "db");
    assert_eq!(r["op"], "open-write");
    assert_eq!(r["rule"], "outside");
    assert_eq!(r["level"], 1);
    assert_eq!(r["path"], "/jails/app/file1");
    assert_eq!(r["dev"], "0:45");
    assert_eq!(r["ino"], 1001);
    assert_eq!(r["pid"], 4242);
    assert_eq!(r["target_pid"], 0);
    assert_eq!(r["uid"], 1000);
    assert_eq!(r["comm"], "sh");
    assert_eq!(r["cgroup_id"], 77);
    let lost = &lines[4];
    assert_eq!(lost["kind"], "lost");
    assert_eq!(lost["ratelimited"], 5000);
    assert_eq!(lost["dropped"], 7);
    assert_eq!(lost["time"], "2026-11-28T19:00:04.000000Z");
}

#[test]
fn human_output_names_time_capsule_operation_path_and_process() {
    let reg = Reg::new();
    reg.tamper("inject", 1);
    let out = reg.sealtool(&[]);
    assert_eq!(out.code, 0, "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(
        lines[0],
        "2026-11-28T19:00:00.000000Z #1 app open-write refused (outside, level 1): /jails/app/file0 by pid 4242 uid 1000 comm sh"
    );
    assert!(lines[1].contains("#2 lost: 5007 refusals not recorded one by one (5000 beyond the rate limit, 7 with the ring buffer full)"), "{out}");
}

#[test]
fn filters_by_capsule_and_time() {
    let reg = Reg::new();
    reg.tamper("inject", 6);
    let app = reg.json_lines(&["--capsule", "app"]);
    // Refusals 0, 2, 4 are app's; the lost record is always shown.
    let seqs: Vec<u64> = app.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 3, 5, 7]);
    let late = reg.json_lines(&["--since", "2026-11-28T19:00:04Z"]);
    let seqs: Vec<u64> = late.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![5, 6, 7]);
    let both = reg.json_lines(&["--since", "1795892403", "--capsule", "db"]);
    let seqs: Vec<u64> = both.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![4, 6, 7]);
    assert!(reg
        .json_lines(&["--capsule", "nope", "--since", "2030-01-01T00:00:00Z"])
        .is_empty());
}

#[test]
fn check_passes_then_names_an_edited_record() {
    let reg = Reg::new();
    reg.tamper("inject", 9);
    let out = reg.sealtool(&["--check"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout
            .starts_with("audit log intact: 10 records, head 10 "),
        "{out}"
    );
    let hash = out.stdout.trim().rsplit(' ').next().unwrap().to_string();
    assert_eq!(hash.len(), 64, "{out}");
    reg.tamper("edit", 4);
    let out = reg.sealtool(&["--check"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout
            .contains("TAMPERED at record 4: the record was altered"),
        "{out}"
    );
    let out = reg.sealtool(&["--check", "--json"]);
    assert_eq!(out.code, 1, "{out}");
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["intact"], false);
    assert_eq!(v["first_bad_seq"], 4);
}

#[test]
fn check_names_removed_records() {
    let reg = Reg::new();
    reg.tamper("inject", 5);
    reg.tamper("remove", 2);
    let out = reg.sealtool(&["--check"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout
            .contains("TAMPERED at record 2: record 2 was removed"),
        "{out}"
    );

    let reg = Reg::new();
    reg.tamper("inject", 5);
    reg.tamper("remove", 6);
    let out = reg.sealtool(&["--check"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout
            .contains("TAMPERED at record 6: record 6 (the last one) was removed"),
        "{out}"
    );
}

#[test]
fn follow_prints_new_records_and_leaves_the_database_free() {
    let reg = Reg::new();
    reg.tamper("inject", 1);
    let mut child = Command::new(sealtool())
        .env_remove("CAPSULE_REGISTRY")
        .arg("--registry")
        .arg(&reg.dir)
        .args(["audit", "--follow", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sealtool audit --follow");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| {
        rx.recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("--follow printed no {what} within 20 s"))
    };
    let first: Value = serde_json::from_str(&next("existing record")).unwrap();
    assert_eq!(first["seq"], 1);
    let _lost = next("existing lost record");
    // Appending while --follow runs works (it does not keep the database open), and the
    // new records show up.
    reg.tamper("inject", 1);
    let third: Value = serde_json::from_str(&next("new record")).unwrap();
    assert_eq!(third["seq"], 3);
    assert_eq!(third["kind"], "refusal");
    let _ = child.kill();
    let _ = child.wait();
}
