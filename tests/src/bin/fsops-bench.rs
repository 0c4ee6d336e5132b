//! fsops-bench: the file-operation workload of the fsguard overhead benchmark, and the
//! builder of large trees for it. Runs in the guest (scripts/bench-fsguard).
//!
//!   fsops-bench populate DIR N        create N small files under DIR (100 per directory)
//!   fsops-bench ops DIR N ROUNDS      ROUNDS times: create, write 4 KiB, rename and unlink N
//!                                     files in DIR; prints the best round's seconds

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

fn run(args: &[String]) -> Result<(), String> {
    let num = |s: &String| {
        s.parse::<usize>()
            .map_err(|_| format!("{s:?} is not a number"))
    };
    match args {
        [cmd, dir, n] if cmd == "populate" => {
            populate(Path::new(dir), num(n)?).map_err(|e| format!("{dir}: {e}"))
        }
        [cmd, dir, n, rounds] if cmd == "ops" => {
            let block = vec![0x5au8; 4096];
            let mut best = f64::MAX;
            for _ in 0..num(rounds)? {
                best = best.min(
                    round(Path::new(dir), num(n)?, &block).map_err(|e| format!("{dir}: {e}"))?,
                );
            }
            println!("{best:.4}");
            Ok(())
        }
        _ => Err("usage: fsops-bench populate DIR N | fsops-bench ops DIR N ROUNDS".into()),
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
