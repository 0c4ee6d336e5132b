//! `sealtool audit`: show, follow, collect and check the audit log of refusals.

use crate::Context;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_ctx: &Context, _args: Args) -> anyhow::Result<u8> {
    anyhow::bail!("`sealtool audit` is not built yet")
}
