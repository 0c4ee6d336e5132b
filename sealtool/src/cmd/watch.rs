//! `sealtool watch`: watch sealed trees for changes (detection only, where the kernel cannot enforce).

use crate::Context;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_ctx: &Context, _args: Args) -> anyhow::Result<u8> {
    anyhow::bail!("`sealtool watch` is not built yet")
}
