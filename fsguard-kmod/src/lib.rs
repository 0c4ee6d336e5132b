//! `fsguard`: the Rust side of capsule's BPF LSM enforcement.
//!
//! The BPF programs live in `bpf/*.bpf.c` and are compiled by `build.rs` into objects embedded
//! in this crate ([`objects`]); the structs they share with Rust are defined once, in
//! `bpf/fsguard.h`, and reach Rust through bindgen ([`shared`]). This crate:
//!
//! - tells whether the running kernel can enforce at all ([`support::check_support`]);
//! - converts `stat()` identities to the kernel's view of an inode ([`dev`]);
//! - loads, configures, attaches and detaches the programs ([`smoke::Smoke`] for the smoke
//!   program; the generic steps are in `loader`).
//!
//! Nothing here may run against the host kernel of the development machines: they refuse LSM
//! programs. Kernel behaviour is exercised only inside a qemu guest, by `fsguard-smoke`.

mod batch;
pub mod dev;
pub mod enforce;
pub mod error;
pub mod events;
pub mod guard;
pub mod identity;
pub mod integrity;
mod loader;
pub mod objects;
pub mod readers;
pub mod shared;
pub mod smoke;
pub mod support;

pub use error::{report, Error};
pub use loader::kernel_btf;
pub use shared::{fsguard_config as Config, fsguard_inode_key as InodeKey};
pub use support::{check_support, Unsupported};

/// Result of this crate's fallible operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
