//! Inode identities as the kernel sees them: converting `stat()`'s userspace `st_dev` to the
//! kernel-internal `dev_t` that BPF programs read from `inode->i_sb->s_dev`, and building
//! [`fsguard_inode_key`]s from paths.
//!
//! Inside the kernel a `dev_t` is 32 bits, `(major << 20) | minor` (`include/linux/kdev_t.h`,
//! `MINORBITS = 20`). `stat()` does not report that value: it re-encodes it
//! (`new_encode_dev`/`huge_encode_dev`) into the userspace layout that glibc's `major()` /
//! `minor()` decode (minor in bits 0-7 and 20-31, major in bits 8-19 and 32+). For a
//! real block device the two differ (sda1 = 8:1 is `0x801` in `st_dev` but `0x800001` in
//! `s_dev`); for virtual filesystems (tmpfs, proc, ...: major 0, small minor) they coincide,
//! which hides a missing conversion in any test that only uses tmpfs.
//!
//! Caveat for later: on some filesystems `st_dev` is not the inode's `i_sb->s_dev` at all
//! (btrfs reports the subvolume's anonymous device; overlayfs may report the overlay's or a
//! layer's device depending on its options), so a key built from `stat()` would not match
//! what the LSM hook sees there. Check such filesystems in the guest before relying on them.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::shared::fsguard_inode_key;
use crate::Error;

/// Bits of the minor number in the kernel-internal `dev_t`.
pub const MINORBITS: u32 = 20;
/// Largest minor number a kernel `dev_t` can hold.
pub const MAX_MINOR: u32 = (1 << MINORBITS) - 1;
/// Largest major number a kernel `dev_t` can hold.
pub const MAX_MAJOR: u32 = (1 << (32 - MINORBITS)) - 1;

/// Converts a userspace `st_dev` (from `stat()`) to the kernel-internal `dev_t`
/// (`(major << 20) | minor`, the value of `inode->i_sb->s_dev`).
///
/// Returns `None` when the major or minor number does not fit the kernel's 12/20 bits, which
/// cannot happen for an `st_dev` the kernel produced.
pub fn kernel_dev_from_user(st_dev: u64) -> Option<u32> {
    let major = libc::major(st_dev);
    let minor = libc::minor(st_dev);
    if major > MAX_MAJOR || minor > MAX_MINOR {
        return None;
    }
    Some((major << MINORBITS) | minor)
}

/// The kernel-internal `dev_t` of a `major:minor` string (sysfs's `dev`, mountinfo's third
/// field); `None` when it is not one or does not fit the kernel's bits.
pub fn kernel_dev_from_majmin(majmin: &str) -> Option<u32> {
    let (major, minor) = majmin.split_once(':')?;
    kernel_dev_from_user(libc::makedev(major.parse().ok()?, minor.parse().ok()?))
}

/// Converts a kernel-internal `dev_t` back to the userspace `st_dev` encoding.
pub fn user_dev_from_kernel(kernel_dev: u32) -> u64 {
    libc::makedev(kernel_dev >> MINORBITS, kernel_dev & MAX_MINOR)
}

/// A kernel-internal `dev_t` as sysfs writes it: `major:minor`.
pub fn majmin_of_kernel(kernel_dev: u64) -> String {
    format!(
        "{}:{}",
        kernel_dev >> MINORBITS,
        kernel_dev & u64::from(MAX_MINOR)
    )
}

impl fsguard_inode_key {
    /// The kernel's identity of the inode described by `meta`, or `None` when its `st_dev`
    /// cannot be a kernel `dev_t` (see [`kernel_dev_from_user`]).
    pub fn from_metadata(meta: &Metadata) -> Option<Self> {
        Some(Self {
            dev: u64::from(kernel_dev_from_user(meta.dev())?),
            ino: meta.ino(),
        })
    }

    /// The kernel's identity of the inode at `path`, following symlinks (the inode an `open()`
    /// of `path` reaches).
    pub fn of_path(path: &Path) -> crate::Result<Self> {
        let meta = std::fs::metadata(path).map_err(|source| Error::Stat {
            path: path.to_owned(),
            source,
        })?;
        Self::from_metadata(&meta).ok_or_else(|| Error::DeviceOutOfRange {
            path: path.to_owned(),
            st_dev: meta.dev(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kdev(major: u32, minor: u32) -> u32 {
        (major << 20) | minor
    }

    #[test]
    fn block_device_encodings_differ() {
        // sda1 = 8:1: glibc/stat encoding 0x801, kernel encoding 0x800001.
        let st_dev = libc::makedev(8, 1);
        assert_eq!(st_dev, 0x801);
        assert_eq!(kernel_dev_from_user(st_dev), Some(0x0080_0001));
    }

    #[test]
    fn anonymous_devices_look_the_same_in_both_encodings() {
        // tmpfs & co.: major 0, small minor -> identical numbers, so tmpfs tests can't catch
        // a missing conversion.
        assert_eq!(kernel_dev_from_user(45), Some(45));
    }

    #[test]
    fn large_minor_and_major_use_the_split_bits() {
        // nvme0n1p1-like 259:0x12345: minor bits above 0xff live at bit 20+ in st_dev.
        let st_dev = libc::makedev(259, 0x12345);
        assert_eq!(st_dev, (0x123 << 20) | (259 << 8) | 0x45);
        assert_eq!(kernel_dev_from_user(st_dev), Some(kdev(259, 0x12345)));
        let max = libc::makedev(MAX_MAJOR, MAX_MINOR);
        assert_eq!(kernel_dev_from_user(max), Some(u32::MAX));
    }

    #[test]
    fn out_of_range_numbers_are_rejected() {
        assert_eq!(kernel_dev_from_user(libc::makedev(MAX_MAJOR + 1, 0)), None);
        assert_eq!(kernel_dev_from_user(libc::makedev(0, MAX_MINOR + 1)), None);
    }

    #[test]
    fn round_trip() {
        for (major, minor) in [
            (0, 0),
            (0, 45),
            (8, 1),
            (254, 16),
            (259, 0x12345),
            (4095, 1),
        ] {
            let k = kdev(major, minor);
            let st_dev = user_dev_from_kernel(k);
            assert_eq!(st_dev, libc::makedev(major, minor));
            assert_eq!(kernel_dev_from_user(st_dev), Some(k), "{major}:{minor}");
        }
    }

    #[test]
    fn key_of_a_real_path_matches_its_metadata() {
        let meta = std::fs::metadata("/").unwrap();
        let key = fsguard_inode_key::of_path(Path::new("/")).unwrap();
        assert_eq!(key.ino, meta.ino());
        assert_eq!(
            user_dev_from_kernel(u32::try_from(key.dev).unwrap()),
            meta.dev()
        );
        assert_eq!(
            key.dev,
            u64::from((libc::major(meta.dev()) << 20) | libc::minor(meta.dev()))
        );
    }

    #[test]
    fn key_of_a_missing_path_names_it() {
        let err = fsguard_inode_key::of_path(Path::new("/nonexistent/fsguard")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/fsguard"), "{err}");
    }

    #[test]
    fn majmin_strings_convert_like_st_dev() {
        assert_eq!(kernel_dev_from_majmin("8:1"), Some(0x0080_0001));
        assert_eq!(
            kernel_dev_from_majmin("259:74565"),
            kernel_dev_from_user(libc::makedev(259, 74565))
        );
        assert_eq!(kernel_dev_from_majmin("8"), None);
        assert_eq!(kernel_dev_from_majmin("8:x"), None);
        assert_eq!(kernel_dev_from_majmin("4096:0"), None);
    }
}
