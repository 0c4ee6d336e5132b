//! `sealtool show NAME [--entries] [--history]`

use anyhow::Result;
use capsule_core::display;
use capsule_core::manifest::{Entry, EntryKind};
use capsule_core::registry::{Access, Registry};

use crate::output::{human_bytes, time};
use crate::Context;

#[derive(clap::Args)]
pub struct Args {
    name: String,
    /// Also list every recorded entry
    #[arg(long)]
    entries: bool,
    /// Also list every manifest registered under this name, newest first
    #[arg(long)]
    history: bool,
}

fn entry_line(e: &Entry) -> String {
    let what = match e.kind {
        EntryKind::File if e.is_unreadable() => "unreadable".to_string(),
        EntryKind::File => e
            .hash
            .map(|h| h[..8].iter().map(|b| format!("{b:02x}")).collect())
            .unwrap_or_default(),
        EntryKind::Symlink => format!(
            "-> {}",
            e.target
                .as_deref()
                .map(display::escape_bytes)
                .unwrap_or_default()
        ),
        EntryKind::CharDevice | EntryKind::BlockDevice => {
            e.rdev.map(|(a, b)| format!("{a}:{b}")).unwrap_or_default()
        }
        _ => String::new(),
    };
    let mut s = format!(
        "{:<12} {:04o} {:>5}:{:<5} {:>12} {:<18} {}",
        e.kind.name(),
        e.mode,
        e.uid,
        e.gid,
        e.size,
        what,
        display::rel_path(&e.path)
    );
    if let Some(l) = &e.link_leader {
        if **l != *e.path {
            s.push_str(&format!("  (hard link of {})", display::rel_path(l)));
        }
    }
    if e.links_outside() {
        s.push_str("  (linked from outside the tree)");
    }
    if !e.xattrs.is_empty() {
        let names: Vec<_> = e
            .xattrs
            .iter()
            .map(|x| display::escape_bytes(&x.name))
            .collect();
        s.push_str(&format!("  [xattrs: {}]", names.join(", ")));
    }
    s
}

pub fn run(ctx: &Context, args: Args) -> Result<u8> {
    let reg = Registry::open(&ctx.registry_dir, Access::Read)?;
    super::note_index_copy(&reg);
    let rec = reg.require_sound(&args.name)?;
    let manifest = reg.load_manifest(&rec)?;
    let history = if args.history {
        reg.history(&args.name)?
    } else {
        Vec::new()
    };
    drop(reg);
    println!("name        {}", rec.name);
    println!("state       {}", rec.state.name());
    println!("root        {}", display::path(&rec.root));
    println!("digest      {}", rec.digest);
    println!("registered  {}", time(rec.registered_at));
    println!("entries     {}", rec.entries);
    println!("bytes       {} ({})", rec.bytes, human_bytes(rec.bytes));
    if !manifest.tree.excludes.is_empty() {
        println!("excludes    {}", manifest.tree.excludes.join(" "));
    }
    if args.history {
        println!();
        println!("history     (newest first)");
        for h in &history {
            let mut marks = Vec::new();
            if h.current {
                marks.push("current");
            }
            if h.sealed {
                marks.push("sealed");
            }
            let mut line = format!("  {}  {}", time(h.registered_at), h.digest);
            if !marks.is_empty() {
                line.push_str(&format!("  ({})", marks.join(", ")));
            }
            if h.root != rec.root {
                line.push_str(&format!("  root {}", display::path(&h.root)));
            }
            println!("{line}");
        }
    }
    if args.entries {
        println!();
        for e in &manifest.tree.entries {
            println!("{}", entry_line(e));
        }
    }
    Ok(0)
}
