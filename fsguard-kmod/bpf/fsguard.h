/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fsguard.h - THE interface shared by the BPF C programs (bpf/\*.bpf.c) and the Rust loader.
 *
 * Rust gets these definitions through bindgen (build.rs -> OUT_DIR/shared_bindings.rs ->
 * src/shared.rs), so every struct here is a plain, fixed-size, explicitly padded C struct
 * with the same layout on the BPF target and on x86_64: only __u32/__u64/char fields, no
 * pointers, no bitfields, no implicit padding. Changing a layout means bumping
 * FSGUARD_ABI_VERSION.
 *
 * This header includes nothing: the includer must have __u32 and __u64 defined first
 * (BPF side: vmlinux_min.h; bindgen: a prelude in build.rs), as in libbpf-bootstrap.
 */
#ifndef __FSGUARD_H__
#define __FSGUARD_H__

/* "FSGD": first field of struct fsguard_config. */
#define FSGUARD_MAGIC 0x46534744u
/* Version of every struct in this header and of what the pinned maps hold: a loader that
 * finds another version's config over a reused `inodes` map does not trust what that guard
 * may not have kept (entry_filesystems' completeness, fs_marks). 4: fs_marks. 5: entries
 * made by requests are marked FSGUARD_INODE_CLAIMED. 6: stats count events_sent. 7: requests
 * carry their sender's tag, and `results` counts what each tag's requests came to. 8: `state`
 * holds the reader helpers' calls. 9: capsules are completed (FSGUARD_REQ_COMPLETE), and
 * `claims` and `exec_trust` back the exec rule. */
#define FSGUARD_ABI_VERSION 9u

/*
 * struct fsguard_config.level, the guard's securelevel. A config without the magic and
 * version (never written, or written by another build) counts as FSGUARD_LEVEL_SEALED:
 * the guard fails closed.
 */
#define FSGUARD_LEVEL_MAINTENANCE 0u /* root outside may still modify sealed trees */
#define FSGUARD_LEVEL_SEALED 1u      /* nobody outside may */
#define FSGUARD_LEVEL_LOCKED 2u      /* and the guard itself cannot be removed (later) */
/* The smoke program's names for the same values. */
#define FSGUARD_LEVEL_OFF FSGUARD_LEVEL_MAINTENANCE
#define FSGUARD_LEVEL_ENFORCE FSGUARD_LEVEL_SEALED

/* Bits of struct fsguard_inode_value.flags. */
#define FSGUARD_INODE_FROZEN (1u << 0) /* nobody may modify it, inside processes included */
/* A directory anyone may add entries to, but whose protected entries nobody may remove or
 * replace (the registry's manifest directories at level 2). What is created in it is not
 * protected until userspace protects it. */
#define FSGUARD_INODE_APPEND_ONLY (1u << 1)
/* Made by a request (anyone may leave one), not by the guard's own programs. Such an entry
 * on a non-directory never outranks the directory it is named in when that directory is
 * another capsule's: a request can't take a file from the capsule that protects it through
 * its directory (named_in in fsguard.bpf.c). Requests can't set it. */
#define FSGUARD_INODE_CLAIMED (1u << 2)
/* A loop device's backing file beneath a sealed tree or a swap area: locked like a block
 * device (every modification refused from level 2 on), but the loop's own kernel thread
 * writes it (its buffered I/O passes the file_permission hook). Alone, never with another. */
#define FSGUARD_INODE_BACKING (1u << 3)
/* The smoke program's deny bit. */
#define FSGUARD_DENY_WRITE (1u << 0)

/* Bits of struct fsguard_capsule.flags. */
#define FSGUARD_CAPSULE_ACTIVE (1u << 0)     /* the slot holds a sealed capsule */
#define FSGUARD_CAPSULE_HAS_CGROUP (1u << 1) /* processes in cgroup_id's subtree are inside */
#define FSGUARD_CAPSULE_GUARD (1u << 2)      /* the guard's own pins: protected from level 1 */
/* Its sealer said its tree is in (FSGUARD_REQ_COMPLETE): no inode and no exec trust is added
 * to it from then on, and the exec rule holds inside. Never cleared. */
#define FSGUARD_CAPSULE_COMPLETE (1u << 3)
/* At completion it held more than its sealer added (a request slipped in while it was being
 * sealed): nothing runs inside (every exec and executable mapping refused). Never cleared. */
#define FSGUARD_CAPSULE_TAINTED (1u << 4)
/* `--exec sealed`: inside, only entries of the sealed manifest run (not what the capsule
 * wrote since, no memfd), and no memory is made executable but a sealed file's. */
