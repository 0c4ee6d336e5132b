//! `sealtool registry rebuild`: recreate the database from the manifest files.

use anyhow::Result;
use capsule_core::display;
use capsule_core::registry::Registry;

use crate::{Context, EXIT_ERROR};

#[derive(clap::Subcommand)]
pub enum Action {
    /// Recreate the registry database from the manifest files (the old one is kept aside)
    Rebuild,
}

pub fn run(ctx: &Context, action: Action) -> Result<u8> {
    match action {
        Action::Rebuild => {
            let report = Registry::rebuild(&ctx.registry_dir)?;
            for r in &report.recovered {
                println!("recovered {} ({}, {} entries)", r.name, r.digest, r.entries);
            }
            for (path, reason) in &report.damaged {
                eprintln!(
                    "sealtool: damaged manifest skipped: {}: {reason}",
                    display::path(path)
                );
            }
            if let Some(old) = &report.old_db {
                println!("previous database kept at {}", display::path(old));
            }
            if let Some(why) = &report.audit_not_carried {
                eprintln!(
                    "sealtool: warning: the audit log was not carried over (it stays in the previous database): {why}"
                );
            }
            println!(
                "{} capsules recovered, {} damaged manifest files",
                report.recovered.len(),
                report.damaged.len()
            );
            Ok(if report.damaged.is_empty() {
                0
            } else {
                EXIT_ERROR
            })
        }
    }
}
