/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * vmlinux_min.h - the small hand-written subset of kernel types the fsguard BPF programs use,
 * in place of a full vmlinux.h dumped from some kernel's BTF, so the build does not depend on
 * the build host's kernel.
 *
 * Kernel structs are declared with only the fields we read and carry
 * preserve_access_index: clang emits CO-RE relocations for every field access, and the loader
 * (aya) rewrites the offsets against the running kernel's BTF (/sys/kernel/btf/vmlinux) at load
 * time. Field and struct names must therefore match the kernel's exactly; field order, types'
 * sizes aside, and the absence of the other fields do not matter.
 *
 * Macros and enum values are not in BTF, so the few we need are copied here from the kernel's
 * headers; they are stable kernel ABI / UAPI values.
 */
#ifndef __VMLINUX_MIN_H__
#define __VMLINUX_MIN_H__

typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;

typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef _Bool bool;
enum { false = 0, true = 1 };

typedef __u32 dev_t;        /* kernel-internal: (major << 20) | minor */
typedef unsigned int fmode_t;
typedef unsigned short umode_t;
typedef unsigned long size_t;
typedef __u32 uid_t;

/* include/uapi/linux/bpf.h */
enum bpf_map_type {
	BPF_MAP_TYPE_UNSPEC = 0,
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_ARRAY_OF_MAPS = 12,
	BPF_MAP_TYPE_HASH_OF_MAPS = 13,
	BPF_MAP_TYPE_RINGBUF = 27,
	BPF_MAP_TYPE_INODE_STORAGE = 28,
	BPF_MAP_TYPE_TASK_STORAGE = 29,
};

/* include/uapi/linux/bpf.h: map flags and update flags. */
#define BPF_F_NO_PREALLOC (1U << 0)
#define BPF_ANY 0
#define BPF_NOEXIST 1
#define BPF_EXIST 2
#define BPF_LOCAL_STORAGE_GET_F_CREATE 1

/* include/linux/fs.h: struct file::f_mode bits (set before security_file_open runs). */
#define FMODE_READ ((fmode_t)0x1)
#define FMODE_WRITE ((fmode_t)0x2)
#define FMODE_CREATED ((fmode_t)0x100000)

/* include/linux/sched.h: task_struct.flags of a kernel thread. */
#define PF_KTHREAD 0x00200000

/* include/linux/fs.h: the mask of security_file_permission(). */
#define MAY_WRITE 0x00000002
#define MAY_READ 0x00000004
#define MAY_APPEND 0x00000008

/* include/uapi/asm-generic/fcntl.h (x86): struct file::f_flags bits. */
#define O_TRUNC 00001000
#define __O_TMPFILE 020000000

/* include/linux/dcache.h: a dentry the kernel made from a file handle (exportfs), without
 * knowing its directory. */
#define DCACHE_DISCONNECTED 0x00000020
/* include/uapi/linux/stat.h */
#define S_IFMT 00170000
#define S_IFREG 0100000
#define S_IFBLK 0060000
#define S_IFCHR 0020000
#define S_IFIFO 0010000
/* include/uapi/linux/magic.h: anonymous pipes' filesystem */
#define PIPEFS_MAGIC 0x50495045

/* include/uapi/asm-generic/mman-common.h, mman.h; include/linux/mm.h */
#define PROT_WRITE 0x2
#define PROT_EXEC 0x4
#define MAP_SHARED 0x01
#define VM_EXEC 0x00000004
#define VM_SHARED 0x00000008

/* include/uapi/linux/fs.h: ioctls that change inode flags (chattr) on a read-only fd. */
#define FS_IOC_SETFLAGS 0x40086602
#define FS_IOC32_SETFLAGS 0x40046602
#define FS_IOC_FSSETXATTR 0x401c5820
#define FS_IOC_ENABLE_VERITY 0x40806685
#define FS_IOC_SETVERSION 0x40087602
#define FS_IOC32_SETVERSION 0x40047602

/* include/uapi/linux/mount.h */
#define MS_REMOUNT 32
#define MS_BIND 4096
#define MS_MOVE 8192
#define MS_REC 16384
#define MS_UNBINDABLE (1 << 17)
#define MS_PRIVATE (1 << 18)
#define MS_SLAVE (1 << 19)
#define MS_SHARED (1 << 20)
#define MNT_DETACH 2
/* include/linux/mount.h: vfsmount.mnt_flags of a mount whose peers receive its mounts. */
#define MNT_SHARED 0x1000

/* arch/x86/include/asm/thread_info.h: a 32-bit system call in progress; its number. */
#define TS_COMPAT 0x0002
#define NR_ia32_setns 346
#define NR_ia32_swapon 87
#define NR_ia32_fanotify_mark 339

/* include/uapi/scsi/sg.h: SCSI commands, writes included, on a read-only descriptor. */
#define SG_IO 0x2285
#define BLKPG 0x1269
#define BLKRRPART 0x125f