#define FSGUARD_CAPSULE_EXEC_SEALED (1u << 5)

/*
 * Requests (the `requests` map, keyed by sequence number): from level 1 on nobody may open
 * the guard's maps, so userspace adds to them by leaving requests at fsguard_state.next,
 * next + 1, ...; on every bpf(2) call the guard's `bpf` hook applies up to
 * FSGUARD_REQUESTS_PER_CALL of them in order, deletes them and advances `next`. Every
 * request can only add, and never to what another capsule has: an inode not yet known (with
 * its flags, marked CLAIMED), ancestor, device or cgroup; a capsule in a free slot; a higher
 * level. A request for what is already there, as it is, is applied (nothing changes).
 * Anything else is rejected and counted (fsguard_state.rejected).
 *
 * From the freeze on `requests` opens write-only, so nobody reads what another sender left:
 * a sender tags its requests with a random number and a random 128-bit key, and reads in
 * `results` (written by the guard only, readable by all) what the requests with that tag came
 * to. The first request with a tag binds SipHash-2-4(key, tag) to it; a later one whose key
 * gives another MAC is counted as `foreign`, not as the sender's. A request replaced or
 * removed before the guard applied it is missing from its sender's count, and nobody who
 * reads the tag in `results` can add to that count without the key.
 */
#define FSGUARD_REQ_INODE 1u    /* a=dev, b=ino; request.flags; key.slot */
#define FSGUARD_REQ_CAPSULE 2u  /* key.slot; request.capsule */
#define FSGUARD_REQ_CGROUP 3u   /* a=cgroup id; key.slot */
#define FSGUARD_REQ_LEVEL 4u    /* request.level */
#define FSGUARD_REQ_ANCESTOR 5u /* a=dev, b=ino of a directory above a sealed root; key.slot */
#define FSGUARD_REQ_DEVICE 6u   /* a=kernel dev_t of a block device holding a sealed tree */
#define FSGUARD_REQ_PIN_PATH 7u /* a=dev, b=ino of a directory above the pins (guard slot) */
#define FSGUARD_REQ_CGROUP_ANCESTOR 8u /* a=id of a cgroup above the capsule's cgroup */
/* Level 2's rules on tracing (BPF programs, perf events, tracefs probes) from now on,
 * whatever the level: a raise to 2 asks for it before it looks at what is there, so nothing
 * is made after the look. */
#define FSGUARD_REQ_LOCK_TRACING 9u
/* a=slot of a capsule whose sealed entries capsule key.slot may run (a base it names). */
#define FSGUARD_REQ_EXEC_TRUST 10u
/* key.slot's tree is in: a=how many inodes and exec trusts its sealer's requests added (a
 * count that differs taints it; see FSGUARD_CAPSULE_TAINTED). */
#define FSGUARD_REQ_COMPLETE 11u
#define FSGUARD_MAX_REQUESTS (1u << 16)
#define FSGUARD_REQUESTS_PER_CALL 128u
#define FSGUARD_MAX_RESULTS 4096u

/* Capacities. The inode map allocates on demand (BPF_F_NO_PREALLOC). */
#define FSGUARD_MAX_INODES (1u << 22)
#define FSGUARD_MAX_CAPSULES 256u
#define FSGUARD_MAX_ANCESTORS 4096u
#define FSGUARD_MAX_DEVICES 256u
/* The `entry_filesystems` map (filesystems with protected inodes), and its key that says the
 * map is complete: the loader writes it when it creates the `inodes` map too, and the guard
 * deletes it when the map is full. Without it no filesystem counts as free of entries. */
#define FSGUARD_MAX_ENTRY_FILESYSTEMS 4096u
#define FSGUARD_ENTRY_FILESYSTEMS_COMPLETE 0xffffffffffffffffull
/* The `fs_marks` map's slots (which slot a filesystem has: fs_marks in fsguard.bpf.c). */
#define FSGUARD_FS_MARK_SLOTS 4096u
/* Marks bound only inode numbers below this: raising by addition (no compare-and-swap) can
 * then overshoot by at most this much per raise under way at once, far from wrapping. */
#define FSGUARD_FS_MARK_LIMIT (1ull << 32)
#define FSGUARD_FS_MARK_VALID 0x6673676d61726b31ull /* "fsgmark1" */
/* A capsule's cgroup must be at most this deep below the cgroup2 root (root = 0), so that the
 * kernel finds it among a process's ancestors with a bounded loop. */
