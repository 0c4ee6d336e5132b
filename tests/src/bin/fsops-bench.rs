//! fsops-bench: the file-operation workload of the fsguard overhead benchmark, and the
//! builder of large trees for it. Runs in the guest (scripts/bench-fsguard).
//!
//!   fsops-bench populate DIR N        create N small files under DIR (100 per directory)
//!   fsops-bench ops DIR N ROUNDS      ROUNDS times: create, write 4 KiB, rename and unlink N
//!                                     files in DIR; prints the best round's seconds
//!   fsops-bench serve REQUESTS REPLIES  answers requests (the arguments of `ops`, or `where`,
//!                                     or `quit`), one per opening of the fifo REQUESTS, with one
//!                                     line (the seconds, its cgroup v2 line, or `error: ...`) written
//!                                     to the fifo REPLIES
//!
//! `serve` is how the benchmark runs the workload inside a capsule: started in the capsule's
//! cgroup before the seal, it waits in a blocking open of a fifo, so nothing polls while a
//! workload is being timed (the guest's clock counts every instruction the CPU executes, a
//! poller's included).

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

fn populate(dir: &Path, n: usize) -> std::io::Result<()> {
    for i in 0..n {
        let sub = dir.join(format!("d{}", i / 100));
        if i % 100 == 0 {
            fs::create_dir_all(&sub)?;
        }
        fs::write(sub.join(format!("f{}", i % 100)), format!("entry {i}\n"))?;
    }
    Ok(())
}

fn round(dir: &Path, n: usize, block: &[u8]) -> std::io::Result<f64> {
    let start = Instant::now();
    for i in 0..n {
        let a = dir.join(format!("w{i}"));
        let b = dir.join(format!("r{i}"));
        let mut f = fs::File::create(&a)?;
        f.write_all(block)?;
        drop(f);
        fs::rename(&a, &b)?;
        fs::remove_file(&b)?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// The best of ROUNDS rounds of the workload, in seconds, formatted as `ops` prints it.
fn ops(dir: &str, n: &str, rounds: &str) -> Result<String, String> {
    let n = num(n)?;
    let rounds = num(rounds)?;
    if rounds == 0 {
        return Err("ROUNDS must be at least 1".into());
    }
    let block = vec![0x5au8; 4096];
    let mut best = f64::MAX;
    for _ in 0..rounds {
        best = best.min(round(Path::new(dir), n, &block).map_err(|e| format!("{dir}: {e}"))?);
    }
    Ok(format!("{best:.4}"))
}

fn num(s: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .map_err(|_| format!("{s:?} is not a number"))
}

/// One request's reply line; None for `quit`.
fn answer(request: &str) -> Option<String> {
    let words: Vec<&str> = request.split_whitespace().collect();
    let reply = match words.as_slice() {
        ["quit"] => return None,
        ["ops", dir, n, rounds] => ops(dir, n, rounds),
        ["where"] => fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("/proc/self/cgroup: {e}"))
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("0::"))
                    .map(str::to_string)
                    .ok_or_else(|| "/proc/self/cgroup: no cgroup v2 line".to_string())
            }),
        _ => Err(format!("unknown request {request:?}")),
    };
    Some(reply.unwrap_or_else(|e| format!("error: {e}")))
}

fn serve(requests: &str, replies: &str) -> Result<(), String> {
    loop {
        // Blocks until the benchmark opens the fifo to write a request.
        let request = fs::read_to_string(requests).map_err(|e| format!("{requests}: {e}"))?;
        let Some(reply) = answer(request.trim()) else {
            return Ok(());
        };
        let mut out = fs::OpenOptions::new()
            .write(true)
            .open(replies)
            .map_err(|e| format!("{replies}: {e}"))?;
        writeln!(out, "{reply}").map_err(|e| format!("{replies}: {e}"))?;
    }
}

fn run(args: &[String]) -> Result<(), String> {
    match args {
        [cmd, dir, n] if cmd == "populate" => {
            populate(Path::new(dir), num(n)?).map_err(|e| format!("{dir}: {e}"))
        }
        [cmd, dir, n, rounds] if cmd == "ops" => {
            println!("{}", ops(dir, n, rounds)?);
            Ok(())
        }
        [cmd, requests, replies] if cmd == "serve" => serve(requests, replies),
        _ => Err(
            "usage: fsops-bench populate DIR N | fsops-bench ops DIR N ROUNDS | \
                  fsops-bench serve REQUESTS REPLIES"
                .into(),
        ),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fsops-bench: {e}");
            ExitCode::from(2)
        }
    }
}