/* include/uapi/linux/bpf.h: bpf(2) commands and program types that run in the context of
 * arbitrary processes (which could then read, write or signal a capsule's). */
#define BPF_PROG_LOAD 5
#define BPF_LINK_CREATE 28
#define BPF_RAW_TRACEPOINT_OPEN 17
#define BPF_PROG_ATTACH 8
#define BPF_LINK_UPDATE 29
#define BPF_LSM_MAC 27
#define BPF_LSM_CGROUP 43
#define BPF_MODIFY_RETURN 26 /* enum bpf_attach_type */
#define BPF_TRACE_ITER 28
/* include/linux/bpf_verifier.h: the most maps one program may use. */
#define MAX_USED_MAPS 64
#define BPF_PROG_TYPE_KPROBE 2
#define BPF_PROG_TYPE_TRACEPOINT 5
#define BPF_PROG_TYPE_PERF_EVENT 7
#define BPF_PROG_TYPE_RAW_TRACEPOINT 17
#define BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE 24
#define BPF_PROG_TYPE_TRACING 26
#define BPF_PROG_TYPE_EXT 28
#define BPF_PROG_TYPE_LSM 29

/* include/uapi/linux/magic.h */
#define CGROUP2_SUPER_MAGIC 0x63677270
/* kernel/cgroup: the id of cgroup2's root cgroup */
#define CGROUP2_ROOT_ID 1
#define CLONE_INTO_CGROUP 0x200000000ULL /* clone3(2): kernel_clone_args.flags, 64 bits */
#define PROC_SUPER_MAGIC 0x9fa0
#define BPF_FS_MAGIC 0xcafe4a11
#define SYSFS_MAGIC 0x62656572
#define TMPFS_MAGIC 0x01021994
#define TRACEFS_MAGIC 0x74726163
/* anonymous inodes' filesystem (seccomp listeners, eventfds, ...) */
#define ANON_INODE_FS_MAGIC 0x09041934
#define CONFIGFS_MAGIC 0x62656570
#define DEBUGFS_MAGIC 0x64626720
#define XFS_SUPER_MAGIC 0x58465342
#define OVERLAYFS_SUPER_MAGIC 0x794c7630
#define SECURITYFS_MAGIC 0x73636673
#define SELINUX_MAGIC 0xf97cff8c
#define DEVPTS_SUPER_MAGIC 0x1cd1
/* include/uapi/linux/major.h: /dev/pts/N (kernel dev_t: major in the bits above 20) */
#define UNIX98_PTY_SLAVE_MAJOR 136
#define UNIX98_PTY_MAJOR_COUNT 8
/* include/uapi/linux/netlink.h, audit.h */
#define NETLINK_AUDIT 9
#define AUDIT_ADD_RULE 1011
#define AUDIT_MAKE_EQUIV 1015

/* include/linux/ptrace.h: the mode of security_ptrace_access_check(). */
#define PTRACE_MODE_READ 0x01
#define PTRACE_MODE_ATTACH 0x02
#define PTRACE_MODE_NOAUDIT 0x04

/* include/uapi/linux/capability.h; arch/x86/entry/syscalls/syscall_64.tbl */
#define NR_setns 308
#define NR_swapon 167
#define NR_fanotify_mark 301

/* include/uapi/asm-generic/errno-base.h */
#define EPERM 1
#define EINVAL 22

/* include/linux/fs.h, fs_context.h */
#define FS_REQUIRES_DEV 1

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct file_system_type {
	int fs_flags;
};

struct fs_context {
	struct file_system_type *fs_type;
};

struct fs_parameter {
	const char *key;
};

struct super_block {
	dev_t s_dev;
	unsigned long s_magic;
	struct dentry *s_root;
};

struct hlist_node {
	struct hlist_node *next;
};

struct hlist_head {
	struct hlist_node *first;
};

struct list_head {
	struct list_head *next, *prev;
};

struct inode_operations {
	void *atomic_open; /* a function; only whether there is one is read */
};

struct inode {
	void *i_private;
	dev_t i_rdev;
	umode_t i_mode;
	unsigned long i_ino;
	struct super_block *i_sb;
	const struct inode_operations *i_op;
	union {
		const unsigned int i_nlink;
		unsigned int __i_nlink;
	};
	struct hlist_head i_dentry;
};

struct qstr {
	const unsigned char *name;
};

struct dentry {
	unsigned int d_flags;
	struct dentry *d_parent;
	struct qstr d_name;
	struct inode *d_inode;
	void *d_fsdata; /* devpts: a pty slave's tty_struct */
	union {
		struct hlist_node d_alias; /* in the inode's i_dentry */
	} d_u;
};

struct vfsmount {
	struct dentry *mnt_root;
	int mnt_flags;
};

/* fs/mount.h: the mount around a vfsmount (`mnt`), and the one it is mounted on. */
struct mount {
	struct mount *mnt_parent;
	struct vfsmount mnt;
};

