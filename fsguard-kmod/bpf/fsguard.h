/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fsguard.h - THE interface shared by the BPF C programs (bpf/\*.bpf.c) and the Rust loader.
 *
 * Rust gets these definitions through bindgen (build.rs -> OUT_DIR/shared_bindings.rs ->
 * src/shared.rs), so every struct here is a plain, fixed-size, explicitly padded C struct
 * with the same layout on the BPF target and on x86_64: only __u32/__u64 fields, no
 * pointers, no bitfields, no implicit padding. Changing a layout means bumping
 * FSGUARD_ABI_VERSION.
 *
 * This header includes nothing: the includer must have __u32 and __u64 defined first
 * (BPF side: vmlinux_min.h; bindgen: a prelude in build.rs), as in libbpf-bootstrap.
 */
#ifndef __FSGUARD_H__
#define __FSGUARD_H__

/* "FSGD": first field of struct fsguard_config; a program ignores a config without it. */
#define FSGUARD_MAGIC 0x46534744u
/* Layout version of every struct in this header; the program ignores any other version. */
#define FSGUARD_ABI_VERSION 1u

/* struct fsguard_config.level */
#define FSGUARD_LEVEL_OFF 0u        /* programs attached but allow everything */
#define FSGUARD_LEVEL_ENFORCE 1u    /* programs apply the rules in their maps */

/* Bits of the __u32 value stored for an inode in the deny map. */
#define FSGUARD_DENY_WRITE (1u << 0) /* refuse opens with FMODE_WRITE */

/* Capacity of the inode deny map. */
#define FSGUARD_MAX_INODES 4096u

/*
 * Runtime configuration, stored at index 0 of the one-entry array map `config`.
 * An all-zero entry (the state right after load) has no magic, so it enforces nothing.
 */
struct fsguard_config {
	__u32 magic;   /* FSGUARD_MAGIC */
	__u32 version; /* FSGUARD_ABI_VERSION */
	__u32 level;   /* FSGUARD_LEVEL_* */
	__u32 flags;   /* reserved, must be 0 */
};

/*
 * Identity of an inode as the kernel sees it.
 *
 * dev is the KERNEL-INTERNAL dev_t of the inode's super block (inode->i_sb->s_dev):
 * (major << 20) | minor. It is NOT stat()'s st_dev, which uses the userspace encoding
 * (glibc major()/minor()); convert with fsguard::dev::kernel_dev_from_user() in Rust.
 * ino is inode->i_ino, which equals stat()'s st_ino.
 */
struct fsguard_inode_key {
	__u64 dev;
	__u64 ino;
};

/* Event counters, one copy per CPU in the per-CPU array map `stats` (index 0). */
struct fsguard_stats {
	__u64 denied_write; /* opens for write refused because of a deny entry */
};

_Static_assert(sizeof(struct fsguard_config) == 16, "fsguard_config layout changed");
_Static_assert(sizeof(struct fsguard_inode_key) == 16, "fsguard_inode_key layout changed");
_Static_assert(sizeof(struct fsguard_stats) == 8, "fsguard_stats layout changed");

#endif /* __FSGUARD_H__ */