#define FSGUARD_MAX_CGROUP_DEPTH 32u
#define FSGUARD_NAME_LEN 64
#define FSGUARD_EVENTS_BYTES (1u << 22)
/*
 * Kernel-side rate limit of refusal events: at most this many per CPU per second reach the
 * ring buffer; the rest are counted in fsguard_stats.events_ratelimited (never lost silently).
 */
#define FSGUARD_EVENTS_PER_SEC 4096u
/* struct fsguard_event.path: room for FSGUARD_PATH_PARTS components of at most 255 bytes. */
#define FSGUARD_PATH_BYTES 512
#define FSGUARD_PATH_PARTS 24
/* Bit of struct fsguard_event.path_parts: more components (towards the root) were cut. */
#define FSGUARD_PATH_TRUNCATED (1u << 31)

/* What was attempted (struct fsguard_event.op). */
#define FSGUARD_OP_OPEN_WRITE 1u
#define FSGUARD_OP_WRITE 2u
#define FSGUARD_OP_TRUNCATE 3u
#define FSGUARD_OP_CREATE 4u
#define FSGUARD_OP_LINK 5u
#define FSGUARD_OP_UNLINK 6u
#define FSGUARD_OP_RMDIR 7u
#define FSGUARD_OP_RENAME 8u
#define FSGUARD_OP_SETATTR 9u
#define FSGUARD_OP_SETXATTR 10u
#define FSGUARD_OP_REMOVEXATTR 11u
#define FSGUARD_OP_MMAP_SHARED_WRITE 12u
#define FSGUARD_OP_MPROTECT_SHARED_WRITE 13u
#define FSGUARD_OP_IOCTL_SETFLAGS 14u
/* Process capsules: operations on a capsule's processes and cgroups. */
#define FSGUARD_OP_PTRACE_ATTACH 20u  /* ptrace attach/seize, /proc/PID/mem, process_vm_* */
#define FSGUARD_OP_PTRACE_READ 21u    /* /proc/PID details, /proc/PID/ns/\* (ptrace read mode) */
#define FSGUARD_OP_PTRACE_TRACEME 22u /* a capsule process asking an outside parent to trace it */
#define FSGUARD_OP_SIGNAL 23u
#define FSGUARD_OP_SCHED 24u          /* sched_setscheduler, sched_setaffinity, sched_setattr */
#define FSGUARD_OP_NICE 25u           /* setpriority */
#define FSGUARD_OP_IOPRIO 26u
#define FSGUARD_OP_PRLIMIT 27u
#define FSGUARD_OP_MOVEMEMORY 28u     /* migrate_pages, move_pages */
#define FSGUARD_OP_CGROUP 29u         /* joining, creating, removing, configuring its cgroups */
#define FSGUARD_OP_SETNS 30u          /* setns(2) through a pidfd of a capsule process */
#define FSGUARD_OP_PROC_FILE 31u      /* a /proc/PID file of a capsule process, by descriptor */
#define FSGUARD_OP_WATCH 32u          /* a fanotify mark, or a permission event, on its files */
#define FSGUARD_OP_TERMINAL 33u       /* opening, reading or writing its terminal */
/* Lock down: the guard itself, mounts, raw devices. */
#define FSGUARD_OP_BPF_MAP 40u
#define FSGUARD_OP_BPF_LINK 41u
#define FSGUARD_OP_BPF_PROG 42u
#define FSGUARD_OP_MOUNT 43u
#define FSGUARD_OP_UMOUNT 44u
#define FSGUARD_OP_MOVE_MOUNT 45u
#define FSGUARD_OP_PIVOT_ROOT 46u
#define FSGUARD_OP_BLOCKDEV_WRITE 47u
#define FSGUARD_OP_BPF_TRACING 48u    /* loading a program that runs in other processes' context */
#define FSGUARD_OP_PERF_EVENT 49u
#define FSGUARD_OP_KEXEC 50u         /* loading a kernel to boot into (kexec) */
#define FSGUARD_OP_EXEC 51u          /* inside: executing a file (a script's interpreter too) */
#define FSGUARD_OP_MMAP_EXEC 52u     /* inside: mapping a file (or memory) executable */
#define FSGUARD_OP_MPROTECT_EXEC 53u /* inside: making a mapping executable */