struct ns_common {
	unsigned int inum;
};

struct mnt_namespace {
	struct ns_common ns;
};

struct nsproxy {
	struct mnt_namespace *mnt_ns;
};

struct thread_info {
	__u32 status;
};

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
};

struct file {
	struct path f_path;
	struct inode *f_inode;
	unsigned int f_flags;
	fmode_t f_mode;
	void *private_data;
};

/* include/linux/bpf.h: what the guard reads of maps and programs to protect itself. */
struct bpf_map {
	struct bpf_map *inner_map_meta; /* a map of maps': what its inner maps must be like */
	enum bpf_map_type map_type;
	u32 key_size;
	u32 value_size;
	u32 map_flags;
	bool frozen; /* no more writes through bpf(2) (BPF_MAP_FREEZE) */
};

struct bpf_prog;

struct bpf_prog_aux {
	u32 used_map_cnt;
	struct bpf_map **used_maps;
	struct bpf_prog *dst_prog; /* the program an extension or fentry/fexit attaches to */
	const char *attach_func_name; /* an iterator's: bpf_iter_<target> */
};

/* Their values are the BPF_PROG_TYPE_* and BPF_* attach macros above; CO-RE needs the
 * fields' enum types by name. */
enum bpf_prog_type { FSGUARD_ANY_PROG_TYPE = 0 };
enum bpf_attach_type { FSGUARD_ANY_ATTACH_TYPE = 0 };

/* One instruction; read whole (8 bytes: code, registers, offset, immediate). */
struct bpf_insn {
	__u64 raw;
};

struct bpf_prog {
	enum bpf_prog_type type;
	enum bpf_attach_type expected_attach_type;
	u32 len; /* instructions in insnsi */
	struct bpf_prog_aux *aux;
	struct bpf_insn insnsi[]; /* as verified (helper calls' immediates fixed up) */
};

struct anon_vma;

struct vm_area_struct {
	unsigned long vm_flags;
	struct file *vm_file;
	struct anon_vma *anon_vma; /* set once a private mapping has pages of its own (COW) */
};

/* An exec in progress: the file whose code is about to run (the script, then its
 * interpreter). */
struct linux_binprm {
	struct file *file;
};

typedef struct {
	uid_t val;
} kuid_t;

struct cred {
	kuid_t uid;
	kuid_t euid;
	kuid_t fsuid;
};

struct pt_regs {
	unsigned long orig_ax;
};

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
};

typedef struct {
	int counter;
} atomic_t;

struct files_struct {
	atomic_t count;
	struct fdtable *fdt;
};

struct pid {
	struct hlist_head tasks[4];
};

struct proc_inode {
	struct pid *pid;
	struct inode vfs_inode;
};

/* include/linux/tty.h: a terminal's foreground group and session (in `ctrl` since 5.12),
 * and its pty twin. */
struct tty_struct {
	struct {
		struct pid *pgrp;
		struct pid *session;
	} ctrl;
	struct tty_struct *link;
};

/* kernel/seccomp.c: a filter's user notifications, each naming the process that waits. */
struct seccomp_knotif {
	struct task_struct *task;
	struct list_head list;
};

struct notification {
	struct list_head notifications;
};

struct seccomp_filter {
	struct notification *notif;
};

/* task_setrlimit's argument, never read. */
struct rlimit;

/* A tty's file->private_data. */
struct tty_file_private {
	struct tty_struct *tty;
};

struct kernfs_node {
	struct kernfs_node *parent;
	void *priv;
	__u64 id;
};

struct cgroup {
	int level;
	struct kernfs_node *kn;
	struct cgroup *ancestors[];
};

struct css_set {
	struct cgroup *dfl_cgrp;
};

struct mm_struct {
	atomic_t mm_users;
};

/* The session and process group a task is in now (pids[PIDTYPE_PGID], pids[PIDTYPE_SID]). */
struct signal_struct {
	struct pid *pids[4];
};

struct task_struct {
	struct thread_info thread_info;
	unsigned int flags; /* PF_* */
	struct signal_struct *signal;
	struct mm_struct *mm;
	struct nsproxy *nsproxy;
	int tgid;
	struct task_struct *real_parent;
	const struct cred *real_cred;
	const struct cred *cred;
	struct css_set *cgroups;
	struct files_struct *files;
	struct hlist_node pid_links[4];
};

/* netlink_send's socket and message. */
struct sock {
	__u16 sk_protocol;
};

struct sk_buff {
	unsigned int len;
	unsigned char *data;
};

struct iattr;
struct perf_event_attr;
struct io_uring_cmd;

/* UAPI: for BPF_PROG_LOAD its first __u32 is prog_type (read at offset 0). */
union bpf_attr;
struct kernel_siginfo;
struct user_namespace;

#pragma clang attribute pop

#endif /* __VMLINUX_MIN_H__ */
