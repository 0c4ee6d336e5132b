//! capsule-core: what a capsule tree is (manifest), how it is read from disk (walk), how
//! two readings differ (diff), and where capsules are kept (registry).
//!
//! The `sealtool` binary is a thin layer over this library; the kernel side lives in the
//! `fsguard` crate.

pub mod audit;
pub mod check;
pub mod codec;
pub mod diff;
pub mod display;
pub mod error;
pub mod glob;
pub mod jail;
pub mod manifest;
pub mod policy;
pub mod registry;
pub mod sys;
pub mod walk;
pub mod watch;

pub use error::{Error, Result};