/* Why it was refused (struct fsguard_event.rule). */
#define FSGUARD_RULE_OUTSIDE 1u        /* a process outside the capsule, level >= 1 or not root */
#define FSGUARD_RULE_FROZEN 2u         /* a frozen part, refused to everybody */
#define FSGUARD_RULE_UNKNOWN_CAPSULE 3u /* the inode names a capsule slot that is not active */
#define FSGUARD_RULE_ATTACH 4u  /* attaching to or debugging a capsule: refused at every level */
#define FSGUARD_RULE_SEE 5u     /* seeing or signalling a capsule: root outside at level 0 only */
#define FSGUARD_RULE_GUARD 6u   /* the guard protects itself from level 1 on */
#define FSGUARD_RULE_LOCKED 7u  /* level 2: mounts and raw writes that would go around it */
/* clone3(CLONE_INTO_CGROUP) by a process whose descriptors can't be checked race-free (a
 * shared descriptor table, or more than FSGUARD_MAX_SCAN_FDS of them) while a capsule has a
 * cgroup it is not a member of */
#define FSGUARD_RULE_UNCHECKABLE 8u
/* an entry created in (or moved, linked into) a capsule's tree could not be added to the
 * guard's inode map (full: FSGUARD_MAX_INODES): refused, with ENOSPC, rather than made
 * unprotected */
#define FSGUARD_RULE_FULL 9u
/* a modification of a tmpfs file without an entry of its own that the kernel reached from
 * a file handle without its directory, on a filesystem holding a capsule's entries: such a
 * file is protected by the directory it is named in (files made inside after the seal),
 * which that dentry doesn't say, so it is refused (root at level 0 excepted). tmpfs does not
 * make such dentries; this is the guard's answer should one appear */
#define FSGUARD_RULE_DISCONNECTED 10u
/* inside a completed capsule: code that someone outside could have changed (a file that is
 * not the capsule's own, nor a sealed entry of a base it names), or, under `--exec sealed`,
 * that the capsule wrote since its seal, or anonymous memory made executable */
#define FSGUARD_RULE_EXEC_UNSEALED 11u

/* The most (capsule, base) pairs of FSGUARD_REQ_EXEC_TRUST, all capsules together. */
#define FSGUARD_MAX_EXEC_TRUSTS 4096u

/* The most descriptor slots the clone3(CLONE_INTO_CGROUP) check scans (the default nr_open). */
#define FSGUARD_MAX_SCAN_FDS (1u << 20)

/*
 * Runtime configuration, stored at index 0 of the one-entry array map `config`.
 */
struct fsguard_config {
	__u32 magic;   /* FSGUARD_MAGIC */
	__u32 version; /* FSGUARD_ABI_VERSION */
	__u32 level;   /* FSGUARD_LEVEL_* */
	__u32 init_mnt_ns; /* the initial mount namespace's inode number (level-2 mount rules) */
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

/* Value of the `inodes` hash map: which capsule an inode belongs to. */
struct fsguard_inode_value {
	__u32 capsule; /* index into the `capsules` array map, 1..FSGUARD_MAX_CAPSULES-1 */
	__u32 flags;   /* FSGUARD_INODE_* */
};

/* One slot of the `capsules` array map. Slot 0 is never used. */
struct fsguard_capsule {
	__u64 cgroup_id;    /* cgroup v2 id (the directory's inode number) of the inside */
	__u32 cgroup_level; /* its depth below the cgroup2 root (root = 0) */
	__u32 flags;        /* FSGUARD_CAPSULE_* */
	char name[FSGUARD_NAME_LEN]; /* NUL-terminated capsule name, for messages */
};

/*
 * One refused attempt, sent through the `events` ring buffer.
 *
 * path holds the names from the inode concerned up towards its filesystem's root, leaf
 * first, each NUL-terminated: "passwd\0etc\0app\0" is /app/etc/passwd relative to the root
 * of the filesystem `dev` (userspace adds the mount point). path_parts counts them; it is 0
 * when the hook had no name at hand (dev and ino still say which inode).
 */
struct fsguard_event {
	__u64 time_ns;   /* bpf_ktime_get_boot_ns(): CLOCK_BOOTTIME */
	__u64 dev;       /* kernel dev_t of the inode concerned (0 for process operations) */
	__u64 ino;
	__u64 cgroup_id; /* the refused process's cgroup */
	__u32 pid;       /* thread group id */
	__u32 uid;       /* fsuid */
	__u32 capsule;
	__u32 op;        /* FSGUARD_OP_* */
	__u32 rule;      /* FSGUARD_RULE_* */
	__u32 level;
	__u32 target_pid; /* process operations: the capsule's process (thread group id) */
	__u32 path_parts; /* components in path, | FSGUARD_PATH_TRUNCATED */
	char comm[16];
	char path[FSGUARD_PATH_BYTES];
};

/* Per-CPU state of the event rate limit (per-CPU array map `ratelimit`, index 0). */
struct fsguard_ratelimit {
	__u64 window_start_ns;
	__u64 sent;
};

/* A slot of `fs_marks`: `mark` is at least the inode number of every entry in `inodes` of the
 * filesystems that share the slot, once the loader has made `valid` FSGUARD_FS_MARK_VALID
 * (a new map's zeros are not). Only the guard raises `mark`; only the loader writes `valid`. */
struct fsguard_fs_mark {
	__u64 mark;
	__u64 valid;
};
_Static_assert(sizeof(struct fsguard_fs_mark) == 16, "fsguard_fs_mark layout changed");

struct fsguard_request {
	__u32 kind;  /* FSGUARD_REQ_* */
	__u32 slot;  /* capsule slot */
	__u64 a;
	__u64 b;
	__u32 flags; /* FSGUARD_REQ_INODE: FSGUARD_INODE_* to set */
	__u32 level; /* FSGUARD_REQ_LEVEL */
	struct fsguard_capsule capsule; /* FSGUARD_REQ_CAPSULE */
	__u64 tag;   /* the sender's: what its requests came to is counted under it (0: not) */
	__u64 key[2]; /* the sender's secret for `tag` (see above) */
};

/* What the requests tagged with one number came to (the `results` map, keyed by tag). */
struct fsguard_result {
	__u64 applied;
	__u64 rejected;
	__u64 foreign; /* requests with this tag whose key is not the first one's */
	__u64 mac;     /* SipHash-2-4 of the tag under the first request's key */
};

/* Room for the reader helpers' calls in struct fsguard_state (a name the kernel has twice
 * takes two). */
#define FSGUARD_READER_CALLS 24

/*
 * What userspace may read of the guard once its maps are closed (level 1 on): the `state`
 * array map (index 0), a copy the programs keep of the level, plus request counters.
 *
 * reader_calls, written by the loader: the helpers a program may call only when its loader
 * may read other processes' memory (CAP_PERFMON: bpf_probe_read_user and its kin,
 * bpf_get_current_task, bpf_snprintf, bpf_trace_printk; fsguard-kmod/src/readers.rs), as
 * the verifier leaves their calls in a loaded program: the helper's address minus
 * __bpf_call_base's, the 32-bit immediate of the call (how bpftool names them). Here, not in
 * `config`, so that sealtool can compare them with the kernel's before a raise to 2, when
 * `config` is closed to it. A count of 0 (not known): at level 2 every program counts as one
 * that calls them (fail closed).
 */
struct fsguard_state {
	__u32 magic;   /* FSGUARD_MAGIC once the guard has applied a request */
	__u32 level;
	__u64 next;     /* sequence number of the next request to apply */
	__u64 applied;  /* requests applied */
	__u64 rejected; /* requests rejected (they would have taken something away) */
	__u32 reader_calls_count;
	__u32 reader_calls[FSGUARD_READER_CALLS];
	__u32 tracing_locked; /* 1: level 2's rules on tracing hold (FSGUARD_REQ_LOCK_TRACING) */
};

/* Counters, one copy per CPU in the per-CPU array map `stats` (index 0). */
struct fsguard_stats {
	__u64 denied;             /* refusals (every rule, every operation) */
	__u64 events_dropped;     /* refusals whose event did not fit in the ring buffer */
	__u64 events_ratelimited; /* refusals beyond FSGUARD_EVENTS_PER_SEC, not sent */
	__u64 inherited;      /* inodes created inside a capsule and added to it */
	__u64 released;       /* inodes removed from a capsule by their last unlink */
	__u64 events_sent;    /* events put in the ring buffer (a reader other than the
			       * collector that takes some shows as fewer received) */
};

_Static_assert(sizeof(struct fsguard_config) == 16, "fsguard_config layout changed");
_Static_assert(sizeof(struct fsguard_inode_key) == 16, "fsguard_inode_key layout changed");
_Static_assert(sizeof(struct fsguard_inode_value) == 8, "fsguard_inode_value layout changed");
_Static_assert(sizeof(struct fsguard_capsule) == 80, "fsguard_capsule layout changed");
_Static_assert(sizeof(struct fsguard_event) == 592, "fsguard_event layout changed");
_Static_assert(sizeof(struct fsguard_stats) == 48, "fsguard_stats layout changed");

_Static_assert(sizeof(struct fsguard_ratelimit) == 16, "fsguard_ratelimit layout changed");
_Static_assert(sizeof(struct fsguard_request) == 136, "fsguard_request layout changed");
_Static_assert(sizeof(struct fsguard_result) == 32, "fsguard_result layout changed");
_Static_assert(sizeof(struct fsguard_state) == 136, "fsguard_state layout changed");

#endif /* __FSGUARD_H__ */
