// SPDX-License-Identifier: BSD-2-Clause
/*
 * fsguard.bpf.c - the capsule guard: BPF LSM programs that refuse (-EPERM) every
 * modification of a sealed capsule's tree by a process outside the capsule.
 *
 * Identity is the inode: the `inodes` map holds the (dev, ino) of every entry of every sealed
 * tree, so the same file reached through a bind mount, /proc/PID/root, /proc/self/fd, a deep
 * path or a hard link is the same key. There is no path walk and hence no depth limit.
 *
 * Decision for an operation on a protected inode (or in a protected directory):
 *   frozen: refused to everybody, inside processes and root at level 0 included;
 *   inside the capsule (its cgroup subtree): allowed;
 *   outside: allowed only for root (fsuid 0) at level 0; refused otherwise.
 * Anything unknown (no valid config, an inactive capsule slot) is refused: fail closed.
 *
 * Inodes created inside a sealed directory join its capsule (inode_init_security), and an
 * inode moved into one by a rename joins it too, so outside processes can't modify what
 * inside processes add; a directory from outside can't be moved in (EXDEV, so mv(1) copies
 * it: its copies are created inside), since what is below it would stay unprotected. The
 * last unlink of an inode removes it, and a newly created inode drops whatever the map held
 * for its number (left by rmdir, a replacing rename or an unlinked O_TMPFILE: ext4 reuses
 * inode numbers at once), so that a recycled inode number never protects an unrelated file.
 *
 * Every refusal is counted and sent to the `events` ring buffer (capsule, operation, rule).
 *
 * Kernel structs are read by direct dereference of the hooks' BTF-typed arguments (the
 * verifier turns them into fault-safe loads, CO-RE fixes the offsets), not through
 * bpf_probe_read_kernel: each hook runs on hot paths (every write goes through
 * file_permission), and a helper call per field costs more than the lookup itself.
 */
#include "vmlinux_min.h"
#include "fsguard.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#ifndef S_IFDIR
#define S_IFDIR 0040000
#endif
#ifndef ENOMEM
#define ENOMEM 12
#endif
#ifndef EEXIST
#define EEXIST 17
#endif
#ifndef EXDEV
#define EXDEV 18
#endif
#ifndef ENOSPC
#define ENOSPC 28
#endif

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fsguard_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FSGUARD_MAX_INODES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct fsguard_inode_key);
	__type(value, struct fsguard_inode_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} inodes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FSGUARD_MAX_CAPSULES);
	__type(key, __u32);
	__type(value, struct fsguard_capsule);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} capsules SEC(".maps");

/* How many inodes and exec trusts requests added to each capsule slot: compared, when its
 * sealer says its tree is in (FSGUARD_REQ_COMPLETE), with what the sealer added itself. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FSGUARD_MAX_CAPSULES);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} claims SEC(".maps");

/* The bases each capsule may run the sealed entries of (FSGUARD_REQ_EXEC_TRUST), keyed by
 * exec_trust_key(capsule, base). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FSGUARD_MAX_EXEC_TRUSTS);
	__type(key, __u64);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} exec_trust SEC(".maps");

static __always_inline __u64 exec_trust_key(__u32 capsule, __u32 base)
{
	return ((__u64)capsule << 32) | base;
}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fsguard_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} stats SEC(".maps");

/* cgroup v2 id of each capsule's cgroup -> its capsule slot. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FSGUARD_MAX_CAPSULES);
	__type(key, __u64);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cgroup_capsules SEC(".maps");

/* cgroup v2 ids of the cgroups above capsules' cgroups -> capsule slot: their cgroup.kill
 * and cgroup.freeze act on the capsule's processes too. Above several capsules:
 * ABOVE_SEVERAL, nobody's (a member of one would reach the others'). */
#define ABOVE_SEVERAL 0xffffffffu
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FSGUARD_MAX_CAPSULES * FSGUARD_MAX_CGROUP_DEPTH);
	__type(key, __u64);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cgroup_ancestors SEC(".maps");

/*
 * The capsule slot a process belongs to, remembered for its lifetime: a process seen in a
 * capsule's cgroup, or forked by a member, stays a member even if root outside moves it to
 * another cgroup (no LSM hook sees cgroup migration, so membership can't hang on the cgroup
 * alone).
 */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} members SEC(".maps");

/* Directories above sealed roots (and above the guard's pins) -> capsule slot. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FSGUARD_MAX_ANCESTORS);
	__type(key, struct fsguard_inode_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ancestors SEC(".maps");

/* Directories on the path to the guard's pins that sit on other filesystems (/, /sys,
 * /sys/fs) -> the guard's slot: their lazy unmount would take the bpffs along. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct fsguard_inode_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pin_path SEC(".maps");

/* Block devices (kernel dev_t) that hold sealed trees -> capsule slot. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FSGUARD_MAX_DEVICES);
	__type(key, __u64);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} devices SEC(".maps");

/* Userspace's way in from level 1 on (see FSGUARD_REQ_* in fsguard.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FSGUARD_MAX_REQUESTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct fsguard_request);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} requests SEC(".maps");

/* What userspace reads: the level and request counters, and a copy of the capsule slots. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fsguard_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} state SEC(".maps");

/* What each sender's tagged requests came to (see fsguard.h); the oldest tag goes first. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FSGUARD_MAX_RESULTS);
	__type(key, __u64);
	__type(value, struct fsguard_result);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} results SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FSGUARD_MAX_CAPSULES);
	__type(key, __u32);
	__type(value, struct fsguard_capsule);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} capsules_view SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fsguard_ratelimit);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ratelimit SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, FSGUARD_EVENTS_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} events SEC(".maps");

static __always_inline struct fsguard_stats *stats_slot(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&stats, &zero);
}

static __always_inline __u32 current_level(void)
{
	__u32 zero = 0;
	struct fsguard_config *cfg = bpf_map_lookup_elem(&config, &zero);

	if (!cfg || cfg->magic != FSGUARD_MAGIC || cfg->version != FSGUARD_ABI_VERSION)
		return FSGUARD_LEVEL_SEALED;
	return cfg->level;
}

/* Defined with the guard's own rules below. */
static __always_inline bool tracing_locked(void);

/* Whether the current process is in the initial mount namespace (the one whose mounts every
 * service sees); 0 in the config (not known) counts as yes: fail closed. */
static __always_inline bool in_init_mnt_ns(void)
{
	__u32 zero = 0;
	struct fsguard_config *cfg = bpf_map_lookup_elem(&config, &zero);
	struct task_struct *task = bpf_get_current_task_btf();
	unsigned int inum;

	if (!cfg || !cfg->init_mnt_ns)
		return true;
	inum = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	return inum == cfg->init_mnt_ns;
}

static __always_inline __u32 current_fsuid(void)
{
	struct task_struct *task = bpf_get_current_task_btf();

	return task->cred->fsuid.val;
}

/* A kernel thread (a loop device's worker, nfsd): it has no user memory and no cgroup of
 * its own choosing. */
static __always_inline bool current_is_kthread(void)
{
	struct task_struct *task = bpf_get_current_task_btf();

	return task->flags & PF_KTHREAD;
}

static __always_inline bool inode_key(struct inode *inode, struct fsguard_inode_key *key)
{
	if (!inode)
		return false;
	key->dev = inode->i_sb->s_dev;
	key->ino = inode->i_ino;
	return true;
}

static __always_inline bool is_dir(struct inode *inode)
{
	return inode && (inode->i_mode & S_IFMT) == S_IFDIR;
}

static __always_inline bool is_inside(struct fsguard_capsule *c)
{
	if (!(c->flags & FSGUARD_CAPSULE_HAS_CGROUP))
		return false;
	return bpf_get_current_ancestor_cgroup_id(c->cgroup_level) == c->cgroup_id;
}

/* Whether this CPU may still send an event in the current one-second window. */
static __always_inline bool event_allowed(__u64 now)
{
	__u32 zero = 0;
	struct fsguard_ratelimit *rl = bpf_map_lookup_elem(&ratelimit, &zero);

	if (!rl)
		return false;
	if (now - rl->window_start_ns >= 1000000000ull) {
		rl->window_start_ns = now;
		rl->sent = 0;
	}
	if (rl->sent >= FSGUARD_EVENTS_PER_SEC)
		return false;
	rl->sent++;
	return true;
}

/*
 * Names from `dentry` up towards its filesystem's root, leaf first, each NUL-terminated
 * (struct fsguard_event.path). Runs only on refusals, so probe reads are fine here. Each
 * component is read at an offset below FSGUARD_PATH_BYTES / 2 and is at most 256 bytes,
 * which keeps every write inside the buffer where the verifier can see it.
 */
static __always_inline void fill_path(struct fsguard_event *ev, struct dentry *dentry)
{
	struct dentry *d = dentry, *parent;
	const unsigned char *name;
	__u32 off = 0, parts = 0;
	long n;
	int i;

	ev->path_parts = 0;
	ev->path[0] = 0;
	for (i = 0; i < FSGUARD_PATH_PARTS; i++) {
		if (!d)
			break;
		parent = BPF_CORE_READ(d, d_parent);
		if (!parent || parent == d)
			break;
		if (off >= FSGUARD_PATH_BYTES / 2) {
			parts |= FSGUARD_PATH_TRUNCATED;
			break;
		}
		name = BPF_CORE_READ(d, d_name.name);
		n = bpf_probe_read_kernel_str(&ev->path[off & (FSGUARD_PATH_BYTES / 2 - 1)],
					      FSGUARD_PATH_BYTES / 2, name);
		if (n <= 0)
			break;
		off += n;
		parts++;
		d = parent;
	}
	if (i == FSGUARD_PATH_PARTS && d && BPF_CORE_READ(d, d_parent) != d)
		parts |= FSGUARD_PATH_TRUNCATED;
	ev->path_parts = parts;
}

/*
 * Counts a refusal and reports it (rate-limited per CPU; what is not sent is counted), then
 * returns -EPERM. `dentry` names the object when the hook has one (else NULL); `target_pid`
 * is the capsule's process for process operations (else 0).
 */
static __always_inline int refuse_event(struct fsguard_inode_key *key, struct dentry *dentry,
					__u32 target_pid, __u32 capsule, __u32 op,
					__u32 rule, __u32 level, __u32 uid)
{
	struct fsguard_stats *st = stats_slot();
	struct fsguard_event *ev;
	__u64 now = bpf_ktime_get_boot_ns();

	if (st)
		__sync_fetch_and_add(&st->denied, 1);
	if (!event_allowed(now)) {
		if (st)
			__sync_fetch_and_add(&st->events_ratelimited, 1);
		return -EPERM;
	}
	ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev) {
		if (st)
			__sync_fetch_and_add(&st->events_dropped, 1);
		return -EPERM;
	}
	ev->time_ns = now;
	ev->dev = key ? key->dev : 0;
	ev->ino = key ? key->ino : 0;
	ev->cgroup_id = bpf_get_current_cgroup_id();
	ev->pid = bpf_get_current_pid_tgid() >> 32;
	ev->uid = uid;
	ev->capsule = capsule;
	ev->op = op;
	ev->rule = rule;
	ev->level = level;
	ev->target_pid = target_pid;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	fill_path(ev, dentry);
	bpf_ringbuf_submit(ev, 0);
	/* After the submit: whoever reads this count finds the event readable. */
	if (st)
		__sync_fetch_and_add(&st->events_sent, 1);
	return -EPERM;
}

static __always_inline int refuse(struct fsguard_inode_key *key, struct dentry *dentry,
				  __u32 capsule, __u32 op, __u32 rule, __u32 level, __u32 uid)
{
	return refuse_event(key, dentry, 0, capsule, op, rule, level, uid);
}

/*
 * The slot of the innermost capsule whose cgroup is `cgrp` or one of its ancestors; 0 when
 * none. Capsule cgroups are at most FSGUARD_MAX_CGROUP_DEPTH - 1 deep (sealtool checks), so
 * scanning that many ancestors from the root down finds every one.
 */
static __always_inline __u32 cgroup_capsule(struct cgroup *cgrp)
{
	__u32 found = 0, *slot;
	struct cgroup *anc;
	__u64 id;
	int level, i;

	if (!cgrp)
		return 0;
	level = BPF_CORE_READ(cgrp, level);
	for (i = 0; i < FSGUARD_MAX_CGROUP_DEPTH; i++) {
		if (i > level)
			break;
		anc = NULL;
		if (bpf_probe_read_kernel(&anc, sizeof(anc), &cgrp->ancestors[i]) || !anc)
			break;
		id = BPF_CORE_READ(anc, kn, id);
		slot = bpf_map_lookup_elem(&cgroup_capsules, &id);
		if (slot)
			found = *slot;
	}
	return found;
}

/* The capsule `task` is a member of (0: none), remembering it when seen for the first time. */
static __always_inline __u32 task_capsule(struct task_struct *task)
{
	__u32 *mark = bpf_task_storage_get(&members, task, 0, 0);
	struct cgroup *cgrp;
	__u32 slot;

	if (mark && *mark)
		return *mark;
	cgrp = BPF_CORE_READ(task, cgroups, dfl_cgrp);
	slot = cgroup_capsule(cgrp);
	if (slot) {
		mark = bpf_task_storage_get(&members, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (mark)
			*mark = slot;
	}
	return slot;
}

/*
 * The capsule the current process is a member of. A global function: the verifier checks it
 * once, on its own, instead of at each call site with that site's state (the rename program
 * decides on up to four entries, and inlining this cgroup walk into each decision took it
 * past the verifier's budget of a million instructions).
 */
__attribute__((noinline)) __u32 fsguard_current_capsule(void)
{
	return task_capsule(bpf_get_current_task_btf());
}

static __always_inline __u32 current_capsule(void)
{
	return fsguard_current_capsule();
}

static __always_inline __u32 current_euid(void)
{
	struct task_struct *task = bpf_get_current_task_btf();

	return task->cred->euid.val;
}

/* An inode's key and what the `inodes` map holds for it: looked up once per hook and
 * passed along, since inside a capsule every one of a rename's four inodes is a hit. */
struct entry {
	struct fsguard_inode_key key;
	struct fsguard_inode_value v; /* when hit */
	bool hit;                     /* some capsule's */
	bool valid;                   /* there is an inode (key is set) */
	bool fs_clean;                /* no inode of its filesystem is any capsule's */
	bool implicit;                /* hit through its directory, no entry of its own (named_in) */
	bool overruled;               /* implicit over an entry a request made (named_in) */
	bool unknown_dir;             /* hit: reached without its directory (look_up_named) */
};

/*
 * Filesystems (superblock dev_t, as in the keys) with entries in `inodes`. Entries of a new
 * filesystem come only from requests (an inode the programs add has a protected directory
 * on the same filesystem), and none is ever removed from here. It is trusted only while it
 * holds FSGUARD_ENTRY_FILESYSTEMS_COMPLETE: the loader adds that key when it creates
 * `inodes` as well (a guard upgraded in place keeps an `inodes` map this one never saw
 * filled), and a request that finds the map full deletes it. Without it, no filesystem
 * counts as free of entries (slower, never wrong).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FSGUARD_MAX_ENTRY_FILESYSTEMS + 1);
	__type(key, __u64);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} entry_filesystems SEC(".maps");

/*
 * The directory cache: what the `inodes` map says about a directory, kept in the directory's
 * inode storage, since every creation, removal and rename in a directory looks it up. The
 * storage answers in about 150 instructions where a hash hit takes about 200; the larger
 * gain is the bit saying that the directory's filesystem has no entry at all
 * (`entry_filesystems`), which spares an unlink, a rename or a creation there the lookup of
 * the other inode (on the same filesystem, so no capsule's). One u64, written and read in
 * one access: valid bit, protected bit, that bit, the entry's flags and capsule, and the
 * epoch (the low DIR_CACHE_EPOCH_BITS of `dir_cache_epoch`) it was read in.
 *
 * Why it stays true: the storage lives and dies with the struct inode, so it never outlives
 * the inode it describes (an inode number reused by the filesystem comes with a new struct).
 * The `inodes` entry of a live directory changes only by
 *   - a request from userspace (apply_request: an entry added, flags added, a filesystem
 *     added to `entry_filesystems`), after which the request loop bumps the epoch,
 *     invalidating every cached answer;
 *   - a raised level, which bumps it too, so nothing written directly into the maps at
 *     level 0 is hidden by an older answer once level 1 begins (an entry written into
 *     `inodes` that way must raise its filesystem's mark as well: see fs_marks);
 *   - a load of the guard, which bumps it as well.
 * Every other entry added by the programs is a non-directory's (rename and link move no
 * directory into a capsule) or a new inode's (inode_init_security: no storage yet); every
 * entry the programs delete is a non-directory's (release_if_last_link) or a freed inode's
 * (inode_init_security's stale entries). A reader takes the epoch before the hash
 * lookup, so an answer older than a bump is never stored as current (x86's loads are not
 * reordered with each other). The epoch never wraps: past DIR_CACHE_EPOCH_MASK bumps
 * (anybody may send requests that change nothing) the cache is no longer used.
 */
struct {
	__uint(type, BPF_MAP_TYPE_INODE_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dir_cache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dir_cache_epoch SEC(".maps");

#define DIR_CACHE_VALID (1ull << 63)
#define DIR_CACHE_PROTECTED (1ull << 62)
#define DIR_CACHE_FS_CLEAN (1ull << 61)
#define DIR_CACHE_FLAGS_SHIFT 48
#define DIR_CACHE_CAPSULE_SHIFT 40
#define DIR_CACHE_EPOCH_BITS 40
#define DIR_CACHE_EPOCH_MASK ((1ull << DIR_CACHE_EPOCH_BITS) - 1)
_Static_assert(FSGUARD_MAX_CAPSULES <= 256, "a capsule slot must fit the cache's 8 bits");

static __always_inline void bump_dir_cache_epoch(void)
{
	__u32 zero = 0;
	__u64 *epoch = bpf_map_lookup_elem(&dir_cache_epoch, &zero);

	if (epoch)
		__sync_fetch_and_add(epoch, 1);
}

/*
 * The inode-number marks: for each filesystem, a number at least as high as the inode number
 * of every entry it has in `inodes`. An inode numbered above its filesystem's mark has no
 * entry, which spares the hash lookup. That is most of a capsule's own work on tmpfs: tmpfs
 * numbers its inodes in creation order, so a file made inside after the seal, protected
 * through its directory (named_in), is numbered above every entry of the tree (and above
 * those added since, until an entry is added for a newer inode: a directory made inside, a
 * file moved or linked to another directory). Elsewhere (ext4 hands freed numbers out again)
 * it is spared less often, never wrongly.
 *
 * Why it stays true: every entry numbered below FSGUARD_FS_MARK_LIMIT is added through
 * raise_mark() first (apply_inode, adopt), and marks never go down (a released entry leaves
 * its mark as it was; the loader only ever writes the highest mark over a reused `inodes`,
 * one load at a time). Filesystems share a slot by their device number (fs_mark_slot): a
 * shared mark bounds them all. A slot is trusted only once the loader has made it valid
 * (FSGUARD_FS_MARK_VALID), which it does when it creates `inodes` as well (any mark bounds
 * an empty map), or over an `inodes` it reuses after setting the mark to the highest number
 * (this map new to it, or entries possibly added by another build's guard, which the
 * config's version tells: see FSGUARD_ABI_VERSION). A direct write into `inodes` at level 0
 * must raise the mark as the guard does, as it must add the filesystem to
 * `entry_filesystems`; from level 1 on nobody may open either map.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FSGUARD_FS_MARK_SLOTS);
	__type(key, __u32);
	__type(value, struct fsguard_fs_mark);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fs_marks SEC(".maps");

/* Anonymous devices (tmpfs, overlayfs, ...: major 0) by minor, the others spread over the
 * same slots by major. */
static __always_inline __u32 fs_mark_slot(__u64 dev)
{
	return ((__u32)dev + (__u32)(dev >> 20) * 613u) & (FSGUARD_FS_MARK_SLOTS - 1);
}

/* Whether `key` is numbered above its filesystem's mark: then it has no entry in `inodes`. */
static __always_inline bool above_mark(struct fsguard_inode_key *key)
{
	__u32 slot = fs_mark_slot(key->dev);
	struct fsguard_fs_mark *m;

	if (key->ino >= FSGUARD_FS_MARK_LIMIT)
		return false;
	m = bpf_map_lookup_elem(&fs_marks, &slot);
	return m && m->valid == FSGUARD_FS_MARK_VALID && key->ino > *(volatile __u64 *)&m->mark;
}

/*
 * Raises `key`'s filesystem's mark to at least its inode number, before an entry is added
 * for it. Without compare-and-swap (the programs are built for the first BPF instruction
 * set) it adds the difference to the mark seen: whatever others add at the same time, the
 * mark ends at least that high (it only grows), at worst above what is needed. Numbers from
 * FSGUARD_FS_MARK_LIMIT up are never skipped, so not raised for: each addition is then below
 * the limit, and even one from every task at once leaves the mark far from wrapping around
 * (which would put it below entries). False only if the slot can't be read (not for an index
 * the map has): the entry must not be added then.
 */
static __always_inline bool raise_mark(struct fsguard_inode_key *key)
{
	__u32 slot = fs_mark_slot(key->dev);
	struct fsguard_fs_mark *m;
	__u64 seen;

	if (key->ino >= FSGUARD_FS_MARK_LIMIT)
		return true;
	m = bpf_map_lookup_elem(&fs_marks, &slot);
	if (!m)
		return false;
	seen = *(volatile __u64 *)&m->mark;
	if (seen < key->ino)
		__sync_fetch_and_add(&m->mark, key->ino - seen);
	return true;
}

/* Whether filesystem `dev` holds no entry of any capsule (see entry_filesystems). */
static __always_inline bool fs_without_entries(__u64 dev)
{
	__u64 complete = FSGUARD_ENTRY_FILESYSTEMS_COMPLETE;

	return bpf_map_lookup_elem(&entry_filesystems, &complete) &&
	       !bpf_map_lookup_elem(&entry_filesystems, &dev);
}

static __always_inline void look_up_hash(struct entry *e)
{
	struct fsguard_inode_value *v;

	if (above_mark(&e->key)) {
		e->hit = false;
		return;
	}
	v = bpf_map_lookup_elem(&inodes, &e->key);

	e->hit = v != NULL;
	if (v)
		e->v = *v;
}

/* A directory's entry, through the directory cache. Without storage (no memory), or for
 * an entry the cache can't encode, the hash map answers alone. */
static __always_inline void look_up_dir(struct inode *dir, struct entry *e)
{
	__u32 zero = 0;
	__u64 *epoch_slot = bpf_map_lookup_elem(&dir_cache_epoch, &zero);
	__u64 *cache, cached, epoch;

	/* No epoch slot, or one past the ceiling: the cache is not used. */
	epoch = epoch_slot ? *(volatile __u64 *)epoch_slot : DIR_CACHE_EPOCH_MASK + 1;
	if (epoch > DIR_CACHE_EPOCH_MASK) {
		look_up_hash(e);
		return;
	}
	cache = bpf_inode_storage_get(&dir_cache, dir, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (cache) {
		cached = *(volatile __u64 *)cache;
		if ((cached & DIR_CACHE_VALID) && (cached & DIR_CACHE_EPOCH_MASK) == epoch) {
			e->hit = cached & DIR_CACHE_PROTECTED;
			e->fs_clean = cached & DIR_CACHE_FS_CLEAN;
			e->v.capsule = (cached >> DIR_CACHE_CAPSULE_SHIFT) & 0xff;
			e->v.flags = (cached >> DIR_CACHE_FLAGS_SHIFT) & 0xff;
			return;
		}
	}
	look_up_hash(e);
	if (!cache)
		return;
	if (!e->hit) {
		e->fs_clean = fs_without_entries(e->key.dev);
		cached = DIR_CACHE_VALID | (e->fs_clean ? DIR_CACHE_FS_CLEAN : 0) | epoch;
	} else if (e->v.capsule <= 0xff && e->v.flags <= 0xff) {
		cached = DIR_CACHE_VALID | DIR_CACHE_PROTECTED |
			 ((__u64)e->v.flags << DIR_CACHE_FLAGS_SHIFT) |
			 ((__u64)e->v.capsule << DIR_CACHE_CAPSULE_SHIFT) | epoch;
	} else {
		cached = 0;
	}
	*(volatile __u64 *)cache = cached;
}

static __always_inline void look_up(struct inode *inode, struct entry *e)
{
	e->hit = false;
	e->fs_clean = false;
	e->valid = inode_key(inode, &e->key);
	if (!e->valid)
		return;
	if (is_dir(inode))
		look_up_dir(inode, e);
	else
		look_up_hash(e);
}

/*
 * A non-directory without an entry of its own, named in a directory of a capsule, is that
 * capsule's, with the directory's flags, unless the directory is append-only (what is made
 * there stays out of the capsule until protected on its own). Files made inside after the
 * seal on tmpfs rely on it: inode_init_security adds no entry for them, which spares each a
 * map insert and delete (elsewhere they get one, see there). What keeps this exact: such a
 * file has one name, in that directory. Whatever would give it another name or move it
 * elsewhere gets it an entry first (inode_link; inode_rename to another directory). The name
 * is the dentry's, which the kernel keeps with its directory (d_parent) for as long as it
 * exists, through bind mounts, /proc/PID/root and /proc/PID/fd alike; an unlinked file keeps
 * its last directory. A dentry without its directory is the exception: see look_up_named.
 * The file takes the directory's flags. An entry a request made for the file (CLAIMED) does
 * not outrank another capsule's directory, so a request can't take the file from it.
 */
static __always_inline void named_in(struct entry *e, struct entry *dir)
{
	if (!dir->hit || (dir->v.flags & FSGUARD_INODE_APPEND_ONLY))
		return;
	/* An entry a request made (anyone may leave one) in another capsule's directory: the
	 * directory's capsule decides (its flags too: a request can't freeze its files). */
	if (e->hit && (!(e->v.flags & FSGUARD_INODE_CLAIMED) || e->v.capsule == dir->v.capsule))
		return;
	e->overruled = e->hit;
	e->hit = true;
	e->implicit = true;
	e->v = dir->v;
}

static __always_inline struct inode *dentry_inode(struct dentry *dentry)
{
	return dentry ? dentry->d_inode : NULL;
}

/* An inode's first dentry (a directory's only one): to name it in a refusal, or to find the
 * directory of a file without an entry of its own. */
static __always_inline struct dentry *inode_alias(struct inode *inode)
{
	struct hlist_node *first = BPF_CORE_READ(inode, i_dentry.first);

	if (!first)
		return NULL;
	return (struct dentry *)((void *)first - bpf_core_field_offset(struct dentry, d_u));
}

/* A non-directory looked up (`e`) whose directory can't be told: on a tmpfs with entries, it
 * may be a file protected through its directory (named_in), so a hit with unknown_dir. */
static __always_inline void directory_unknown(struct inode *inode, struct entry *e)
{
	if (!e->hit && inode->i_sb->s_magic == TMPFS_MAGIC && !fs_without_entries(e->key.dev)) {
		e->hit = true;
		e->unknown_dir = true;
	}
}

/*
 * A non-directory reached through a dentry that is not its own: its own entry, or else
 * named_in through the directory of the inode's first alias (a file without an entry of its
 * own has one name). Read with probe reads (the alias is found by pointer arithmetic), and
 * the directory looked up in the hash map only: a rare path. Without an alias, or with one
 * without a directory, on a tmpfs with entries, its capsule can't be told (unknown_dir).
 */
static __always_inline void look_up_by_alias(struct inode *inode, struct entry *e)
{
	struct dentry *alias = inode_alias(inode), *parent = NULL;
	struct inode *dir = NULL;
	struct entry d = {};

	look_up(inode, e);
	/* An entry of its own decides, unless a request made it: then the directory may
	 * outrank it (named_in). */
	if (!e->valid || (e->hit && !(e->v.flags & FSGUARD_INODE_CLAIMED)))
		return;
	if (alias)
		parent = BPF_CORE_READ(alias, d_parent);
	if (parent && parent != alias)
		dir = BPF_CORE_READ(parent, d_inode);
	if (dir) {
		d.key.dev = BPF_CORE_READ(dir, i_sb, s_dev);
		d.key.ino = BPF_CORE_READ(dir, i_ino);
		if (d.key.dev != e->key.dev)
			return;
		look_up_hash(&d);
		named_in(e, &d);
		return;
	}
	directory_unknown(inode, e);
}

/*
 * `inode` reached through `dentry`, one of its names: its own entry, or else, for a
 * non-directory, its directory's (named_in). The directory is looked up first, since most
 * files are no capsule's and their directory's cache often answers that their filesystem
 * has no entry at all. A dentry without a directory is a pseudo file's (a pipe, a socket, a
 * memfd: no capsule's) or one the kernel made from a file handle without finding the name
 * (DCACHE_DISCONNECTED: open_by_handle_at, nfsd). tmpfs never makes the latter (its handles
 * resolve to a live name or to ESTALE), and elsewhere files made inside have entries of their
 * own; should a tmpfs file without an entry come this way all the same, on a filesystem with
 * entries, its capsule can't be told: a hit with unknown_dir, which decide_entry refuses
 * (fail closed).
 */
static __always_inline void look_up_named(struct inode *inode, struct dentry *dentry,
					  struct entry *e)
{
	struct dentry *parent;
	struct entry d = {};

	if (!inode || is_dir(inode)) {
		look_up(inode, e);
		return;
	}
	/* Not the inode's own dentry: overlayfs opens the real file behind an overlay path
	 * (open_with_fake_path), whose directory is the overlay's, on another filesystem. */
	if (dentry && dentry->d_inode != inode) {
		look_up_by_alias(inode, e);
		return;
	}
	parent = dentry ? dentry->d_parent : NULL;
	if (!parent || parent == dentry) {
		look_up(inode, e);
		if (!dentry || (dentry->d_flags & DCACHE_DISCONNECTED))
			directory_unknown(inode, e);
		return;
	}
	look_up(parent->d_inode, &d);
	e->hit = false;
	e->valid = inode_key(inode, &e->key);
	e->fs_clean = d.fs_clean;
	if (d.fs_clean)
		return;
	look_up_hash(e);
	named_in(e, &d);
}

/*
 * Lock down. `slot` protects something that is not part of a tree (a directory above a
 * sealed root, a block device, a mount): refused from level 2 on, or from level 1 on when it
 * belongs to the guard's own slot (its pins). 0 when allowed.
 */
static __always_inline int decide_locked(__u32 slot, struct fsguard_inode_key *key,
					 struct dentry *dentry, __u32 op)
{
	struct fsguard_capsule *c = bpf_map_lookup_elem(&capsules, &slot);
	__u32 level = current_level();
	bool guard = c && (c->flags & FSGUARD_CAPSULE_GUARD);

	if (level >= FSGUARD_LEVEL_LOCKED || (guard && level >= FSGUARD_LEVEL_SEALED))
		return refuse(key, dentry, slot, op, guard ? FSGUARD_RULE_GUARD : FSGUARD_RULE_LOCKED,
			      level, current_fsuid());
	return 0;
}

/* What a program run learnt about its caller: a capsule it is inside (0: none found yet),
 * so that a hook deciding on several entries of one capsule asks once. */
struct caller {
	__u32 inside;
};

/* The decision for operation `op` on a looked-up inode: 0 to allow, -EPERM to refuse. */
static __always_inline int decide_entry(struct caller *me, struct entry *e, struct dentry *dentry,
					__u32 op)
{
	struct fsguard_capsule *c;
	__u32 capsule, flags, level;

	if (!e->hit)
		return 0;
	if (e->unknown_dir) {
		level = current_level();
		if (level == FSGUARD_LEVEL_MAINTENANCE && current_fsuid() == 0)
			return 0;
		return refuse(&e->key, dentry, 0, op, FSGUARD_RULE_DISCONNECTED, level,
			      current_fsuid());
	}
	capsule = e->v.capsule;
	flags = e->v.flags;
	c = bpf_map_lookup_elem(&capsules, &capsule);
	if (!c || !(c->flags & FSGUARD_CAPSULE_ACTIVE))
		return refuse(&e->key, dentry, capsule, op, FSGUARD_RULE_UNKNOWN_CAPSULE,
			      current_level(), current_fsuid());
	/* A loop device's backing file beneath a sealed tree or a swap area: locked like the
	 * block device it stands for, but written by the loop's own worker. */
	if (flags & FSGUARD_INODE_BACKING) {
		if (op == FSGUARD_OP_WRITE && current_is_kthread())
			return 0;
		return decide_locked(capsule, &e->key, dentry, op);
	}
	/* Frozen means nobody: checked before the append-only, inside and level-0 root
	 * allowances. */
	if (flags & FSGUARD_INODE_FROZEN)
		return refuse(&e->key, dentry, capsule, op, FSGUARD_RULE_FROZEN, current_level(),
			      current_fsuid());
	if ((flags & FSGUARD_INODE_APPEND_ONLY) && (op == FSGUARD_OP_CREATE || op == FSGUARD_OP_LINK))
		return 0;
	/* The inside's own operations (the common case) need neither the level nor the uid. A
	 * member moved out of the cgroup by root outside is still inside. */
	if (me->inside == capsule)
		return 0;
	if (is_inside(c) || current_capsule() == capsule) {
		me->inside = capsule;
		return 0;
	}
	level = current_level();
	if (level == FSGUARD_LEVEL_MAINTENANCE && current_fsuid() == 0)
		return 0;
	return refuse(&e->key, dentry, capsule, op, FSGUARD_RULE_OUTSIDE, level, current_fsuid());
}

/* The decision for operation `op` on `inode`, reached through its name `dentry`: 0 to allow,
 * -EPERM to refuse. */
static __always_inline int decide(struct inode *inode, struct dentry *dentry, __u32 op)
{
	struct caller me = {};
	struct entry e = {};

	look_up_named(inode, dentry, &e);
	return decide_entry(&me, &e, dentry, op);
}

/* The decision for operation `op` (a creation, a link) in directory `dir`, whose new name is
 * `dentry`. */
static __always_inline int decide_dir(struct inode *dir, struct dentry *dentry, __u32 op)
{
	struct caller me = {};
	struct entry e = {};

	look_up(dir, &e);
	return decide_entry(&me, &e, dentry, op);
}

/*
 * Removing `victim`'s name from `dir` (unlink, rmdir, rename away, replace): an append-only
 * directory allows it only for entries that are not protected themselves (a temporary file
 * renamed into place); any other protected directory is decided as usual.
 */
static __always_inline int decide_removal(struct caller *me, struct entry *dir,
					  struct entry *victim, struct dentry *dentry, __u32 op)
{
	if (!dir->hit)
		return 0;
	if ((dir->v.flags & FSGUARD_INODE_APPEND_ONLY) && !victim->hit)
		return 0;
	return decide_entry(me, dir, dentry, op);
}

/*
 * Adds `inode` to the capsule of directory `d` (looked up, protected), with its flags (allowed
 * operations only). `how`: BPF_NOEXIST keeps an inode some capsule already has as it is;
 * BPF_ANY, for a new inode, replaces a stale entry. 0, or -ENOSPC when the inode could not be
 * added (the inodes map is full or out of memory): the caller refuses the operation, since
 * the entry would otherwise join the tree unprotected from outside. The refusal names
 * `dentry` (the new name), or the directory `dir` when NULL.
 */
static __always_inline int adopt(struct entry *d, struct inode *inode, struct inode *dir,
				 struct dentry *dentry, __u32 op, __u64 how)
{
	struct fsguard_inode_key key = {};
	struct fsguard_inode_value value;
	struct fsguard_stats *st;
	int err;

	value.capsule = d->v.capsule;
	value.flags = d->v.flags & ~FSGUARD_INODE_CLAIMED;
	if (inode_key(inode, &key) && raise_mark(&key)) {
		/* As an int: the verifier turns the helper into a direct call of the hash map's
		 * update, whose int result leaves the register's upper half zero (-EEXIST reads
		 * as 4294967279 in 64 bits). */
		err = (int)bpf_map_update_elem(&inodes, &key, &value, how);
		if (err == -EEXIST)
			return 0;
		if (!err) {
			st = stats_slot();
			if (st)
				__sync_fetch_and_add(&st->inherited, 1);
			return 0;
		}
	}
	refuse(&d->key, dentry ? dentry : inode_alias(dir), value.capsule, op, FSGUARD_RULE_FULL,
	       current_level(), current_fsuid());
	return -ENOSPC;
}

/* An existing inode given a name in `dir` (rename, link): adopted when `dir` is a capsule's,
 * except in an append-only directory. */
static __always_inline int inherit(struct inode *inode, struct inode *dir, struct dentry *dentry,
				   __u32 op)
{
	struct entry d = {};

	look_up(dir, &d);
	if (!d.hit || (d.v.flags & FSGUARD_INODE_APPEND_ONLY))
		return 0;
	return adopt(&d, inode, dir, dentry, op, BPF_NOEXIST);
}

/* A directory above a sealed root (or above the guard's pins): renaming, removing, mounting
 * over or unmounting it would swap what the path leads to. */
static __always_inline int decide_ancestor(struct inode *inode, struct dentry *dentry, __u32 op)
{
	struct fsguard_inode_key key = {};
	__u32 *slot;

	/* Only directories are ancestors: a file's rename or unlink needs no lookup. */
	if (!is_dir(inode) || !inode_key(inode, &key))
		return 0;
	slot = bpf_map_lookup_elem(&ancestors, &key);
	if (!slot)
		return 0;
	return decide_locked(*slot, &key, dentry, op);
}

/* Mounting over, moving or unmounting at `dentry`: refused over a sealed tree's entries and
 * over directories above sealed roots. */
/*
 * Whether a mount made, moved or undone on `mnt` is seen by nobody outside the caller's own
 * mount namespace, the caller being inside a capsule: a namespace other than the initial
 * one, and neither `mnt` nor the mount it is on shared (their peers would get it too). So
 * `sealtool run` builds a capsule's root over its sealed tree (/proc, /dev, /tmp, bases
 * read-only) and leaves the host's root, at every level.
 */
static __always_inline bool private_to_inside(struct vfsmount *mnt)
{
	struct mount *m;

	if (!mnt || in_init_mnt_ns() || !current_capsule())
		return false;
	m = (struct mount *)((void *)mnt - bpf_core_field_offset(struct mount, mnt));
	return !(BPF_CORE_READ(mnt, mnt_flags) & MNT_SHARED) &&
	       !(BPF_CORE_READ(m, mnt_parent, mnt.mnt_flags) & MNT_SHARED);
}

static __always_inline int decide_mountpoint(struct dentry *dentry, struct vfsmount *mnt,
					     __u32 op)
{
	struct inode *inode = dentry_inode(dentry);
	struct entry e = {};
	__u32 *slot;
	int r;

	if (private_to_inside(mnt))
		return 0;

	look_up_named(inode, dentry, &e);
	/* Each rule that applies is asked: an entry of the inode's own never speaks for the
	 * pins' directories or a sealed root's ancestors. */
	if (e.hit && !e.unknown_dir) {
		r = decide_locked(e.v.capsule, &e.key, dentry, op);
		if (r)
			return r;
	}
	/* Mounting over (or moving) a directory above the pins on another filesystem (/, /sys,
	 * /sys/fs), in the initial mount namespace: what it hides could be replaced by an
	 * impostor's pins. Unmounting one fails while the bpffs is mounted below (EBUSY), and a
	 * bind of one elsewhere must stay unmountable: see sb_umount. */
	if (e.valid && op != FSGUARD_OP_UMOUNT && in_init_mnt_ns()) {
		slot = bpf_map_lookup_elem(&pin_path, &e.key);
		if (slot)
			return decide_locked(*slot, &e.key, dentry, op);
	}
	return decide_ancestor(inode, dentry, op);
}

/* Writing to a block device that holds a sealed tree (level 2). 0 when allowed. */
static __always_inline int decide_blockdev(struct inode *inode, struct dentry *dentry)
{
	struct fsguard_inode_key key = {};
	__u64 rdev;
	__u32 *slot;

	if (!inode || (inode->i_mode & S_IFMT) != S_IFBLK)
		return 0;
	rdev = inode->i_rdev;
	slot = bpf_map_lookup_elem(&devices, &rdev);
	if (!slot)
		return 0;
	inode_key(inode, &key);
	return decide_locked(*slot, &key, dentry, FSGUARD_OP_BLOCKDEV_WRITE);
}

/*
 * Forgets `e`'s inode when the unlink being allowed removes its last link. (It runs before
 * the operation: should the operation then fail, the inode stays linked, until the next
 * boot's enforcement protected only through its directory (named_in), so not at all in a
 * directory of no capsule or an append-only one. Releasing it on inode_free_security
 * instead was tried and reverted after a guest run of that version hit a soft lockup; the
 * stacks of a later such lockup point at the emulator (README, "Known problem"), so that
 * version deserves another try.)
 *
 * A directory's entry is never released. At rmdir the filesystem says ENOTEMPTY only after
 * this hook, and the link count tells nothing: a directory has two links until its last one
 * goes, and on filesystems that count one link per directory (ext4 past 65,000
 * subdirectories, btrfs) releasing on that count let an inside rmdir of a non-empty
 * directory strip it of its protection. Even an empty directory is not released: a file
 * unlinked there while still open keeps it as its directory (named_in), and through
 * /proc/PID/fd it can still be opened. A removed directory's entry stays until a new inode
 * takes its number (inode_init_security) or the next boot.
 */
static __always_inline void release_if_last_link(struct inode *inode, struct entry *e)
{
	struct fsguard_stats *st;

	if (!e->hit || e->implicit || !inode || is_dir(inode) || inode->i_nlink > 1)
		return;
	if (bpf_map_delete_elem(&inodes, &e->key) == 0) {
		st = stats_slot();
		if (st)
			__sync_fetch_and_add(&st->released, 1);
	}
}

/*
 * Process capsules. A process belongs to a capsule when it is (or was, see `members`) in the
 * capsule's cgroup subtree. To an outside process:
 *   attaching and debugging (ptrace attach, /proc/PID/mem, process_vm_*, scheduling, nice,
 *   I/O priority, page migration, setns through a pidfd, the capsule's cgroups) is refused
 *   at every level, root included;
 *   seeing and signalling (ptrace read access: /proc/PID details, hidepid; kill) is allowed
 *   only to root at level 0.
 * Members of the same capsule deal with each other normally.
 */
static __always_inline int decide_process_slot(__u32 slot, __u32 tgid, __u32 op, bool attach,
					       bool report)
{
	struct fsguard_capsule *c;
	struct fsguard_stats *st;
	__u32 rule, level, uid;

	if (!slot || current_capsule() == slot)
		return 0;
	c = bpf_map_lookup_elem(&capsules, &slot);
	level = current_level();
	uid = current_euid();
	if (!c || !(c->flags & FSGUARD_CAPSULE_ACTIVE))
		rule = FSGUARD_RULE_UNKNOWN_CAPSULE;
	else if (attach)
		rule = FSGUARD_RULE_ATTACH;
	else if (level == FSGUARD_LEVEL_MAINTENANCE && uid == 0)
		return 0;
	else
		rule = FSGUARD_RULE_SEE;
	if (!report) {
		/* A check the kernel itself marks as not worth auditing (a probe): counted only. */
		st = stats_slot();
		if (st)
			__sync_fetch_and_add(&st->denied, 1);
		return -EPERM;
	}
	return refuse_event(NULL, NULL, tgid, slot, op, rule, level, uid);
}

static __always_inline int decide_process(struct task_struct *target, __u32 op, bool attach,
					  bool report)
{
	return decide_process_slot(task_capsule(target), BPF_CORE_READ(target, tgid), op, attach,
				   report);
}

/* Whether the first `n` bytes (NUL included) of `a` and `b` are equal; no memcmp call,
 * which the BPF target has no library for. */
static __always_inline bool same_cstr(const char *a, const char *b, int n)
{
	int i;

#pragma unroll
	for (i = 0; i < 16; i++) {
		if (i >= n)
			break;
		if (a[i] != b[i])
			return false;
	}
	return true;
}

/*
 * The capsule's cgroups, as files and directories of the cgroup2 filesystem: outside
 * processes may read them but never join (cgroup.procs, cgroup.threads, clone3 into them),
 * create or remove cgroups, or write a control file (cpuset, limits, freezer, kill), at
 * every level. Identity is the kernfs node's cgroup, whatever the mount.
 */
static __always_inline int decide_cgroup(struct inode *inode, struct dentry *dentry, __u32 op)
{
	struct fsguard_inode_key key = {};
	struct kernfs_node *kn;
	struct cgroup *cgrp;
	__u32 slot;

	if (!inode || inode->i_sb->s_magic != CGROUP2_SUPER_MAGIC)
		return 0;
	kn = (struct kernfs_node *)inode->i_private;
	if (!kn)
		return 0;
	/* A directory's node is its cgroup's; a control file's parent is. */
	if (!is_dir(inode))
		kn = BPF_CORE_READ(kn, parent);
	if (!kn)
		return 0;
	cgrp = (struct cgroup *)BPF_CORE_READ(kn, priv);
	slot = cgroup_capsule(cgrp);
	/* Above a capsule: cgroup.kill and cgroup.freeze reach its processes, whichever capsule
	 * (if any) this cgroup is itself. */
	if (dentry && !is_dir(inode)) {
		__u64 id = BPF_CORE_READ(kn, id);
		__u32 *above = bpf_map_lookup_elem(&cgroup_ancestors, &id);
		char name[16] = {};

		if (above) {
			bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(dentry, d_name.name));
			if ((same_cstr(name, "cgroup.kill", 12) || same_cstr(name, "cgroup.freeze", 14)) &&
			    current_capsule() != *above)
				slot = *above;
		}
	}
	if (!slot || current_capsule() == slot)
		return 0;
	inode_key(inode, &key);
	return refuse(&key, dentry, slot, op, FSGUARD_RULE_ATTACH, current_level(),
		      current_fsuid());
}

/* Whether `file`'s directory is on a filesystem that creates and opens in one step. */
static __always_inline bool created_by_atomic_open(struct file *file)
{
	struct inode *dir = dentry_inode(file->f_path.dentry->d_parent);

	/* Direct reads: a probe read costs about as much as a lookup. */
	return !dir || !dir->i_op || dir->i_op->atomic_open;
}

/* Whether a sysfs file named by `dentry` unbinds, removes or probes devices again (a driver's
 * bind/unbind, a device's remove or delete, a bus's rescan or scan, a controller's reset or
 * deletion, a driver's new_id or override, a PCI slot's power, an ACPI device's eject, a USB
 * device's authorization or configuration): a disk probed again comes back under a new
 * device number, which nothing protects. Or builds a block device over others, which the
 * kernel then opens itself, unhooked: an md array's new_dev, bcache's register. */
static __always_inline bool reprobes_devices(struct dentry *dentry)
{
	char name[24] = {};

	bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(dentry, d_name.name));
	return same_cstr(name, "bind", 5) || same_cstr(name, "unbind", 7) ||
	       same_cstr(name, "remove", 7) || same_cstr(name, "delete", 7) ||
	       same_cstr(name, "rescan", 7) || same_cstr(name, "scan", 5) ||
	       same_cstr(name, "new_id", 7) || same_cstr(name, "driver_override", 16) ||
	       same_cstr(name, "drivers_probe", 14) || same_cstr(name, "reset_controller", 16) ||
	       same_cstr(name, "delete_controller", 16) || same_cstr(name, "new_dev", 8) ||
	       same_cstr(name, "register", 9) || same_cstr(name, "register_quiet", 15) ||
	       same_cstr(name, "power", 6) || same_cstr(name, "eject", 6) ||
	       same_cstr(name, "authorized", 11) || same_cstr(name, "bConfigurationValue", 20);
}

/* Whether a sysfs file named by `dentry` switches on a block device's I/O tracing
 * (`trace/enable`, blktrace: who does I/O there, capsule processes' pids and names). */
static __always_inline bool traces_block_io(struct dentry *dentry)
{
	char name[8] = {}, parent[8] = {};

	bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(dentry, d_name.name));
	bpf_probe_read_kernel_str(parent, sizeof(parent), BPF_CORE_READ(dentry, d_parent, d_name.name));
	return same_cstr(name, "enable", 7) && same_cstr(parent, "trace", 6);
}

/* Whether a configfs file named by `dentry` enables a storage target's device (LIO's
 * backstores, nvmet's namespaces and passthrough controllers all call it `enable`). */
static __always_inline bool enables_target(struct dentry *dentry)
{
	char name[8] = {};

	bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(dentry, d_name.name));
	return same_cstr(name, "enable", 7);
}

/* Level 2: SCSI generic devices (sg, major 21) pass commands to a disk through write(2)
 * too, not only SG_IO: no descriptor of one is opened for writing, none written. */
static __always_inline int decide_sg_write(struct inode *inode, struct dentry *dentry)
{
	if ((inode->i_mode & S_IFMT) != S_IFCHR || (inode->i_rdev >> 20) != 21 ||
	    current_level() < FSGUARD_LEVEL_LOCKED)
		return 0;
	return refuse(NULL, dentry, 0, FSGUARD_OP_BLOCKDEV_WRITE, FSGUARD_RULE_LOCKED,
		      FSGUARD_LEVEL_LOCKED, current_fsuid());
}

/* Level 2, writing a sysfs or configfs control file (a new open, or a descriptor opened
 * before the raise): see reprobes_devices and enables_target. */
static __always_inline int decide_device_control(struct file *file, __u64 magic)
{
	if ((magic != SYSFS_MAGIC && magic != CONFIGFS_MAGIC) ||
	    current_level() < FSGUARD_LEVEL_LOCKED)
		return 0;
	if ((magic == SYSFS_MAGIC &&
	     (reprobes_devices(file->f_path.dentry) || traces_block_io(file->f_path.dentry))) ||
	    (magic == CONFIGFS_MAGIC && enables_target(file->f_path.dentry)))
		return refuse(NULL, file->f_path.dentry, 0, FSGUARD_OP_BLOCKDEV_WRITE,
			      FSGUARD_RULE_LOCKED, FSGUARD_LEVEL_LOCKED, current_fsuid());
	return 0;
}


/*
 * Level 2 (or tracing locked): tracefs's kprobe, uprobe and dynamic event files define probes
 * that record any process's registers and user memory (`+u0(%si):ustring`) with no BPF and no
 * perf event; its static events (sched_process_exec, sys_enter_*: `enable`, `set_event`,
 * their pid filters, `trigger`, and set_ftrace_filter's `:enable_event`/`:stacktrace`
 * commands) and tracers (`current_tracer`, `set_ftrace_pid`) record what
 * every process does, capsule processes' names, pids, files and arguments included. Writing
 * any of them, in the top instance or another, is refused, like loading tracing programs.
 */
static __always_inline int decide_trace_events(struct file *file, __u64 magic)
{
	char name[24] = {};

	if (magic != TRACEFS_MAGIC ||
	    (current_level() < FSGUARD_LEVEL_LOCKED && !tracing_locked()))
		return 0;
	bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(file, f_path.dentry, d_name.name));
	if (!same_cstr(name, "kprobe_events", 14) && !same_cstr(name, "uprobe_events", 14) &&
	    !same_cstr(name, "dynamic_events", 15) && !same_cstr(name, "enable", 7) &&
	    !same_cstr(name, "set_event", 10) && !same_cstr(name, "set_event_pid", 14) &&
	    !same_cstr(name, "set_event_notrace_pid", 22) && !same_cstr(name, "trigger", 8) &&
	    !same_cstr(name, "current_tracer", 15) && !same_cstr(name, "set_ftrace_pid", 15) &&
	    !same_cstr(name, "set_ftrace_notrace_pid", 23) &&
	    !same_cstr(name, "set_ftrace_filter", 18))
		return 0;
	return refuse(NULL, file->f_path.dentry, 0, FSGUARD_OP_BPF_TRACING, FSGUARD_RULE_LOCKED,
		      FSGUARD_LEVEL_LOCKED, current_fsuid());
}

/*
 * From level 1, to everyone: the kernel's own ways to signal processes that task_kill never
 * sees. /proc/sysrq-trigger (e: SIGTERM to every process, i: SIGKILL, f: the OOM killer, k:
 * SAK) and kernel.sysrq (which lets a keyboard, an injected one included, do the same); a
 * page marked failed (sysfs's memory hard_offline_page and soft_offline_page; debugfs's
 * hwpoison, mce-inject and APEI einj): SIGBUS or SIGKILL to every process that maps it, and
 * /proc/kpagecgroup names the pages of a capsule's memory cgroup. debugfs is refused whole
 * (lockdown refuses it from level 2): its fault injection and the like act on any process.
 */
static __always_inline int decide_machine_signal(struct file *file, struct inode *inode,
						 __u64 magic)
{
	struct dentry *dentry;
	char name[20] = {};
	bool found;

	if ((magic != PROC_SUPER_MAGIC && magic != SYSFS_MAGIC && magic != DEBUGFS_MAGIC) ||
	    current_level() < FSGUARD_LEVEL_SEALED)
		return 0;
	dentry = file->f_path.dentry;
	bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(dentry, d_name.name));
	if (magic == PROC_SUPER_MAGIC) {
		char parent[8] = {};

		bpf_probe_read_kernel_str(parent, sizeof(parent),
					  BPF_CORE_READ(dentry, d_parent, d_name.name));
		found = (same_cstr(name, "sysrq-trigger", 14) &&
			 BPF_CORE_READ(dentry, d_parent) == BPF_CORE_READ(inode, i_sb, s_root)) ||
			(same_cstr(name, "sysrq", 6) && same_cstr(parent, "kernel", 7));
	} else if (magic == SYSFS_MAGIC) {
		found = same_cstr(name, "hard_offline_page", 18) ||
			same_cstr(name, "soft_offline_page", 18);
	} else {
		found = true;
	}
	if (!found)
		return 0;
	return refuse(NULL, dentry, 0, FSGUARD_OP_SIGNAL, FSGUARD_RULE_SEE, current_level(),
		      current_fsuid());
}

/*
 * Level 2 (or tracing locked): no LSM policy is loaded, replaced or removed (AppArmor's .load,
 * .replace and .remove; SELinux's load). A profile in complain or audit mode logs every file,
 * network, signal and capability access of the processes it confines, with their pids and
 * paths (and makes the system call around each fully audited), like a trace event; a profile
 * can also refuse a capsule's operations.
 */
static __always_inline int decide_lsm_policy(struct file *file, __u64 magic)
{
	char name[12] = {};

	if ((magic != SECURITYFS_MAGIC && magic != SELINUX_MAGIC) ||
	    (current_level() < FSGUARD_LEVEL_LOCKED && !tracing_locked()))
		return 0;
	bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(file, f_path.dentry, d_name.name));
	if (magic == SECURITYFS_MAGIC ? !same_cstr(name, ".load", 6) && !same_cstr(name, ".replace", 9) &&
					       !same_cstr(name, ".remove", 8) :
					!same_cstr(name, "load", 5))
		return 0;
	return refuse(NULL, file->f_path.dentry, 0, FSGUARD_OP_BPF_TRACING, FSGUARD_RULE_LOCKED,
		      FSGUARD_LEVEL_LOCKED, current_fsuid());
}

/* A write to a file through which the kernel is steered (tracefs, sysfs and configfs
 * controls, SysRq, debugfs, failed pages, LSM policy): judged when it is opened for writing
 * and at each write through a descriptor opened earlier. */
static __always_inline int decide_kernel_control(struct file *file, struct inode *inode,
						 __u64 magic)
{
	int r = decide_trace_events(file, magic);

	if (!r)
		r = decide_device_control(file, magic);
	if (!r)
		r = decide_machine_signal(file, inode, magic);
	if (!r)
		r = decide_lsm_policy(file, magic);
	return r;
}

/*
 * /proc/kcore (from level 1 on): all of memory, capsule processes' included, read by walking
 * their page tables; lockdown refuses it only in its confidentiality mode.
 */
static __always_inline int decide_kcore(struct file *file, struct inode *inode)
{
	struct dentry *dentry = file->f_path.dentry;
	char name[8] = {};

	if (BPF_CORE_READ(dentry, d_parent) != BPF_CORE_READ(inode, i_sb, s_root) ||
	    current_level() < FSGUARD_LEVEL_SEALED)
		return 0;
	bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(dentry, d_name.name));
	if (!same_cstr(name, "kcore", 6))
		return 0;
	return refuse(NULL, dentry, 0, FSGUARD_OP_PROC_FILE, FSGUARD_RULE_ATTACH, current_level(),
		      current_fsuid());
}

/* Defined with the guard's own rules below. */
static __always_inline bool in_syscall(__u64 nr, __u64 nr32);
static __always_inline bool is_guard_map(struct bpf_map *map);
static __always_inline bool is_frozen(void *map);
static __always_inline bool guard_sealed(void);
static __always_inline bool guard_shaped(struct bpf_map *m);
static __always_inline int refuse_guard_op(__u32 op);
static __always_inline bool is_pty_side(struct inode *inode);
static __always_inline int decide_terminal_io(struct tty_struct *tty, struct dentry *dentry);

SEC("lsm/file_open")
int BPF_PROG(fsguard_file_open, struct file *file, int ret)
{
	unsigned int f_flags;
	struct inode *inode;
	umode_t type;
	__u64 magic;
	bool write;

	if (ret)
		return ret;
	f_flags = file->f_flags;
	inode = file->f_inode;
	/* O_TMPFILE: the new inode is linked nowhere yet; its directory is what is modified. */
	if (f_flags & __O_TMPFILE) {
		struct dentry *parent = file->f_path.dentry->d_parent;
		int r = decide_dir(dentry_inode(parent), parent, FSGUARD_OP_CREATE);

		if (r)
			return r;
		return inherit(inode, dentry_inode(parent), parent, FSGUARD_OP_CREATE);
	}
	if (!inode)
		return 0;
	/* Read once: each read through a kernel pointer costs a range check of its own. */
	write = file->f_mode & FMODE_WRITE;
	type = inode->i_mode & S_IFMT;
	/*
	 * Made by this very open(O_CREAT): inode_create has judged it (an outsider can't create
	 * in a capsule's directory) and inode_init_security, where the filesystem calls it, has
	 * added it to the directory's capsule. Its creator may write it, so no lookup; every
	 * write is judged again anyway. Not on filesystems with atomic_open (NFS, FUSE), which
	 * set FMODE_CREATED themselves, also for a file that existed. None of the files the
	 * rules below look for is made by an open (swapon(2) creates nothing; tracefs, sysfs,
	 * configfs, bpffs and procfs make no file on open).
	 */
	if (type == S_IFREG && (file->f_mode & FMODE_CREATED) && !created_by_atomic_open(file))
		return 0;
	/* Level 2: no swap area is switched on (swapon(2) opens its device or file read-write):
	 * what capsule processes swap out there would come back as root outside had written it
	 * through another path to the same sectors. Those of the areas active at the raise are
	 * protected as devices by sealtool's lock. */
	if (write && (type == S_IFBLK || type == S_IFREG) &&
	    current_level() >= FSGUARD_LEVEL_LOCKED && in_syscall(NR_swapon, NR_ia32_swapon))
		return refuse(NULL, file->f_path.dentry, 0, FSGUARD_OP_BLOCKDEV_WRITE,
			      FSGUARD_RULE_LOCKED, FSGUARD_LEVEL_LOCKED, current_fsuid());
	if (type == S_IFBLK)
		return write ? decide_blockdev(inode, file->f_path.dentry) : 0;
	magic = inode->i_sb->s_magic;
	/* A pin of one of the guard's maps opened as a file (bpffs lists a map's elements to a
	 * reader: pending requests, the enforcing maps), from the freeze on. bpf(2)'s own ways
	 * to a map (BPF_OBJ_GET, by id) are judged in bpf_map. */
	if (magic == BPF_FS_MAGIC && guard_sealed() &&
	    is_guard_map((struct bpf_map *)inode->i_private))
		return refuse_guard_op(FSGUARD_OP_BPF_MAP);
	if (magic == PROC_SUPER_MAGIC) {
		int r = decide_kcore(file, inode);

		if (r)
			return r;
	}
	if (magic == DEVPTS_SUPER_MAGIC && type == S_IFCHR && is_pty_side(inode)) {
		struct dentry *dentry = file->f_path.dentry;

		return decide_terminal_io(dentry->d_fsdata, dentry);
	}
	/* A named FIFO or a character device node, opened for writing: judged like a file
	 * (a capsule's FIFO is a way into it; its device nodes are part of its tree). */
	if ((type == S_IFIFO && magic != PIPEFS_MAGIC) || type == S_IFCHR) {
		int r;

		if (!write)
			return 0;
		r = decide_sg_write(inode, file->f_path.dentry);
		return r ? r : decide(inode, file->f_path.dentry, FSGUARD_OP_OPEN_WRITE);
	}
	if (type != S_IFREG)
		return 0;
	if (write) {
		int r = decide_kernel_control(file, inode, magic);

		if (r)
			return r;
	}
	if (write || (f_flags & O_TRUNC)) {
		int r = decide(inode, file->f_path.dentry, FSGUARD_OP_OPEN_WRITE);

		return r ? r : decide_cgroup(inode, file->f_path.dentry, FSGUARD_OP_CGROUP);
	}
	return 0;
}

struct capsule_scan {
	__u32 own;
	__u32 found; /* an active capsule with a cgroup, not `own` */
};

static int scan_capsule(__u32 i, void *ctx)
{
	struct capsule_scan *scan = ctx;
	struct fsguard_capsule *c;
	__u32 slot = i;

	if (slot == scan->own)
		return 0;
	c = bpf_map_lookup_elem(&capsules, &slot);
	if (!c || !(c->flags & FSGUARD_CAPSULE_ACTIVE) || !(c->flags & FSGUARD_CAPSULE_HAS_CGROUP))
		return 0;
	scan->found = slot;
	return 1;
}

/* An object whose capsule can't be told (its process gone, too many to look at): refused as
 * a capsule's while a capsule other than the caller's has a cgroup; root outside at level 0
 * aside unless it is `attach`ing. */
static __always_inline int decide_unknown_capsule(struct dentry *dentry, __u32 op, bool attach)
{
	struct capsule_scan others = {};

	if (!attach && current_level() == FSGUARD_LEVEL_MAINTENANCE && current_euid() == 0)
		return 0;
	others.own = current_capsule();
	/* (int): the verifier's inlined bpf_loop sets an error with a 32-bit move. */
	if ((int)bpf_loop(FSGUARD_MAX_CAPSULES, scan_capsule, &others, 0) >= 0 && !others.found)
		return 0;
	return refuse_event(NULL, dentry, 0, others.found, op, FSGUARD_RULE_UNCHECKABLE,
			    current_level(), current_euid());
}

/* The capsule of the process behind a pid (0: none), by its cgroup; *gone when the pid has
 * no task any more (a thread that exited while a descriptor of its /proc file was kept). */
static __always_inline __u32 pid_capsule(struct pid *pid, __u32 *tgid, bool *gone)
{
	struct hlist_node *node = BPF_CORE_READ(pid, tasks[0].first);
	struct task_struct *task;

	*gone = !node;
	if (!node)
		return 0;
	task = (struct task_struct *)((void *)node -
				      bpf_core_field_offset(struct task_struct, pid_links));
	*tgid = BPF_CORE_READ(task, tgid);
	return cgroup_capsule(BPF_CORE_READ(task, cgroups, dfl_cgrp));
}

/* Whether `name` (a /proc/PID file's) is one whose read shows the process's memory or
 * environment: environ, auxv, pagemap and the memory maps. */
static __always_inline bool proc_file_shows_memory(const char *name)
{
	return same_cstr(name, "environ", 8) || same_cstr(name, "auxv", 5) ||
	       same_cstr(name, "pagemap", 8) || same_cstr(name, "maps", 5) ||
	       same_cstr(name, "smaps", 6) || same_cstr(name, "smaps_rollup", 13) ||
	       same_cstr(name, "numa_maps", 10);
}

/*
 * A /proc/PID (or /proc/PID/task/TID) file of a capsule process, read or written through a
 * descriptor, which may have been opened at level 0 or before the seal: what the kernel
 * checked then does not hold now. Writing any of them (mem, oom_score_adj, comm, clear_refs,
 * attr/\*) acts on the process: refused to outside processes at every level. Reading mem is
 * debugging it (the same); reading environ, auxv, pagemap, the memory maps (maps, smaps,
 * smaps_rollup, numa_maps) or a descriptor's fdinfo/N is seeing it (root outside at level 0
 * only). Other reads (stat, status, cmdline: what ps reads) are left alone. The process is
 * found through the pid's task; a thread that has exited has none, while its mem and maps
 * still reach its process's memory: such a file is refused as above (reading it as seeing,
 * writing it or reading mem as debugging) to everybody while a capsule other than the
 * caller's has a cgroup, whose process it may have been.
 */
static __always_inline int decide_proc_file(struct file *file, struct inode *inode, int mask)
{
	struct proc_inode *pi =
		(struct proc_inode *)((void *)inode - bpf_core_field_offset(struct proc_inode, vfs_inode));
	struct pid *pid = BPF_CORE_READ(pi, pid);
	struct dentry *dentry = BPF_CORE_READ(file, f_path.dentry);
	char name[16] = {}, parent[8] = {};
	bool attach = mask & (MAY_WRITE | MAY_APPEND), gone;
	__u32 slot, tgid = 0;

	if (!pid)
		return 0;
	/* By its cgroup: the pid's task is not a pointer the verifier trusts for task storage. */
	slot = pid_capsule(pid, &tgid, &gone);
	if (!gone && (!slot || current_capsule() == slot))
		return 0;
	if (!attach) {
		if (!(mask & MAY_READ))
			return 0;
		bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(dentry, d_name.name));
		bpf_probe_read_kernel_str(parent, sizeof(parent),
					  BPF_CORE_READ(dentry, d_parent, d_name.name));
		if (name[0] == 'm' && name[1] == 'e' && name[2] == 'm' && !name[3])
			attach = true;
		else if (!proc_file_shows_memory(name) && !same_cstr(parent, "fdinfo", 7))
			return 0;
	}
	if (!gone)
		return decide_process_slot(slot, tgid, FSGUARD_OP_PROC_FILE, attach, true);
	return decide_unknown_capsule(dentry, FSGUARD_OP_PROC_FILE, attach);
}

/* Every read, write, fallocate, copy_file_range, splice, sendfile and io_uring write. */
/* fsnotify's permission events (FS_OPEN_PERM, FS_ACCESS_PERM, FS_OPEN_EXEC_PERM). */
#define FS_PERM_EVENTS 0x70000ULL

/*
 * A fanotify or inotify mark (fanotify_mark(2), inotify_add_watch(2)). A permission event
 * holds each open, read or exec of what it marks until the marker answers, and the answer
 * can refuse it: on a capsule's file, or on a mount or filesystem that holds a sealed tree,
 * that is pinning the capsule. fanotify's other events name the process behind each (its pid,
 * the file it opened): seeing it. Both are judged like modifying the marked inode (inside
 * processes, and root outside at level 0, only); a mount or filesystem mark, like one on
 * every sealed tree there. inotify's events name only files: left alone.
 */
SEC("lsm/path_notify")
int BPF_PROG(fsguard_path_notify, const struct path *path, __u64 mask, unsigned int obj_type,
	     int ret)
{
	struct dentry *dentry;
	struct inode *inode;
	__u32 level;

	if (ret)
		return ret;
	if (!(mask & FS_PERM_EVENTS) && !in_syscall(NR_fanotify_mark, NR_ia32_fanotify_mark))
		return 0;
	dentry = path->dentry;
	inode = dentry_inode(dentry);
	if (!inode)
		return 0;
	/* FSNOTIFY_OBJ_TYPE_INODE, but on an overlay, whose inodes are not the sealed layers'
	 * that its opens reach. */
	if (obj_type == 0 && inode->i_sb->s_magic != OVERLAYFS_SUPER_MAGIC)
		return decide(inode, dentry, FSGUARD_OP_WATCH);
	if (inode->i_sb->s_magic != OVERLAYFS_SUPER_MAGIC && fs_without_entries(inode->i_sb->s_dev))
		return 0;
	level = current_level();
	if (level == FSGUARD_LEVEL_MAINTENANCE && current_fsuid() == 0)
		return 0;
	return refuse(NULL, dentry, 0, FSGUARD_OP_WATCH, FSGUARD_RULE_OUTSIDE, level,
		      current_fsuid());
}

SEC("lsm/file_permission")
int BPF_PROG(fsguard_file_permission, struct file *file, int mask, int ret)
{
	struct inode *inode;
	umode_t type;
	__u64 magic;
	int r;

	if (ret)
		return ret;
	/* Read once: each read through a kernel pointer costs a range check of its own. */
	inode = file->f_inode;
	magic = inode->i_sb->s_magic;
	if (magic == PROC_SUPER_MAGIC) {
		r = decide_kcore(file, inode);
		if (!r && (mask & (MAY_WRITE | MAY_APPEND)))
			r = decide_kernel_control(file, inode, magic);
		return r ? r : decide_proc_file(file, inode, mask);
	}
	/* A guard map's pin read as a file through a descriptor opened before the freeze
	 * (file_open refuses new ones). */
	if (magic == BPF_FS_MAGIC && guard_sealed() &&
	    is_guard_map((struct bpf_map *)inode->i_private))
		return refuse_guard_op(FSGUARD_OP_BPF_MAP);
	/* A pty's own side read or written through a descriptor opened before the seal. */
	if (magic == DEVPTS_SUPER_MAGIC && (inode->i_mode & S_IFMT) == S_IFCHR &&
	    is_pty_side(inode)) {
		struct tty_file_private *priv = file->private_data;

		return decide_terminal_io(BPF_CORE_READ(priv, tty), file->f_path.dentry);
	}
	if (!(mask & (MAY_WRITE | MAY_APPEND)))
		return 0;
	type = inode->i_mode & S_IFMT;
	/* A write through a descriptor of a capsule's FIFO opened before the seal. */
	if (type == S_IFIFO && magic != PIPEFS_MAGIC)
		return decide(inode, file->f_path.dentry, FSGUARD_OP_WRITE);
	if (type != S_IFREG) {
		/* A block device or a SCSI generic device opened for writing before level 2. */
		r = decide_sg_write(inode, file->f_path.dentry);
		return r ? r : decide_blockdev(inode, file->f_path.dentry);
	}
	/* A control file opened for writing before the level that refuses it. */
	r = decide_kernel_control(file, inode, magic);
	if (r)
		return r;
	r = decide(inode, file->f_path.dentry, FSGUARD_OP_WRITE);
	return r ? r : decide_cgroup(inode, file->f_path.dentry, FSGUARD_OP_CGROUP);
}

/* ---------------------------------------------------------------- the exec rule */

/*
 * Whether entry `e` (hit) holds code that capsule `me` (flags `mine`) may run: code nobody
 * outside can change. Its own entries (under --exec sealed, only those of its sealed
 * manifest: made by its sealer's requests, before its completion); or a sealed entry of a
 * base it names (FSGUARD_REQ_EXEC_TRUST), completed, untainted, with nobody inside.
 */
static __always_inline bool exec_trusted(__u32 me, __u32 mine, struct entry *e)
{
	bool sealed_entry = (e->v.flags & FSGUARD_INODE_CLAIMED) && !e->implicit;
	__u32 base = e->v.capsule;
	struct fsguard_capsule *b;
	__u64 key;

	if (e->unknown_dir || (e->v.flags & FSGUARD_INODE_BACKING))
		return false;
	if (base == me)
		return !(mine & FSGUARD_CAPSULE_EXEC_SEALED) || sealed_entry;
	if (!sealed_entry || base == 0 || base >= FSGUARD_MAX_CAPSULES)
		return false;
	key = exec_trust_key(me, base);
	if (!bpf_map_lookup_elem(&exec_trust, &key))
		return false;
	b = bpf_map_lookup_elem(&capsules, &base);
	return b && (b->flags & (FSGUARD_CAPSULE_ACTIVE | FSGUARD_CAPSULE_COMPLETE |
				 FSGUARD_CAPSULE_TAINTED | FSGUARD_CAPSULE_HAS_CGROUP)) ==
			    (FSGUARD_CAPSULE_ACTIVE | FSGUARD_CAPSULE_COMPLETE);
}

/* The completed capsule the current process is inside, with its flags; 0 when none (outside
 * every capsule, or in one still being sealed: the rule holds once its tree is in). */
static __always_inline __u32 exec_ruled(__u32 *flags)
{
	__u32 me = current_capsule();
	struct fsguard_capsule *c;

	if (!me)
		return 0;
	c = bpf_map_lookup_elem(&capsules, &me);
	if (!c || !(c->flags & FSGUARD_CAPSULE_COMPLETE))
		return 0;
	*flags = c->flags;
	return me;
}

/* Inside a completed capsule, running `file`'s code (op: executing it, mapping it
 * executable): refused unless exec_trusted. */
static __always_inline int decide_exec(struct file *file, __u32 op)
{
	struct dentry *dentry = file->f_path.dentry;
	struct entry e = {};
	__u32 me, flags = 0;

	me = exec_ruled(&flags);
	if (!me)
		return 0;
	look_up_named(file->f_inode, dentry, &e);
	if (e.hit && !(flags & FSGUARD_CAPSULE_TAINTED) && exec_trusted(me, flags, &e))
		return 0;
	if (!e.valid)
		inode_key(file->f_inode, &e.key);
	return refuse(&e.key, dentry, me, op, FSGUARD_RULE_EXEC_UNSEALED, current_level(),
		      current_fsuid());
}

/* Inside a completed capsule under --exec sealed (or tainted): memory made executable that
 * is no sealed file's (anonymous, or a private mapping's own pages) is refused. */
static __always_inline int decide_anon_exec(__u32 op)
{
	__u32 me, flags = 0;

	me = exec_ruled(&flags);
	if (!me || !(flags & (FSGUARD_CAPSULE_EXEC_SEALED | FSGUARD_CAPSULE_TAINTED)))
		return 0;
	return refuse(NULL, NULL, me, op, FSGUARD_RULE_EXEC_UNSEALED, current_level(),
		      current_fsuid());
}

/* execve(2) and execveat(2): the file about to run, and each interpreter in turn (a script's,
 * binfmt_misc's). The ELF interpreter and libraries are mapped: see mmap_file. */
SEC("lsm/bprm_check_security")
int BPF_PROG(fsguard_bprm_check_security, struct linux_binprm *bprm, int ret)
{
	if (ret)
		return ret;
	return decide_exec(bprm->file, FSGUARD_OP_EXEC);
}

SEC("lsm/mmap_file")
int BPF_PROG(fsguard_mmap_file, struct file *file, unsigned long reqprot, unsigned long prot,
	     unsigned long flags, int ret)
{
	int r;

	if (ret)
		return ret;
	/* Code mapped in (the main program, the ELF interpreter, libraries): the exec rule; a
	 * writable and executable mapping is the capsule's own code (--exec sealed). */
	if (prot & PROT_EXEC) {
		r = file ? decide_exec(file, FSGUARD_OP_MMAP_EXEC) : 0;
		if (!r && (!file || (prot & PROT_WRITE)))
			r = decide_anon_exec(FSGUARD_OP_MMAP_EXEC);
		if (r)
			return r;
	}
	if (!file || !(flags & MAP_SHARED) || !(prot & PROT_WRITE))
		return 0;
	if (decide_blockdev(file->f_inode, file->f_path.dentry))
		return -EPERM;
	return decide(file->f_inode, file->f_path.dentry, FSGUARD_OP_MMAP_SHARED_WRITE);
}

SEC("lsm/file_mprotect")
int BPF_PROG(fsguard_file_mprotect, struct vm_area_struct *vma, unsigned long reqprot,
	     unsigned long prot, int ret)
{
	struct file *file;
	int r;

	if (ret)
		return ret;
	/* Made executable, or writable and executable: as mapped so (a private mapping with
	 * pages of its own, or writable, holds the capsule's code, not the file's). */
	if ((prot & PROT_EXEC) && (!(vma->vm_flags & VM_EXEC) || (prot & PROT_WRITE))) {
		file = vma->vm_file;
		r = file && !(vma->vm_flags & VM_EXEC) ? decide_exec(file, FSGUARD_OP_MPROTECT_EXEC) : 0;
		if (!r && (!file || vma->anon_vma || (prot & PROT_WRITE)))
			r = decide_anon_exec(FSGUARD_OP_MPROTECT_EXEC);
		if (r)
			return r;
	}
	if (!(prot & PROT_WRITE) || !(vma->vm_flags & VM_SHARED))
		return 0;
	file = vma->vm_file;
	if (!file)
		return 0;
	/* A protected block device mapped read-only, then made writable (level 2). */
	if (decide_blockdev(file->f_inode, file->f_path.dentry))
		return -EPERM;
	return decide(file->f_inode, file->f_path.dentry, FSGUARD_OP_MPROTECT_SHARED_WRITE);
}

/* truncate(2) and ftruncate(2). */
SEC("lsm/path_truncate")
int BPF_PROG(fsguard_path_truncate, const struct path *path, int ret)
{
	if (ret)
		return ret;
	return decide(dentry_inode(path->dentry), path->dentry, FSGUARD_OP_TRUNCATE);
}

/* chmod, chown, utimes, truncate through setattr. */
SEC("lsm/inode_setattr")
int BPF_PROG(fsguard_inode_setattr, struct dentry *dentry, struct iattr *attr, int ret)
{
	if (ret)
		return ret;
	int r = decide(dentry_inode(dentry), dentry, FSGUARD_OP_SETATTR);

	return r ? r : decide_cgroup(dentry_inode(dentry), dentry, FSGUARD_OP_CGROUP);
}

SEC("lsm/inode_setxattr")
int BPF_PROG(fsguard_inode_setxattr, struct user_namespace *mnt_userns, struct dentry *dentry,
	     const char *name, const void *value, size_t size, int flags, int ret)
{
	if (ret)
		return ret;
	int r = decide(dentry_inode(dentry), dentry, FSGUARD_OP_SETXATTR);

	return r ? r : decide_cgroup(dentry_inode(dentry), dentry, FSGUARD_OP_CGROUP);
}

SEC("lsm/inode_removexattr")
int BPF_PROG(fsguard_inode_removexattr, struct user_namespace *mnt_userns, struct dentry *dentry,
	     const char *name, int ret)
{
	if (ret)
		return ret;
	int r = decide(dentry_inode(dentry), dentry, FSGUARD_OP_REMOVEXATTR);

	return r ? r : decide_cgroup(dentry_inode(dentry), dentry, FSGUARD_OP_CGROUP);
}

SEC("lsm/inode_create")
int BPF_PROG(fsguard_inode_create, struct inode *dir, struct dentry *dentry, umode_t mode, int ret)
{
	if (ret)
		return ret;
	return decide_dir(dir, dentry, FSGUARD_OP_CREATE);
}

SEC("lsm/inode_mkdir")
int BPF_PROG(fsguard_inode_mkdir, struct inode *dir, struct dentry *dentry, umode_t mode, int ret)
{
	int r;

	if (ret)
		return ret;
	r = decide_dir(dir, dentry, FSGUARD_OP_CREATE);
	return r ? r : decide_cgroup(dir, dentry, FSGUARD_OP_CGROUP);
}

SEC("lsm/inode_mknod")
int BPF_PROG(fsguard_inode_mknod, struct inode *dir, struct dentry *dentry, umode_t mode,
	     dev_t dev, int ret)
{
	if (ret)
		return ret;
	return decide_dir(dir, dentry, FSGUARD_OP_CREATE);
}

SEC("lsm/inode_symlink")
int BPF_PROG(fsguard_inode_symlink, struct inode *dir, struct dentry *dentry,
	     const char *old_name, int ret)
{
	if (ret)
		return ret;
	return decide_dir(dir, dentry, FSGUARD_OP_CREATE);
}

/* A new name for an inode: refused when the directory or the inode is protected. */
SEC("lsm/inode_link")
int BPF_PROG(fsguard_inode_link, struct dentry *old_dentry, struct inode *dir,
	     struct dentry *new_dentry, int ret)
{
	struct inode *inode = dentry_inode(old_dentry);
	struct caller me = {};
	struct entry e = {};
	int r;

	if (ret)
		return ret;
	r = decide_dir(dir, new_dentry, FSGUARD_OP_LINK);
	if (r)
		return r;
	look_up_named(inode, old_dentry, &e);
	r = decide_entry(&me, &e, old_dentry, FSGUARD_OP_LINK);
	if (r)
		return r;
	/* A file protected through its one name gets a second: it needs its own entry now, since
	 * the new name's directory may be another capsule's, or none. */
	if (e.implicit)
		return adopt(&e, inode, dir, new_dentry, FSGUARD_OP_LINK,
			     e.overruled ? BPF_ANY : BPF_NOEXIST);
	if (e.hit && !e.unknown_dir)
		return 0;
	/* An inside process linking an outside file into its tree: it is now part of it. */
	return inherit(inode, dir, new_dentry, FSGUARD_OP_LINK);
}

SEC("lsm/inode_unlink")
int BPF_PROG(fsguard_inode_unlink, struct inode *dir, struct dentry *dentry, int ret)
{
	struct inode *victim = dentry_inode(dentry);
	struct entry d = {}, v = {};
	struct caller me = {};
	int r;

	if (ret)
		return ret;
	look_up(dir, &d);
	if (!d.fs_clean) {
		look_up(victim, &v);
		named_in(&v, &d);
	}
	r = decide_removal(&me, &d, &v, dentry, FSGUARD_OP_UNLINK);
	if (r)
		return r;
	r = decide_entry(&me, &v, dentry, FSGUARD_OP_UNLINK);
	if (r)
		return r;
	release_if_last_link(victim, &v);
	return 0;
}

SEC("lsm/inode_rmdir")
int BPF_PROG(fsguard_inode_rmdir, struct inode *dir, struct dentry *dentry, int ret)
{
	struct inode *victim = dentry_inode(dentry);
	struct entry d = {}, v = {};
	struct caller me = {};
	int r;

	if (ret)
		return ret;
	look_up(dir, &d);
	look_up(victim, &v);
	r = decide_removal(&me, &d, &v, dentry, FSGUARD_OP_RMDIR);
	if (r)
		return r;
	r = decide_entry(&me, &v, dentry, FSGUARD_OP_RMDIR);
	if (r)
		return r;
	r = decide_cgroup(victim, dentry, FSGUARD_OP_CGROUP);
	if (r)
		return r;
	return decide_ancestor(victim, dentry, FSGUARD_OP_RMDIR);
}

/*
 * Removing the name of `victim` from `dir` in a rename, and the victim itself, looked up into
 * `v` (zeroed by the caller). `d` holds the directory's entry: looked up here unless `known`
 * (the other side's directory, the same inode).
 */
static __always_inline int decide_rename_side(struct caller *me, struct inode *dir,
					      struct entry *d, bool known, struct inode *victim,
					      struct dentry *dentry, struct entry *v)
{
	int r;

	if (!known)
		look_up(dir, d);
	if (!d->fs_clean) {
		look_up(victim, v);
		if (victim && !is_dir(victim))
			named_in(v, d);
	}
	r = decide_removal(me, d, v, dentry, FSGUARD_OP_RENAME);
	return r ? r : decide_entry(me, v, dentry, FSGUARD_OP_RENAME);
}

/*
 * Rename within, out of, into (replacing) and exchange: both directories, the moved inode
 * and a replaced one must all be modifiable. RENAME_EXCHANGE calls this hook twice, once
 * each way. Each inode is looked up once (the new directory again when an unprotected
 * inode moves into a capsule's); only copies (the directory's entry, booleans), no map value
 * pointers, are carried from one side to the next, which keeps the verifier's states few.
 */
SEC("lsm/inode_rename")
int BPF_PROG(fsguard_inode_rename, struct inode *old_dir, struct dentry *old_dentry,
	     struct inode *new_dir, struct dentry *new_dentry, int ret)
{
	struct inode *moved = dentry_inode(old_dentry);
	struct inode *replaced = dentry_inode(new_dentry);
	struct entry dir = {}, m = {}, rep = {};
	struct caller me = {};
	bool new_dir_protected;
	int r;

	if (ret)
		return ret;
	r = decide_rename_side(&me, old_dir, &dir, false, moved, old_dentry, &m);
	if (r)
		return r;
	/* Within one directory (the common case: a temporary file renamed into place) its entry
	 * is looked up once, and its decision taken once (the caller's memo). */
	r = decide_rename_side(&me, new_dir, &dir, new_dir == old_dir, replaced, new_dentry, &rep);
	if (r)
		return r;
	new_dir_protected = dir.hit;
	r = decide_cgroup(moved, old_dentry, FSGUARD_OP_CGROUP);
	if (r)
		return r;
	r = decide_ancestor(moved, old_dentry, FSGUARD_OP_RENAME);
	if (r)
		return r;
	r = decide_ancestor(replaced, new_dentry, FSGUARD_OP_RENAME);
	if (r)
		return r;
	/* A file protected through its directory, moving to another: it needs its own entry now,
	 * or it would take the new directory's protection (or none) along. */
	if (m.implicit)
		return new_dir == old_dir ? 0 :
			adopt(&m, moved, new_dir, new_dentry, FSGUARD_OP_RENAME,
			      m.overruled ? BPF_ANY : BPF_NOEXIST);
	/* Already some capsule's: it stays that capsule's. Into no capsule's: nothing to do. */
	if (m.hit || !new_dir_protected)
		return 0;
	/*
	 * A directory from outside every capsule moving in: inheriting would adopt the directory
	 * but nothing below it, which outside processes could then still modify. Refuse it as a
	 * move across filesystems, so that mv(1) and the like copy it instead (the copies are
	 * created inside, so they join the capsule).
	 */
	if (is_dir(moved))
		return -EXDEV;
	return inherit(moved, new_dir, new_dentry, FSGUARD_OP_RENAME);
}

/* Block device ioctls that only read the device's properties (include/uapi/linux/fs.h,
 * blkzoned.h, hdreg.h, cdrom.h; 32-bit variants of the sized ones included). */
static __always_inline bool blockdev_query(unsigned int cmd)
{
	switch (cmd) {
	case 0x125e:		/* BLKROGET */
	case 0x1260:		/* BLKGETSIZE */
	case 0x1261:		/* BLKFLSBUF (writes back what is cached, changes nothing) */
	case 0x1263:		/* BLKRAGET */
	case 0x1265:		/* BLKFRAGET */
	case 0x1267:		/* BLKSECTGET */
	case 0x1268:		/* BLKSSZGET */
	case 0x1278:		/* BLKIOMIN */
	case 0x1279:		/* BLKIOOPT */
	case 0x127a:		/* BLKALIGNOFF */
	case 0x127b:		/* BLKPBSZGET */
	case 0x127c:		/* BLKDISCARDZEROES */
	case 0x127e:		/* BLKROTATIONAL */
	case 0x80081270:	/* BLKBSZGET */
	case 0x80041270:
	case 0x80081272:	/* BLKGETSIZE64 */
	case 0x80041272:
	case 0x80081280:	/* BLKGETDISKSEQ */
	case 0xc0101282:	/* BLKREPORTZONE */
	case 0x80041284:	/* BLKGETZONESZ */
	case 0x80041285:	/* BLKGETNRZONES */
	case 0x0301:		/* HDIO_GETGEO */
	case 0x0002:		/* FIGETBSZ */
	case 0x5331:		/* CDROM_GET_CAPABILITY (udev asks every disk) */
	case 0x4c03:		/* LOOP_GET_STATUS */
	case 0x4c05:		/* LOOP_GET_STATUS64 (which file backs a loop device) */
	case 0x4c01:		/* LOOP_CLR_FD: a loop device lets go of its backing file */
		return true;
	}
	return false;
}

/*
 * Level 2, on any device: commands that build a block device over others or change one
 * (which the kernel then opens or writes itself, unhooked: device-mapper's commands but its
 * queries, among them a table load and the resume that swaps in a table loaded earlier; an
 * md array's commands but its queries; a loop device's but its status), or that pass
 * commands to a disk past the block layer (SG_IO and SCSI_IOCTL_SEND_COMMAND, NVMe's
 * commands but NVME_IOCTL_ID, ATA taskfiles, CD packets), whether from a character device
 * (sg, bsg, NVMe's) or from another partition of the disk, with absolute sector numbers:
 * which sectors such a command reaches can't be told here. Or that add a device to a
 * mounted btrfs (asked of any of its files). Compat (32-bit) numbers differ
 * only in size bits, which none of these tests look at but SG_IO's and the ATA ones.
 */
static __always_inline bool stacks_or_passes_through(unsigned int cmd, umode_t type)
{
	unsigned int kind = (cmd >> 8) & 0xff, nr = cmd & 0xff;

	if (kind == 0xfd)		/* device-mapper: DM_VERSION, LIST_DEVICES, DEV_STATUS,
					 * DEV_WAIT, TABLE_DEPS, TABLE_STATUS, LIST_VERSIONS,
					 * DEV_ARM_POLL, GET_TARGET_VERSION are queries */
		return nr != 0 && nr != 2 && nr != 7 && nr != 8 && nr != 11 && nr != 12 &&
		       nr != 13 && nr != 16 && nr != 17;
	if (kind == 0x94)		/* btrfs: adding a device, replacing one (by path) */
		return nr == 10 || nr == 53;
	if (type != S_IFBLK && type != S_IFCHR)
		return false;		/* the others are device commands (1 is FIBMAP on files) */
	if (kind == 9)			/* md (MD_MAJOR), but its queries */
		return nr != 0x10 && nr != 0x11 && nr != 0x12 && nr != 0x15;
	if (kind == 'L' && type == S_IFBLK) /* a loop device, but LOOP_CLR_FD, LOOP_GET_STATUS(64) */
		return nr < 0x80 && nr != 0x01 && nr != 0x03 && nr != 0x05;
	if (cmd == 0x2285 || cmd == 1)	/* SG_IO, SCSI_IOCTL_SEND_COMMAND */
		return true;
	if (cmd == 0x031d || cmd == 0x031e || cmd == 0x031f) /* HDIO_DRIVE_TASKFILE, _TASK, _CMD */
		return true;
	if (cmd == 0x5393)		/* CDROM_SEND_PACKET */
		return true;
	return kind == 'N' && nr != 0x40; /* NVMe, but NVME_IOCTL_ID */
}

/*
 * The file behind descriptor `fd` of the caller, for a look at what a bpf(2) call or an ioctl names
 * by descriptor. Exact only while nobody but the caller can change its descriptor table (not
 * shared: the caller is in this system call until the kernel looks the descriptor up again);
 * otherwise, or when the slot can't be read, NULL with *unsure set.
 */
static __always_inline struct file *caller_file(__u32 fd, bool *unsure)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct file *file = NULL;
	struct file **fds;

	if (BPF_CORE_READ(task, files, count.counter) != 1) {
		*unsure = true;
		return NULL;
	}
	if (fd >= BPF_CORE_READ(task, files, fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(task, files, fdt, fd);
	if (!fds || bpf_probe_read_kernel(&file, sizeof(file), fds + fd)) {
		*unsure = true;
		return NULL;
	}
	return file;
}

/*
 * LOOP_SET_FD, LOOP_CHANGE_FD, LOOP_CONFIGURE: a loop device reads and writes its backing
 * file with no hook of its own, so a backing file opened for writing before its seal would
 * be written past every rule. From level 1 on, binding a writable one that a capsule the
 * caller is not inside protects (its own entry, or the directory it is named in) is refused,
 * as is any binding whose descriptor can't be looked at exactly (a shared descriptor table).
 * LOOP_CONFIGURE's descriptor is in memory the kernel reads after this hook (another task
 * may change it, or it may not be paged in yet): refused with EINVAL, on which losetup falls
 * back to LOOP_SET_FD. Level 2 refuses them all.
 */
static __always_inline int decide_loop_backing(struct file *lo, unsigned int cmd,
					       unsigned long arg, __u32 level)
{
	struct fsguard_inode_key key = {};
	struct fsguard_inode_value *v;
	struct fsguard_capsule *c;
	struct dentry *dentry;
	struct file *backing;
	struct inode *inode;
	bool unsure = false;
	__u32 fd = (__u32)arg;

	if (cmd != 0x4C00 && cmd != 0x4C06 && cmd != 0x4C0A)
		return 0;
	/* From the freeze on (a raise above 0 looks at the bindings after it, then raises). */
	if (level < FSGUARD_LEVEL_SEALED && !is_frozen(&config))
		return 0;
	if (cmd == 0x4C0A) {
		refuse(NULL, lo->f_path.dentry, 0, FSGUARD_OP_WRITE, FSGUARD_RULE_UNCHECKABLE,
		       level, current_fsuid());
		return -EINVAL;
	}
	backing = caller_file(fd, &unsure);
	if (!backing)
		return unsure ? refuse(NULL, lo->f_path.dentry, 0, FSGUARD_OP_WRITE,
				       FSGUARD_RULE_UNCHECKABLE, level, current_fsuid())
			      : 0;
	if (!(BPF_CORE_READ(backing, f_mode) & FMODE_WRITE))
		return 0;
	inode = BPF_CORE_READ(backing, f_inode);
	dentry = BPF_CORE_READ(backing, f_path.dentry);
	key.dev = BPF_CORE_READ(inode, i_sb, s_dev);
	key.ino = BPF_CORE_READ(inode, i_ino);
	v = bpf_map_lookup_elem(&inodes, &key);
	if (!v) {
		/* Protected through the directory it is named in (not an append-only one). */
		struct fsguard_inode_key dir = {};
		struct inode *parent = BPF_CORE_READ(dentry, d_parent, d_inode);

		dir.dev = BPF_CORE_READ(parent, i_sb, s_dev);
		dir.ino = BPF_CORE_READ(parent, i_ino);
		v = bpf_map_lookup_elem(&inodes, &dir);
		if (v && (v->flags & FSGUARD_INODE_APPEND_ONLY))
			v = NULL;
	}
	if (!v)
		return 0;
	c = bpf_map_lookup_elem(&capsules, &v->capsule);
	if (c && is_inside(c) && !(v->flags & FSGUARD_INODE_FROZEN))
		return 0;
	return refuse(&key, dentry, v->capsule, FSGUARD_OP_WRITE,
		      (v->flags & FSGUARD_INODE_FROZEN) ? FSGUARD_RULE_FROZEN : FSGUARD_RULE_OUTSIDE,
		      level, current_fsuid());
}

/*
 * A seccomp user-notification listener (whoever holds it answers the filtered processes'
 * system calls: RECV reads a call's arguments, SEND forges its result, ADDFD puts a file in
 * the caller's descriptor table). The kernel ties a listener to a filter, not to processes:
 * the pending notifications name the callers. While one of them is another capsule's process,
 * answering is attaching to it (refused at every level) and receiving is seeing it; more
 * pending than looked at counts as another capsule's while one has a cgroup. A RECV that
 * waits before a capsule process's call arrives can't be judged (see the README's limits).
 */
#define FSGUARD_SECCOMP_PENDING_SCAN 16
static __always_inline int decide_seccomp_listener(struct file *file, unsigned int cmd)
{
	struct seccomp_filter *filter = file->private_data;
	struct notification *notif = BPF_CORE_READ(filter, notif);
	struct list_head *head, *node;
	struct capsule_scan others = {};
	__u32 own = current_capsule(), tgid = 0, slot = 0;
	char name[16] = {};
	int i;

	bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(file, f_path.dentry, d_name.name));
	if (!notif || !same_cstr(name, "seccomp notify", 15))
		return 0;
	head = (struct list_head *)((void *)notif + bpf_core_field_offset(struct notification,
									  notifications));
	node = BPF_CORE_READ(head, next);
	for (i = 0; i < FSGUARD_SECCOMP_PENDING_SCAN && node && node != head; i++) {
		struct seccomp_knotif *k = (struct seccomp_knotif *)((void *)node -
			bpf_core_field_offset(struct seccomp_knotif, list));
		struct task_struct *task = BPF_CORE_READ(k, task);
		__u32 s = cgroup_capsule(BPF_CORE_READ(task, cgroups, dfl_cgrp));

		if (s && s != own) {
			slot = s;
			tgid = BPF_CORE_READ(task, tgid);
			break;
		}
		node = BPF_CORE_READ(node, next);
	}
	/* More pending than looked at, or a link that could not be read (never NULL in a
	 * kernel list): unknown. */
	if (!slot && node != head) {
		others.own = own;
		/* (int): the verifier's inlined bpf_loop sets an error with a 32-bit move. */
		if ((int)bpf_loop(FSGUARD_MAX_CAPSULES, scan_capsule, &others, 0) < 0 || others.found)
			return refuse(NULL, file->f_path.dentry, others.found, FSGUARD_OP_PTRACE_ATTACH,
				      FSGUARD_RULE_UNCHECKABLE, current_level(), current_fsuid());
		return 0;
	}
	return decide_process_slot(slot, tgid, FSGUARD_OP_PTRACE_ATTACH, cmd != 0xc0502100, true);
}

/* Walk of the processes in a session or process group (the kernel links each thread group's
 * leader into its session's and group's pid): the first capsule's slot among them. */
struct member_walk {
	struct hlist_node *node;
	struct pid *pid; /* whose list */
	__u64 link;      /* offset of the list's link in task_struct */
	int type;
	__u32 own; /* the caller's capsule: its members are not looked for */
	__u32 slot;
	__u32 tgid;
	bool derailed;
};

/* Bound of a walk: a longer session or group counts as unknown (fail closed). */
#define FSGUARD_MAX_MEMBERS 1024

static int walk_member(__u32 i, void *ctx)
{
	struct member_walk *w = ctx;
	/* A local first: a relocated read through `w` would relocate member_walk too. */
	struct hlist_node *node = w->node;
	int type = w->type;
	struct task_struct *task;

	if (!node)
		return 1;
	task = (struct task_struct *)((void *)node - w->link);
	/* A task moved to another session or group meanwhile (setsid, setpgid) has its link
	 * taken out and put at the head of the new list at once: a walk on it would go on in
	 * the wrong list. Such a walk ends as not knowing (fail closed). */
	if (type && BPF_CORE_READ(task, signal, pids[type]) != w->pid) {
		w->derailed = true;
		return 1;
	}
	w->slot = cgroup_capsule(BPF_CORE_READ(task, cgroups, dfl_cgrp));
	if (w->slot && w->slot != w->own) {
		w->tgid = BPF_CORE_READ(task, tgid);
		return 1;
	}
	w->slot = 0;
	w->node = BPF_CORE_READ(node, next);
	return 0;
}

/* The capsule, other than the caller's, of a process among the tasks of `pid` as a process
 * (PIDTYPE_PID, 0: a session's leader), a process group (PIDTYPE_PGID, 2) or a session
 * (PIDTYPE_SID, 3): 0 none, FSGUARD_MAX_CAPSULES when they could not all be looked at. By
 * every member, not the leader: a leader may have exited or be outside while a capsule's
 * process is the one whose terminal this is. */
static __always_inline __u32 members_capsule(struct pid *pid, int type, __u32 *tgid)
{
	struct member_walk w = {};

	if (!pid)
		return 0;
	w.pid = pid;
	w.type = type;
	w.own = current_capsule();
	/* The kernel's hlist_node (this header declares only `next`). */
	w.link = bpf_core_field_offset(struct task_struct, pid_links) +
		 type * bpf_core_type_size(struct hlist_node);
	w.node = BPF_CORE_READ(pid, tasks[type].first);
	/* (int): the verifier's inlined bpf_loop sets an error with a 32-bit move. */
	if ((int)bpf_loop(FSGUARD_MAX_MEMBERS, walk_member, &w, 0) < 0 || w.derailed ||
	    (!w.slot && w.node))
		return FSGUARD_MAX_CAPSULES;
	*tgid = w.tgid;
	return w.slot;
}

/* Whose a terminal is, for what is done to it: a hangup or a theft reaches every member of
 * its session; a new size, new settings or a flush reach its foreground group; reading it
 * takes what is typed for its session's leader and foreground group. */
enum tty_reach {
	TTY_SESSION,
	TTY_FOREGROUND,
	TTY_IO,
};

/* The capsule (other than the caller's) that a terminal reaches as `reach` says, 0: none
 * (FSGUARD_MAX_CAPSULES: not known). */
static __always_inline __u32 tty_capsule(struct tty_struct *tty, enum tty_reach reach,
					 __u32 *tgid)
{
	__u32 slot;

	if (!tty)
		return 0;
	slot = reach == TTY_FOREGROUND ? 0 :
	       members_capsule(BPF_CORE_READ(tty, ctrl.session), reach == TTY_IO ? 0 : 3, tgid);
	return slot ? slot : members_capsule(BPF_CORE_READ(tty, ctrl.pgrp), 2, tgid);
}

/* The decision on a terminal that reaches capsule `slot`: as a signal (root outside at level
 * 0 only); a terminal whose members could not all be looked at, as a capsule's while one
 * other than the caller's has a cgroup. */
static __always_inline int decide_tty_slot(__u32 slot, __u32 tgid, struct dentry *dentry,
					   __u32 op)
{
	if (slot != FSGUARD_MAX_CAPSULES)
		return decide_process_slot(slot, tgid, op, false, true);
	return decide_unknown_capsule(dentry, op, false);
}

/*
 * A terminal hung up (TIOCVHANGUP, or vhangup(2) once TIOCSCTTY took it as the caller's own):
 * its session leader gets SIGHUP, every member of its session loses it as controlling
 * terminal, and its open files stop working. On a terminal whose session holds a capsule's
 * process (at either end of a pty), that is signalling the capsule: root outside at level 0
 * only. On the terminal's own side, the ioctls that change it (changes_terminal) reach its
 * foreground group. A character device that is not a terminal has no tty_file_private: what
 * is read through it names no capsule.
 */
static __always_inline int decide_capsule_tty(struct file *file, enum tty_reach reach)
{
	struct tty_file_private *priv = file->private_data;
	struct tty_struct *tty = BPF_CORE_READ(priv, tty);
	__u32 tgid = 0, slot;

	slot = tty_capsule(tty, reach, &tgid);
	if (!slot && tty && reach == TTY_SESSION)
		slot = tty_capsule(BPF_CORE_READ(tty, link), reach, &tgid);
	return decide_tty_slot(slot, tgid, file->f_path.dentry, FSGUARD_OP_SIGNAL);
}

/*
 * A pty's own side (/dev/pts/N) opened, read or written by an outside process while its
 * session's leader or its foreground group is a capsule's: a read takes what is typed for the
 * capsule (passwords included), a write puts words in its mouth. Seeing it: root outside at
 * level 0 only. At open the terminal is the devpts dentry's (d_fsdata), later the file's.
 */
static __always_inline bool is_pty_side(struct inode *inode)
{
	__u32 major = inode->i_rdev >> 20;

	return major >= UNIX98_PTY_SLAVE_MAJOR &&
	       major < UNIX98_PTY_SLAVE_MAJOR + UNIX98_PTY_MAJOR_COUNT;
}

static __always_inline int decide_terminal_io(struct tty_struct *tty, struct dentry *dentry)
{
	__u32 tgid = 0, slot = tty_capsule(tty, TTY_IO, &tgid);

	return decide_tty_slot(slot, tgid, dentry, FSGUARD_OP_TERMINAL);
}

/* TCSETS, TCSETSW, TCSETSF, TCSETA, TCSETAW, TCSETAF, TCSBRK, TCXONC, TCFLSH, TIOCEXCL,
 * TIOCSWINSZ, TIOCMBIS, TIOCMBIC, TIOCMSET (modem lines: a dropped DTR hangs a line up),
 * TIOCSSOFTCAR, TIOCCONS (console output redirected into it), TIOCSETD, TCSBRKP, TIOCSBRK,
 * TIOCSLCKTRMIOS, and TCSETS2, TCSETSW2, TCSETSF2 (any size: termios2 is an _IOW struct). */
static __always_inline bool changes_terminal(unsigned int cmd)
{
	__u32 nr = cmd & 0xffff;

	return (cmd >= 0x5402 && cmd <= 0x5404) || (cmd >= 0x5406 && cmd <= 0x540C) ||
	       cmd == 0x5414 || (cmd >= 0x5416 && cmd <= 0x5418) || cmd == 0x541A ||
	       cmd == 0x541D || cmd == 0x5423 || cmd == 0x5425 || cmd == 0x5427 ||
	       cmd == 0x5457 || nr == 0x542B || nr == 0x542C || nr == 0x542D;
}

static __always_inline int decide_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	__u32 level = current_level();
	umode_t type;

	type = file->f_inode ? file->f_inode->i_mode & S_IFMT : 0;
	/* From level 1 on, no terminal is made to type (TIOCSTI: input to whatever reads it, a
	 * capsule's shell included; TIOCLINUX, whose selection paste does the same on a virtual
	 * console) or to signal its foreground processes (TIOCSIG on a pty's master: the
	 * kernel's own signal, which task_kill never sees). */
	if (type == S_IFCHR && (cmd == 0x5412 || cmd == 0x541C || cmd == 0x40045436) &&
	    level >= FSGUARD_LEVEL_SEALED)
		return refuse(NULL, file->f_path.dentry, 0, FSGUARD_OP_SIGNAL, FSGUARD_RULE_SEE,
			      level, current_fsuid());
	/* SECCOMP_IOCTL_NOTIF_RECV, _SEND, _ADDFD on a listener of capsule processes' calls. */
	if ((cmd == 0xc0502100 || cmd == 0xc0182101 || (cmd & 0xffff) == 0x2103) &&
	    file->f_inode && file->f_inode->i_sb->s_magic == ANON_INODE_FS_MAGIC)
		return decide_seccomp_listener(file, cmd);
	/* TIOCVHANGUP, and TIOCSCTTY (which takes a terminal from its session when its argument,
	 * an int to the kernel, is 1: any), on a capsule's terminal: a hangup signals its session
	 * and foreground group. */
	if (type == S_IFCHR && (cmd == 0x5437 || cmd == 0x540E))
		return decide_capsule_tty(file, TTY_SESSION);
	/* The same on the terminal's own side (not a pty's master, whose holder owns the
	 * terminal): a new size signals its foreground group (SIGWINCH, the kernel's own), and
	 * its settings, line discipline, flow, buffers, exclusivity and breaks are the capsule's
	 * input and output. */
	if (type == S_IFCHR && changes_terminal(cmd))
		return decide_capsule_tty(file, TTY_FOREGROUND);
	/* FIFREEZE (every writer on the filesystem waits until it is thawed: its capsules
	 * pinned) and FS_IOC_SHUTDOWN (nothing written any more, the latest writes lost) on a
	 * filesystem holding a sealed tree: root outside at level 0 only (not even a capsule's
	 * own processes: the filesystem is every capsule's there). */
	if ((cmd == 0xc0045877 || cmd == 0x8004587d) && file->f_inode &&
	    !fs_without_entries(file->f_inode->i_sb->s_dev) &&
	    (level != FSGUARD_LEVEL_MAINTENANCE || current_fsuid() != 0))
		return refuse(NULL, file->f_path.dentry, 0, FSGUARD_OP_IOCTL_SETFLAGS,
			      FSGUARD_RULE_OUTSIDE, level, current_fsuid());
	/* XFS_IOC_ATTRMULTI_BY_HANDLE (any size: 32-bit callers' struct differs) sets and
	 * removes extended attributes of any inode of the filesystem named by a file handle,
	 * with no open of it and no setxattr hook: on a filesystem holding a sealed tree, root
	 * outside at level 0 only. */
	if ((cmd & 0xffff) == 0x587b && file->f_inode &&
	    file->f_inode->i_sb->s_magic == XFS_SUPER_MAGIC &&
	    !fs_without_entries(file->f_inode->i_sb->s_dev) &&
	    (level != FSGUARD_LEVEL_MAINTENANCE || current_fsuid() != 0))
		return refuse(NULL, file->f_path.dentry, 0, FSGUARD_OP_SETXATTR,
			      FSGUARD_RULE_OUTSIDE, level, current_fsuid());
	/* Level 2: BLKTRACESETUP (any size: 32-bit callers' struct differs) records who does I/O
	 * on a device, capsule processes' pids and names included. */
	if (type == S_IFBLK && (cmd & 0xffff) == 0x1273 && level >= FSGUARD_LEVEL_LOCKED)
		return refuse(NULL, file->f_path.dentry, 0, FSGUARD_OP_BPF_TRACING,
			      FSGUARD_RULE_LOCKED, level, current_fsuid());
	if (type == S_IFBLK && level < FSGUARD_LEVEL_LOCKED) {
		int r = decide_loop_backing(file, cmd, arg, level);

		if (r)
			return r;
	}
	if (stacks_or_passes_through(cmd, type) && level >= FSGUARD_LEVEL_LOCKED)
		return refuse(NULL, file->f_path.dentry, 0, FSGUARD_OP_BLOCKDEV_WRITE,
			      FSGUARD_RULE_LOCKED, FSGUARD_LEVEL_LOCKED, current_fsuid());
	/* A protected block device (level 2) answers only queries: commands that write (SG_IO,
	 * SCSI_IOCTL_SEND_COMMAND, NVMe I/O, most need only a read-only descriptor), zeroing
	 * and discards, and partitions added, resized or read again over it (new block devices
	 * over its sectors) are all refused, and so is anything not known to be a query. */
	if (type == S_IFBLK)
		return blockdev_query(cmd) ? 0 : decide_blockdev(file->f_inode, file->f_path.dentry);
	/* chattr (FS_IOC_SETFLAGS: +i, +a, ...; FS_IOC_FSSETXATTR), fs-verity (a Merkle tree
	 * added and the file read-only for good) and the inode's generation number: they need
	 * only a read-only descriptor. */
	if (cmd != FS_IOC_SETFLAGS && cmd != FS_IOC32_SETFLAGS && cmd != FS_IOC_FSSETXATTR &&
	    cmd != FS_IOC_ENABLE_VERITY && cmd != FS_IOC_SETVERSION && cmd != FS_IOC32_SETVERSION)
		return 0;
	return decide(file->f_inode, file->f_path.dentry, FSGUARD_OP_IOCTL_SETFLAGS);
}

SEC("lsm/file_ioctl")
int BPF_PROG(fsguard_file_ioctl, struct file *file, unsigned int cmd, unsigned long arg, int ret)
{
	return ret ? ret : decide_ioctl(file, cmd, arg);
}

/* The same for a 32-bit caller's ioctls (compat_sys_ioctl calls this hook instead). */
SEC("lsm/file_ioctl_compat")
int BPF_PROG(fsguard_file_ioctl_compat, struct file *file, unsigned int cmd, unsigned long arg,
	     int ret)
{
	return ret ? ret : decide_ioctl(file, cmd, arg);
}

/* Level 2: io_uring's passthrough commands (NVMe's character devices, ublk) reach a
 * device's driver with no ioctl hook: refused, whatever the device. */
SEC("lsm/uring_cmd")
int BPF_PROG(fsguard_uring_cmd, struct io_uring_cmd *ioucmd, int ret)
{
	if (ret || current_level() < FSGUARD_LEVEL_LOCKED)
		return ret;
	return refuse(NULL, NULL, 0, FSGUARD_OP_BLOCKDEV_WRITE, FSGUARD_RULE_LOCKED,
		      FSGUARD_LEVEL_LOCKED, current_fsuid());
}

/* Level 2: no kernel is loaded to boot into (kexec): it would start without the guard, with
 * a command line nobody signs. kexec_file_load reads its files here; kexec_load's
 * segments come here. */
static __always_inline int decide_kexec(__u32 id)
{
	/* READING_KEXEC_IMAGE/INITRAMFS and LOADING_KEXEC_IMAGE/INITRAMFS are 3 and 4. */
	if ((id != 3 && id != 4) || current_level() < FSGUARD_LEVEL_LOCKED)
		return 0;
	return refuse(NULL, NULL, 0, FSGUARD_OP_KEXEC, FSGUARD_RULE_LOCKED, FSGUARD_LEVEL_LOCKED,
		      current_fsuid());
}

SEC("lsm/kernel_read_file")
int BPF_PROG(fsguard_kernel_read_file, struct file *file, int id, bool contents, int ret)
{
	return ret ? ret : decide_kexec(id);
}

SEC("lsm/kernel_load_data")
int BPF_PROG(fsguard_kernel_load_data, int id, bool contents, int ret)
{
	return ret ? ret : decide_kexec(id);
}

/*
 * A new inode being initialised by its filesystem (ext4, tmpfs, ...) in directory `dir`: when
 * `dir` belongs to a capsule, so does the new inode. Creation itself was already allowed by
 * inode_create/mkdir/mknod/symlink. Returning 0 keeps the kernel's default behaviour.
 */
SEC("lsm/inode_init_security")
int BPF_PROG(fsguard_inode_init_security, struct inode *inode, struct inode *dir,
	     const struct qstr *qstr, const char **name, void **value, size_t *len, int ret)
{
	struct fsguard_inode_key key = {};
	struct entry d = {};

	if (ret)
		return ret;
	/*
	 * A new inode has no past: an entry for its (dev, ino) belongs to a freed inode whose
	 * number was recycled (ext4 hands freed numbers out again at once). rmdir (see
	 * release_if_last_link), a rename that replaces and an O_TMPFILE never linked leave such
	 * entries.
	 * So does an unmounted tmpfs, whose device number the next one gets, with inode numbers
	 * counted from 1 again. This relies on inode numbers being unique among live inodes of a
	 * filesystem; a tmpfs mounted without inode64 wraps them after 2^32 creations, after
	 * which a new inode could drop the entry of a live protected one (the kernel warns
	 * "inode number overflow"). A new directory's (or O_TMPFILE's) entry in a capsule's
	 * directory replaces a stale one; otherwise (a named file in a capsule's directory on
	 * tmpfs included, which named_in then covers) a stale one is deleted.
	 *
	 * A named non-directory on tmpfs is its directory's capsule's through its name
	 * (named_in), whatever the directory, and gets no entry: its directory need not be
	 * looked up. Elsewhere a new inode in a capsule's directory gets an entry: a disk
	 * filesystem drops names from its caches, and a file handle (open_by_handle_at, nfsd)
	 * can then bring the inode back without its directory, where only an entry of its own
	 * protects it. So does a directory, an O_TMPFILE (and an inode of a type not set yet:
	 * fail closed). No dentry here: a refusal names the directory.
	 */
	if (!qstr || is_dir(inode) || !(inode->i_mode & S_IFMT) ||
	    inode->i_sb->s_magic != TMPFS_MAGIC) {
		look_up(dir, &d);
		if (d.hit && !(d.v.flags & FSGUARD_INODE_APPEND_ONLY)) {
			/*
			 * O_TMPFILE (no name): no hook judged the creation before this one
			 * (vfs_tmpfile has none; file_open's check comes after), so judge it here:
			 * a refused outsider's inode must not be adopted (on tmpfs each attempt
			 * would leave an entry behind).
			 */
			if (!qstr) {
				struct caller me = {};
				int r = decide_entry(&me, &d, inode_alias(dir), FSGUARD_OP_CREATE);

				if (r)
					return r;
			}
			return adopt(&d, inode, dir, NULL, FSGUARD_OP_CREATE, BPF_ANY);
		}
	}
	/* Looked up first: a lookup is lock-free, a delete takes the bucket lock, and this
	 * runs for every inode created anywhere. */
	if (!d.fs_clean && inode_key(inode, &key) && !above_mark(&key) &&
	    bpf_map_lookup_elem(&inodes, &key))
		bpf_map_delete_elem(&inodes, &key);
	return 0;
}

/* Whether the current system call is `nr` (`nr32` for a 32-bit caller). */
static __always_inline bool in_syscall(__u64 nr, __u64 nr32)
{
	struct task_struct *current = bpf_get_current_task_btf();
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(current);

	if (!regs)
		return false;
	if (current->thread_info.status & TS_COMPAT)
		return BPF_CORE_READ(regs, orig_ax) == nr32;
	/* x32 calls are numbered as x86-64's with __X32_SYSCALL_BIT. */
	return (BPF_CORE_READ(regs, orig_ax) & ~0x40000000UL) == nr;
}

static __always_inline bool in_setns(void)
{
	return in_syscall(NR_setns, NR_ia32_setns);
}

/*
 * ptrace, /proc/PID/mem and the like; and setns(2) through a pidfd, for which the kernel asks
 * for read access to the pidfd's process (validate_nsset) before it installs any namespace.
 * Entering a capsule's namespaces is attaching to it: refused at every level. `child` is
 * the process the kernel resolved from its own reference to the pidfd, so another thread
 * swapping the descriptor number meanwhile can't change what is judged.
 */
SEC("lsm/ptrace_access_check")
int BPF_PROG(fsguard_ptrace_access_check, struct task_struct *child, unsigned int mode, int ret)
{
	bool attach = mode & PTRACE_MODE_ATTACH;
	__u32 op = attach ? FSGUARD_OP_PTRACE_ATTACH : FSGUARD_OP_PTRACE_READ;

	if (ret)
		return ret;
	if (!attach && in_setns()) {
		attach = true;
		op = FSGUARD_OP_SETNS;
	}
	return decide_process(child, op, attach, !(mode & PTRACE_MODE_NOAUDIT));
}

/* A member asking to be traced by its parent: only a parent inside the same capsule. */
SEC("lsm/ptrace_traceme")
int BPF_PROG(fsguard_ptrace_traceme, struct task_struct *parent, int ret)
{
	__u32 slot;

	if (ret)
		return ret;
	slot = current_capsule();
	if (!slot || task_capsule(parent) == slot)
		return 0;
	return refuse_event(NULL, NULL, BPF_CORE_READ(parent, tgid), slot, FSGUARD_OP_PTRACE_TRACEME,
			    FSGUARD_RULE_ATTACH, current_level(), current_euid());
}

SEC("lsm/task_kill")
int BPF_PROG(fsguard_task_kill, struct task_struct *p, struct kernel_siginfo *info, int sig,
	     const struct cred *cred, int ret)
{
	if (ret)
		return ret;
	return decide_process(p, FSGUARD_OP_SIGNAL, false, true);
}

/* sched_setscheduler, sched_setparam, sched_setattr and sched_setaffinity. */
SEC("lsm/task_setscheduler")
int BPF_PROG(fsguard_task_setscheduler, struct task_struct *p, int ret)
{
	if (ret)
		return ret;
	return decide_process(p, FSGUARD_OP_SCHED, true, true);
}

SEC("lsm/task_setnice")
int BPF_PROG(fsguard_task_setnice, struct task_struct *p, int nice, int ret)
{
	if (ret)
		return ret;
	return decide_process(p, FSGUARD_OP_NICE, true, true);
}

SEC("lsm/task_setioprio")
int BPF_PROG(fsguard_task_setioprio, struct task_struct *p, int ioprio, int ret)
{
	if (ret)
		return ret;
	return decide_process(p, FSGUARD_OP_IOPRIO, true, true);
}

SEC("lsm/task_movememory")
int BPF_PROG(fsguard_task_movememory, struct task_struct *p, int ret)
{
	if (ret)
		return ret;
	return decide_process(p, FSGUARD_OP_MOVEMEMORY, true, true);
}

/* A process's resource limits (prlimit(2), and setrlimit(2) on the caller's own process,
 * which the hook names as the target): another process's are acting on it (RLIMIT_CPU ends
 * it, RLIMIT_CORE lets it dump its memory where root's core_pattern says). */
SEC("lsm/task_setrlimit")
int BPF_PROG(fsguard_task_setrlimit, struct task_struct *p, unsigned int resource,
	     struct rlimit *new_rlim, int ret)
{
	if (ret)
		return ret;
	return decide_process(p, FSGUARD_OP_PRLIMIT, true, true);
}

/*
 * Reading a process's scheduling policy is allowed to all; the hook only records that `p`
 * is a member, which is how sealtool has the processes already in a cgroup remembered at
 * seal time (it asks for each one's policy).
 *
 * sealtool touches every thread of a cgroup it seals (sched_getscheduler) to make them
 * members. A thread already marked as a member of a capsule whose cgroup is above (a capsule
 * sealed earlier around this cgroup) becomes this capsule's: the innermost capsule its cgroup
 * says wins, so the outer capsule's members can't trace or signal the new capsule's threads.
 * Nobody outside a capsule can put a thread into its cgroup, so the cgroup says truly.
 */
/* Whether cgroup `cgrp` is strictly below capsule `slot`'s cgroup (root moving a member
 * elsewhere, into another capsule's cgroup say, takes it nowhere below). */
static __always_inline bool strictly_below(struct cgroup *cgrp, __u32 slot)
{
	struct fsguard_capsule *c = bpf_map_lookup_elem(&capsules, &slot);
	struct cgroup *anc = NULL;
	__u32 at;

	if (!c || !cgrp || !(c->flags & FSGUARD_CAPSULE_HAS_CGROUP))
		return false;
	at = c->cgroup_level;
	if (at >= FSGUARD_MAX_CGROUP_DEPTH || (int)at >= BPF_CORE_READ(cgrp, level))
		return false;
	if (bpf_probe_read_kernel(&anc, sizeof(anc), &cgrp->ancestors[at]) || !anc)
		return false;
	return BPF_CORE_READ(anc, kn, id) == c->cgroup_id;
}

SEC("lsm/task_getscheduler")
int BPF_PROG(fsguard_task_getscheduler, struct task_struct *p, int ret)
{
	struct cgroup *cgrp;
	__u32 slot, *mark;

	if (ret)
		return ret;
	cgrp = BPF_CORE_READ(p, cgroups, dfl_cgrp);
	slot = cgroup_capsule(cgrp);
	mark = bpf_task_storage_get(&members, p, 0, 0);
	if (slot && mark && *mark && *mark != slot && strictly_below(cgrp, *mark))
		*mark = slot;
	else
		task_capsule(p);
	return 0;
}

/* The capsule whose cgroup `file` is a cgroup2 directory of, or a directory below; 0: none. */
static __always_inline __u32 cgroup_dir_capsule(struct file *file)
{
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	struct kernfs_node *kn;

	if (!inode || BPF_CORE_READ(inode, i_sb, s_magic) != CGROUP2_SUPER_MAGIC ||
	    (BPF_CORE_READ(inode, i_mode) & S_IFMT) != S_IFDIR)
		return 0;
	kn = (struct kernfs_node *)BPF_CORE_READ(inode, i_private);
	if (!kn)
		return 0;
	return cgroup_capsule((struct cgroup *)BPF_CORE_READ(kn, priv));
}

struct fd_scan {
	__u64 fds;        /* the caller's struct file *[] */
	__u32 own;        /* the caller's capsule (0: none) */
	__u32 found;      /* a capsule, not `own`, one of the descriptors is a cgroup directory of */
	__u32 unreadable; /* a slot could not be read: the scan proves nothing */
};

static int scan_fd(__u32 i, void *ctx)
{
	struct fd_scan *scan = ctx;
	struct file *file = NULL;
	__u32 slot;

	if (bpf_probe_read_kernel(&file, sizeof(file), (struct file **)scan->fds + i)) {
		scan->unreadable = 1;
		return 1;
	}
	if (!file)
		return 0;
	slot = cgroup_dir_capsule(file);
	if (!slot || slot == scan->own)
		return 0;
	scan->found = slot;
	return 1;
}

/*
 * clone3(CLONE_INTO_CGROUP) into a capsule's cgroup by a process that is not a member: the
 * kernel asks nothing of the LSMs but inode_permission(MAY_WRITE) on the target's
 * cgroup.procs, a hook that runs for every path component of every lookup on the machine,
 * so it is judged here instead, once per such clone3. task_alloc runs in copy_process
 * before the kernel looks up the cgroup descriptor and does not say which descriptor that
 * is, so every descriptor of the caller is looked at: when one is a directory of a capsule's
 * cgroup (or of one below it) that the caller is not a member of, the clone is refused. That
 * is exact while nobody but the caller can change its descriptor table, that is, while the
 * table is not shared (count 1: the caller is in this system call until the lookup). A shared
 * table (threads, CLONE_FILES, io_uring workers) could gain such a descriptor between this
 * check and the lookup, so then, and for a table too large to scan (or one that could not be
 * read), the clone is refused whenever some other capsule has a cgroup (the UNCHECKABLE
 * rule): fail closed.
 */
static __always_inline int decide_clone_into_cgroup(__u32 own)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct capsule_scan others = {};
	struct fd_scan scan = {};
	unsigned int max_fds;

	scan.own = own;
	max_fds = BPF_CORE_READ(task, files, fdt, max_fds);
	if (BPF_CORE_READ(task, files, count.counter) == 1 && max_fds <= FSGUARD_MAX_SCAN_FDS) {
		scan.fds = (__u64)BPF_CORE_READ(task, files, fdt, fd);
		/* A scan that did not run or could not read a slot proves nothing: judged as a
		 * shared table below. */
		if (scan.fds && (int)bpf_loop(max_fds, scan_fd, &scan, 0) >= 0 && !scan.unreadable) {
			if (!scan.found)
				return 0;
			return refuse_event(NULL, NULL, 0, scan.found, FSGUARD_OP_CGROUP,
					    FSGUARD_RULE_ATTACH, current_level(), current_euid());
		}
	}
	others.own = scan.own;
	/* (int): the verifier's inlined bpf_loop sets an error with a 32-bit move. */
	if ((int)bpf_loop(FSGUARD_MAX_CAPSULES, scan_capsule, &others, 0) < 0)
		return refuse_event(NULL, NULL, 0, 0, FSGUARD_OP_CGROUP, FSGUARD_RULE_UNCHECKABLE,
				    current_level(), current_euid());
	if (!others.found)
		return 0;
	return refuse_event(NULL, NULL, 0, others.found, FSGUARD_OP_CGROUP,
			    FSGUARD_RULE_UNCHECKABLE, current_level(), current_euid());
}

/* A child of a member is a member, wherever clone3(CLONE_INTO_CGROUP) puts it; a child of
 * anybody else is refused a place in a capsule's cgroup. */
SEC("lsm/task_alloc")
int BPF_PROG(fsguard_task_alloc, struct task_struct *task, unsigned long clone_flags, int ret)
{
	__u32 slot, *mark;
	int r;

	if (ret)
		return ret;
	slot = current_capsule();
	if (clone_flags & CLONE_INTO_CGROUP) {
		r = decide_clone_into_cgroup(slot);
		if (r)
			return r;
	}
	if (!slot)
		return 0;
	mark = bpf_task_storage_get(&members, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (mark)
		*mark = slot;
	return 0;
}

/*
 * Magic links of a capsule process followed by an outside process: /proc/PID/ns/\* hands
 * out a namespace descriptor to setns(2) into, /proc/PID/fd/N opens the process's own file
 * (its pipes, sockets, memfds, deleted files), /proc/PID/map_files/\* the file behind a
 * mapping (its shared memory), and /proc/PID/root and cwd lead into its mount namespace (its
 * private mounts' files). Each acts on the process, so following one is refused at every
 * level, root included (and the same below /proc/PID/task/TID); reading the link, which
 * only names the object, stays a "see" operation (stat(2) follows, so it is refused too).
 * The check runs on every symlink followed, so it leaves at the first test for anything but
 * procfs.
 */
SEC("lsm/inode_follow_link")
int BPF_PROG(fsguard_inode_follow_link, struct dentry *dentry, struct inode *inode, bool rcu,
	     int ret)
{
	struct proc_inode *pi;
	char parent[12] = {}, name[8] = {};
	__u32 slot, tgid = 0;
	bool gone;

	if (ret)
		return ret;
	if (!inode || inode->i_sb->s_magic != PROC_SUPER_MAGIC)
		return 0;
	bpf_probe_read_kernel_str(parent, sizeof(parent), BPF_CORE_READ(dentry, d_parent, d_name.name));
	bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(dentry, d_name.name));
	if (!same_cstr(parent, "ns", 3) && !same_cstr(parent, "fd", 3) &&
	    !same_cstr(parent, "map_files", 10) && !same_cstr(name, "root", 5) &&
	    !same_cstr(name, "cwd", 4))
		return 0;
	pi = (struct proc_inode *)((void *)inode - bpf_core_field_offset(struct proc_inode, vfs_inode));
	slot = pid_capsule(BPF_CORE_READ(pi, pid), &tgid, &gone);
	if (!slot || current_capsule() == slot)
		return 0;
	return refuse_event(NULL, dentry, tgid, slot,
			    parent[0] == 'n' ? FSGUARD_OP_SETNS : FSGUARD_OP_PROC_FILE,
			    FSGUARD_RULE_ATTACH, current_level(), current_euid());
}

/* Level 2 (or tracing locked): perf events can sample any process's user memory and stacks. */
SEC("lsm/perf_event_open")
int BPF_PROG(fsguard_perf_event_open, struct perf_event_attr *attr, int type, int ret)
{
	if (ret)
		return ret;
	if (current_level() >= FSGUARD_LEVEL_LOCKED || tracing_locked())
		return refuse(NULL, NULL, 0, FSGUARD_OP_PERF_EVENT, FSGUARD_RULE_LOCKED,
			      current_level(), current_fsuid());
	return 0;
}

/* ---------------------------------------------------------------- mounts */

/*
 * Level 2: no filesystem that needs a block device is mounted anew. The kernel opens the
 * device named by `source` itself, unhooked, and a second mount of a sealed filesystem
 * through an alias of its disk (a partition over it, another path to it) would edit it past
 * every inode rule (a new superblock, other identities), its journal replayed first. Which
 * device a source path names can't be told here, so none is mounted. (0 lets the hook's
 * default answer, -ENOPARAM, "not an LSM's parameter", through to the filesystem.)
 */
SEC("lsm/fs_context_parse_param")
int BPF_PROG(fsguard_fs_context_parse_param, struct fs_context *fc, struct fs_parameter *param,
	     int ret)
{
	char key[8] = {};

	if (ret || current_level() < FSGUARD_LEVEL_LOCKED)
		return ret;
	if (!(BPF_CORE_READ(fc, fs_type, fs_flags) & FS_REQUIRES_DEV))
		return 0;
	bpf_probe_read_kernel_str(key, sizeof(key), BPF_CORE_READ(param, key));
	if (!same_cstr(key, "source", 7))
		return 0;
	return refuse(NULL, NULL, 0, FSGUARD_OP_MOUNT, FSGUARD_RULE_LOCKED, FSGUARD_LEVEL_LOCKED,
		      current_fsuid());
}

SEC("lsm/sb_mount")
int BPF_PROG(fsguard_sb_mount, const char *dev_name, const struct path *path, const char *type,
	     unsigned long flags, void *data, int ret)
{
	if (ret)
		return ret;
	/*
	 * mount(2) with MS_MOVE names the mount to move by a string the hook can't resolve: at
	 * level 2 it is refused in the initial mount namespace (move_mount(2) is checked
	 * precisely below; a private namespace's mounts are seen by nobody else).
	 */
	if ((flags & MS_MOVE) && current_level() >= FSGUARD_LEVEL_LOCKED && in_init_mnt_ns())
		return refuse(NULL, path->dentry, 0, FSGUARD_OP_MOVE_MOUNT, FSGUARD_RULE_LOCKED,
			      current_level(), current_fsuid());
	/*
	 * A propagation change alone (--make-private, --make-rshared, ...) mounts nothing: a
	 * mount that would later propagate over a sealed path meets this hook on that path.
	 */
	if ((flags & (MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE)) &&
	    !(flags & (MS_REMOUNT | MS_BIND | MS_MOVE)))
		return 0;
	/* New mounts, binds, remounts: over (or of) a sealed tree or a directory above one. */
	return decide_mountpoint(path->dentry, path->mnt, FSGUARD_OP_MOUNT);
}

SEC("lsm/move_mount")
int BPF_PROG(fsguard_move_mount, const struct path *from_path, const struct path *to_path, int ret)
{
	int r;

	if (ret)
		return ret;
	r = decide_mountpoint(from_path->dentry, from_path->mnt, FSGUARD_OP_MOVE_MOUNT);
	return r ? r : decide_mountpoint(to_path->dentry, to_path->mnt, FSGUARD_OP_MOVE_MOUNT);
}

/* Unmounting a filesystem whose root is a sealed entry or above a sealed root (for the
 * guard's pins: the bpffs mount, whose end would release the pinned links). */
SEC("lsm/sb_umount")
int BPF_PROG(fsguard_sb_umount, struct vfsmount *mnt, int flags, int ret)
{
	struct fsguard_inode_key key = {};
	struct dentry *root;
	__u32 *slot;

	if (ret)
		return ret;
	root = mnt->mnt_root;
	/*
	 * A lazy unmount (MNT_DETACH) takes every mount below along, the bpffs holding the
	 * guard's pins included (its end would release them): refused from level 1 on for
	 * the mounts above the pins, in the initial mount namespace (a private namespace's copy
	 * going away leaves the real one mounted). An ordinary unmount of them fails with EBUSY
	 * while the bpffs is mounted below.
	 */
	if ((flags & MNT_DETACH) && inode_key(dentry_inode(root), &key)) {
		slot = bpf_map_lookup_elem(&pin_path, &key);
		if (slot && in_init_mnt_ns() && current_level() >= FSGUARD_LEVEL_SEALED)
			return refuse(&key, root, *slot, FSGUARD_OP_UMOUNT, FSGUARD_RULE_GUARD,
				      current_level(), current_fsuid());
	}
	return decide_mountpoint(root, mnt, FSGUARD_OP_UMOUNT);
}

/* pivot_root(2) moves every process whose root is the old root onto the new one: at level 2
 * it is refused in the initial mount namespace. */
SEC("lsm/sb_pivotroot")
int BPF_PROG(fsguard_sb_pivotroot, const struct path *old_path, const struct path *new_path,
	     int ret)
{
	if (ret)
		return ret;
	if (current_level() >= FSGUARD_LEVEL_LOCKED && in_init_mnt_ns())
		return refuse(NULL, new_path->dentry, 0, FSGUARD_OP_PIVOT_ROOT, FSGUARD_RULE_LOCKED,
			      current_level(), current_fsuid());
	return 0;
}

/* ---------------------------------------------------------------- the guard itself */

/* The maps nobody may open from level 1 on: what they hold is what is enforced. A program
 * given any descriptor of a map (even read-only) may write it, so none is handed out. */
static __always_inline bool is_guarded_map(struct bpf_map *map)
{
	return map == (void *)&config || map == (void *)&inodes || map == (void *)&capsules ||
	       map == (void *)&claims || map == (void *)&exec_trust ||
	       map == (void *)&cgroup_capsules || map == (void *)&members ||
	       map == (void *)&ancestors || map == (void *)&devices || map == (void *)&pin_path ||
	       map == (void *)&cgroup_ancestors || map == (void *)&dir_cache ||
	       map == (void *)&dir_cache_epoch || map == (void *)&entry_filesystems ||
	       map == (void *)&fs_marks || map == (void *)&ratelimit;
}

/* Every map of the guard: the guarded ones, the reports and the two ways in and out. */
static __always_inline bool is_guard_map(struct bpf_map *map)
{
	return is_guarded_map(map) || map == (void *)&requests || map == (void *)&state ||
	       map == (void *)&results || map == (void *)&capsules_view ||
	       map == (void *)&stats || map == (void *)&events;
}

/* Whether `map` (one of this object's) is frozen. The verifier allows no arithmetic on a
 * map pointer, so its address is first copied as a plain number. Unreadable: not frozen. */
static __always_inline bool is_frozen(void *map)
{
	__u64 addr = 0;
	bool frozen = false;

	bpf_probe_read_kernel(&addr, sizeof(addr), &map);
	if (!addr)
		return false;
	bpf_probe_read_kernel(&frozen, sizeof(frozen),
			      (void *)(addr + bpf_core_field_offset(struct bpf_map, frozen)));
	return frozen;
}

/*
 * Whether no descriptor, whenever opened, can write any map of the guard but `requests` (and
 * `events`, which the kernel can't freeze while its reader maps it): BPF_MAP_FREEZE, which
 * only the guard's own programs write past. The loader freezes them before the first level
 * above 0; a level request above 0 is applied only once this holds.
 */
static __always_inline bool guard_frozen(void)
{
	return is_frozen(&config) && is_frozen(&inodes) && is_frozen(&capsules) &&
	       is_frozen(&cgroup_capsules) && is_frozen(&members) && is_frozen(&ancestors) &&
	       is_frozen(&devices) && is_frozen(&pin_path) && is_frozen(&cgroup_ancestors) &&
	       is_frozen(&dir_cache) && is_frozen(&dir_cache_epoch) &&
	       is_frozen(&entry_filesystems) && is_frozen(&fs_marks) && is_frozen(&ratelimit) &&
	       is_frozen(&state) && is_frozen(&results) && is_frozen(&capsules_view) &&
	       is_frozen(&stats);
}

/* From the first raise above 0 on (the freeze comes first): the guard is what it is. */
static __always_inline bool guard_sealed(void)
{
	return current_level() >= FSGUARD_LEVEL_SEALED || is_frozen(&config);
}

/* Whether program `prog` uses a map of the guard: the guard's own programs, and any other
 * that could write its maps. Fails closed when the list can't be read. */
static __always_inline bool uses_guard_map(struct bpf_prog *prog)
{
	struct bpf_prog_aux *aux = BPF_CORE_READ(prog, aux);
	struct bpf_map **maps;
	struct bpf_map *map;
	__u32 n, i;

	if (!aux)
		return false;
	n = BPF_CORE_READ(aux, used_map_cnt);
	maps = BPF_CORE_READ(aux, used_maps);
	if (n > MAX_USED_MAPS)
		return true;
	for (i = 0; i < MAX_USED_MAPS && i < n; i++) {
		if (bpf_probe_read_kernel(&map, sizeof(map), maps + i))
			return true;
		if (is_guard_map(map))
			return true;
	}
	return false;
}

/* Instructions read at a time when a program's calls are looked at. */
#define READER_SCAN_CHUNK 16
/* BPF_JMP | BPF_CALL: a call; source register 0: a helper's, 2: a kernel function's (kfunc),
 * 1: a subprogram's. */
#define BPF_CALL_INSN 0x85
#define BPF_KFUNC_CALL_SRC 2
/* A load's class, and the modes of plain loads (BPF_MEM, and sign-extending BPF_MEMSX since
 * 6.6): any other mode of a verified load is a probing one (BPF_PROBE_MEM...). */
#define BPF_LDX_CLASS 0x01
#define BPF_MEM_MODE 0x60
#define BPF_MEMSX_MODE 0x80

struct reader_scan {
	const struct bpf_insn *insns;
	__u32 len;
	bool found; /* a call to a reader helper, or instructions that couldn't be read */
};

/* Instructions [chunk * READER_SCAN_CHUNK, +READER_SCAN_CHUNK) of the program: 1 (stop) at
 * the first call to a reader helper, past the end, or when they can't be read. */
static long scan_reader_calls(__u32 chunk, void *ctx)
{
	struct reader_scan *s = ctx;
	struct fsguard_state *st;
	__u64 buf[2 * READER_SCAN_CHUNK]; /* twice: room for what the verifier can prove */
	__u32 zero = 0, base = chunk * READER_SCAN_CHUNK, n, j, k, size;

	if (base >= s->len)
		return 1;
	n = s->len - base;
	if (n > READER_SCAN_CHUNK)
		n = READER_SCAN_CHUNK;
	/* The verifier loses the clamp above; the mask (which changes nothing) bounds the size
	 * for it, and the barrier keeps the compiler from dropping the mask. */
	size = n * sizeof(__u64);
	barrier_var(size);
	size &= sizeof(buf) - 1;
	st = bpf_map_lookup_elem(&state, &zero);
	if (!st || bpf_probe_read_kernel(buf, size, s->insns + base)) {
		s->found = true;
		return 1;
	}
	for (j = 0; j < READER_SCAN_CHUNK && j < n; j++) {
		__u64 insn = buf[j];
		__u32 imm = (__u32)(insn >> 32), code = insn & 0xff, src = (insn >> 12) & 0xf;

		/* A load the verifier made a probing one: through a BTF pointer (a kernel
		 * structure reached from a kfunc, a typed ksym, a helper's or the context's). */
		if ((code & 0x07) == BPF_LDX_CLASS && (code & 0xe0) != BPF_MEM_MODE &&
		    (code & 0xe0) != BPF_MEMSX_MODE) {
			s->found = true;
			return 1;
		}
		if (code != BPF_CALL_INSN)
			continue;
		/* A kernel function's call (kfunc): some read any memory they are given. */
		if (src == BPF_KFUNC_CALL_SRC) {
			s->found = true;
			return 1;
		}
		if (src != 0)
			continue;
		for (k = 0; k < FSGUARD_READER_CALLS && k < st->reader_calls_count; k++) {
			if (st->reader_calls[k] == imm) {
				s->found = true;
				return 1;
			}
		}
	}
	return 0;
}

/*
 * Whether verified program `prog` reads memory beyond its context, maps and stack: it calls
 * a reader helper (state.reader_calls: one that reads memory it is pointed at, a capsule
 * process's included when the program runs in its context, as a cgroup device program does
 * for every process that opens a device; the kernel gives these to any program type once its
 * loader has CAP_PERFMON), a kernel function (kfunc), or loads through a BTF pointer. A table
 * not known, or instructions that can't be read, count as yes (fail closed).
 */
static __always_inline bool calls_reader(struct bpf_prog *prog)
{
	struct reader_scan scan = {};
	struct fsguard_state *st;
	__u32 zero = 0;

	st = bpf_map_lookup_elem(&state, &zero);
	if (!st || !st->reader_calls_count)
		return true;
	scan.len = BPF_CORE_READ(prog, len);
	if (!scan.len)
		return true; /* not read: no program is empty */
	scan.insns = (void *)prog + bpf_core_field_offset(struct bpf_prog, insnsi);
	/* (int): the verifier's inlined bpf_loop sets an error with a 32-bit move. */
	if ((int)bpf_loop(scan.len / READER_SCAN_CHUNK + 1, scan_reader_calls, &scan, 0) < 0)
		return true;
	return scan.found;
}

/* Level 2's rules on tracing hold below 2 too (FSGUARD_REQ_LOCK_TRACING); unknown: yes. */
static __always_inline bool tracing_locked(void)
{
	__u32 zero = 0;
	struct fsguard_state *st = bpf_map_lookup_elem(&state, &zero);

	return !st || st->tracing_locked;
}

/* Walk of the netlink messages in an audit request, as the kernel's audit_receive walks them
 * (nlmsg_ok, nlmsg_next): `found` when one adds a rule. */
struct audit_walk {
	unsigned char *data;
	__u32 off;
	__u32 len;
	bool found;
	bool done;
};

static int walk_audit(__u32 i, void *ctx)
{
	struct audit_walk *w = ctx;
	struct {
		__u32 len;
		__u16 type;
	} h = {};

	if (w->off > w->len || w->len - w->off < 16) {
		w->done = true;
		return 1;
	}
	if (bpf_probe_read_kernel(&h, sizeof(h), w->data + w->off)) {
		w->found = true;
		return 1;
	}
	if (h.len < 16 || h.len > w->len - w->off) {
		w->done = true;
		return 1;
	}
	if (h.type == AUDIT_ADD_RULE || h.type == AUDIT_MAKE_EQUIV) {
		w->found = true;
		return 1;
	}
	w->off += (h.len + 3) & ~3u;
	return 0;
}

/*
 * Level 2 (or tracing locked): no audit rule is added (AUDIT_ADD_RULE, or AUDIT_MAKE_EQUIV,
 * which extends a directory's watch to another tree). A rule records the system calls of
 * whatever processes it matches, capsule processes' included: their arguments, paths, socket
 * addresses and exec arguments, like a trace event. A request of more messages than the walk
 * looks at is refused whole.
 */
SEC("lsm/netlink_send")
int BPF_PROG(fsguard_netlink_send, struct sock *sk, struct sk_buff *skb, int ret)
{
	struct audit_walk w = {};

	if (ret)
		return ret;
	if (sk->sk_protocol != NETLINK_AUDIT ||
	    (current_level() < FSGUARD_LEVEL_LOCKED && !tracing_locked()))
		return 0;
	w.data = skb->data;
	w.len = skb->len;
	/* (int): the verifier's inlined bpf_loop sets an error with a 32-bit move. */
	if ((int)bpf_loop(64, walk_audit, &w, 0) >= 0 && !w.found && w.done)
		return 0;
	return refuse(NULL, NULL, 0, FSGUARD_OP_BPF_TRACING, FSGUARD_RULE_LOCKED,
		      FSGUARD_LEVEL_LOCKED, current_fsuid());
}

/* A program of a type that runs in other processes' context (what level 2 refuses to load,
 * see fsguard_bpf). */
static __always_inline bool runs_in_others_context(struct bpf_prog *prog)
{
	__u32 type = BPF_CORE_READ(prog, type);

	return type == BPF_PROG_TYPE_KPROBE || type == BPF_PROG_TYPE_TRACEPOINT ||
	       type == BPF_PROG_TYPE_PERF_EVENT || type == BPF_PROG_TYPE_RAW_TRACEPOINT ||
	       type == BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE || type == BPF_PROG_TYPE_TRACING ||
	       type == BPF_PROG_TYPE_EXT || type == BPF_PROG_TYPE_LSM;
}

/*
 * A descriptor of a BPF program is being made (a load, BPF_PROG_GET_FD_BY_ID, BPF_OBJ_GET of
 * a pin). Refused at every level: a program that attaches to one of the guard's (an
 * extension replacing one of its functions, fentry/fexit on it). From the first raise above
 * 0 on: any descriptor of a program that uses a map of the guard, the guard's own programs
 * included (they would be the target of an extension later, see fsguard_bpf) and programs
 * that would write its maps. The guard's loader makes its programs' descriptors before any
 * of them is attached. At level 2 (or once a raise to 2 has locked tracing): a program
 * that runs in other processes' context or reads memory beyond its own (calls_reader). A
 * load ends in this hook with the program as verified (its descriptor is
 * the last thing made), so what is looked at is what would run; refused, it is freed.
 */
SEC("lsm/bpf_prog")
int BPF_PROG(fsguard_bpf_prog, struct bpf_prog *prog, int ret)
{
	struct bpf_prog *target;
	__u32 level;

	if (ret)
		return ret;
	target = BPF_CORE_READ(prog, aux, dst_prog);
	if ((target && uses_guard_map(target)) || (uses_guard_map(prog) && guard_sealed()))
		return refuse(NULL, NULL, 0, FSGUARD_OP_BPF_PROG, FSGUARD_RULE_GUARD,
			      current_level(), current_fsuid());
	level = current_level();
	if ((level >= FSGUARD_LEVEL_LOCKED || tracing_locked()) &&
	    (runs_in_others_context(prog) || calls_reader(prog)))
		return refuse(NULL, NULL, 0, FSGUARD_OP_BPF_PROG, FSGUARD_RULE_LOCKED, level,
			      current_fsuid());
	return 0;
}

SEC("lsm/bpf_map")
int BPF_PROG(fsguard_bpf_map, struct bpf_map *map, fmode_t fmode, int ret)
{
	__u32 level, type;

	if (ret)
		return ret;
	/* A map of maps made before the freeze whose inner maps have a guard map's shape: any
	 * descriptor of a guard map (requests write-only, a report read-only) could be put in
	 * it, and a program using it would read and write that map past its freeze. From the
	 * freeze on none is handed out, and the raise's scan, asking for each by id, is told. */
	type = BPF_CORE_READ(map, map_type);
	if ((type == BPF_MAP_TYPE_ARRAY_OF_MAPS || type == BPF_MAP_TYPE_HASH_OF_MAPS) &&
	    guard_sealed()) {
		struct bpf_map *inner = BPF_CORE_READ(map, inner_map_meta);

		if (!inner || guard_shaped(inner))
			return refuse_guard_op(FSGUARD_OP_BPF_MAP);
	}
	/* From the freeze on: the reports (frozen) refused to writers, the ways in and out
	 * refused to readers (a writer of requests, a consumer of events needs write access),
	 * `requests` opened only write-only: nobody reads another sender's tags. Useless to
	 * anyone, these answers are given by nothing else in the kernel, which is how sealtool
	 * tells the guard's maps from an impostor's (identity.rs); it asks each time it opens
	 * the guard, so they are neither reported nor counted. */
	if (map == (void *)&state || map == (void *)&stats || map == (void *)&capsules_view ||
	    map == (void *)&results || map == (void *)&requests || map == (void *)&events) {
		if (current_level() < FSGUARD_LEVEL_SEALED && !is_frozen(&config))
			return 0;
		if (map == (void *)&requests)
			return (fmode & FMODE_WRITE) && !(fmode & FMODE_READ) ? 0 : -EPERM;
		if (map == (void *)&events)
			return (fmode & FMODE_WRITE) ? 0 : -EPERM;
		return (fmode & FMODE_WRITE) ? -EPERM : 0;
	}
	if (!is_guarded_map(map))
		return 0;
	level = current_level();
	if (level < FSGUARD_LEVEL_SEALED && !is_frozen(&config))
		return 0;
	return refuse(NULL, NULL, 0, FSGUARD_OP_BPF_MAP, FSGUARD_RULE_GUARD, level,
		      current_fsuid());
}

/* What a bpf(2) descriptor's file holds, if it is one named `kind` ("bpf-prog": its anonymous
 * inode's name): a program or a map. */
static __always_inline void *bpf_file_object(struct file *file, const char *kind)
{
	char name[9] = {};

	if (!file)
		return NULL;
	bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(file, f_path.dentry, d_name.name));
	if (!same_cstr(name, kind, 9))
		return NULL;
	return BPF_CORE_READ(file, private_data);
}

/* The program behind the caller's descriptor `fd`, or NULL (*unsure as in caller_file). */
static __always_inline struct bpf_prog *caller_prog(__u32 fd, bool *unsure)
{
	return bpf_file_object(caller_file(fd, unsure), "bpf-prog");
}

/* A program that extends or traces one of the guard's (loaded for it: aux->dst_prog). */
static __always_inline bool attached_to_guard(struct bpf_prog *prog)
{
	struct bpf_prog *target = prog ? BPF_CORE_READ(prog, aux, dst_prog) : NULL;

	return target && uses_guard_map(target);
}

/*
 * A program that, attached now, could run before the guard's on one of its hooks and end the
 * hook's run with its own answer (the first nonzero one ends it; some hooks' callers take a
 * positive answer, or -EOPNOTSUPP in inode_init_security, as success): an LSM program, an
 * extension, fmod_ret. Unknown (the descriptor can't be looked at race-free) counts as one.
 */
static __always_inline bool runs_before_guard(struct bpf_prog *prog, bool unsure)
{
	__u32 type;

	if (unsure || !prog)
		return true;
	type = BPF_CORE_READ(prog, type);
	return type == BPF_PROG_TYPE_LSM || type == BPF_PROG_TYPE_EXT ||
	       (type == BPF_PROG_TYPE_TRACING &&
		BPF_CORE_READ(prog, expected_attach_type) == BPF_MODIFY_RETURN);
}

/* An iterator over a map's elements, which it may rewrite in place. */
static __always_inline bool is_map_elem_iter(struct bpf_prog *prog)
{
	char name[22] = {};

	bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(prog, aux, attach_func_name));
	return same_cstr(name, "bpf_iter_bpf_map_elem", 16) &&
	       same_cstr(name + 16, "_elem", 6);
}

static __always_inline int refuse_guard_op(__u32 op)
{
	return refuse(NULL, NULL, 0, op, FSGUARD_RULE_GUARD, current_level(), current_fsuid());
}

/*
 * Attaching programs, at every level:
 * - an extension loaded for another program and attached to one of the guard's instead
 *   (BPF_LINK_CREATE with target_fd and target_btf_id), refused when the target is the
 *   guard's or can't be told race-free;
 * - a program loaded for one of the guard's (an extension or fentry/fexit whose descriptor
 *   was had before the guard protected its programs), refused (exact for a caller whose
 *   descriptor table is not shared).
 * From the freeze on (the guard's own programs are all attached before it), nothing that can
 * run before the guard's programs on a hook and end its run: LSM and fmod_ret links (their
 * attach type is the program's own, so it says), cgroup LSM attachments, attachments by
 * BTF id without a tracepoint name and link updates whose program is one (or can't be told).
 * And no iterator over a map's elements (which writes them in place), whatever map it names:
 * the map is named in user memory, which the kernel reads again after this hook.
 */
static __always_inline int decide_attach(int cmd, union bpf_attr *attr)
{
	__u32 w[6] = {}; /* link_create: prog_fd, target_fd, attach_type, flags, target_btf_id */
	bool unsure = false, frozen = is_frozen(&config);
	struct bpf_prog *prog;

	bpf_probe_read_kernel(w, sizeof(w), attr);
	switch (cmd) {
	case BPF_PROG_ATTACH: /* target_fd, attach_bpf_fd, attach_type */
		return frozen && w[2] == BPF_LSM_CGROUP ? refuse_guard_op(FSGUARD_OP_BPF_LINK) : 0;
	case BPF_LINK_UPDATE: /* link_fd, new_prog_fd */
		if (!frozen)
			return 0;
		prog = caller_prog(w[1], &unsure);
		return runs_before_guard(prog, unsure) ? refuse_guard_op(FSGUARD_OP_BPF_LINK) : 0;
	case BPF_RAW_TRACEPOINT_OPEN: /* name (u64), prog_fd */
		prog = caller_prog(w[2], &unsure);
		if (attached_to_guard(prog) ||
		    (frozen && !w[0] && !w[1] && runs_before_guard(prog, unsure)))
			return refuse_guard_op(FSGUARD_OP_BPF_LINK);
		return 0;
	}
	if (w[1] && w[4]) {
		struct bpf_prog *target = caller_prog(w[1], &unsure);

		if (unsure || (target && uses_guard_map(target)))
			return refuse_guard_op(FSGUARD_OP_BPF_LINK);
	}
	prog = caller_prog(w[0], &unsure);
	if (attached_to_guard(prog))
		return refuse_guard_op(FSGUARD_OP_BPF_LINK);
	/* An extension ignores the attach type, but none exists from the freeze on (none is
	 * loaded; the scan before the raise refused those from before). */
	if (frozen && (w[2] == BPF_MODIFY_RETURN || w[2] == BPF_LSM_MAC || w[2] == BPF_LSM_CGROUP))
		return refuse_guard_op(FSGUARD_OP_BPF_LINK);
	if (w[2] == BPF_TRACE_ITER && guard_sealed() && (unsure || !prog || is_map_elem_iter(prog)))
		return refuse_guard_op(FSGUARD_OP_BPF_LINK);
	return 0;
}

/* The shapes of the guard's maps that can be inner maps of a map of maps: one created with
 * such an inner map could hold a guard map and let its programs write it. */
static __always_inline bool guard_shaped(struct bpf_map *m)
{
	__u32 type = BPF_CORE_READ(m, map_type), k = BPF_CORE_READ(m, key_size),
	      v = BPF_CORE_READ(m, value_size);

	switch (type) {
	case BPF_MAP_TYPE_ARRAY:
		return k == 4 && (v == sizeof(struct fsguard_config) ||
				  v == sizeof(struct fsguard_capsule) ||
				  v == sizeof(struct fsguard_state) || v == sizeof(__u64) ||
				  v == sizeof(struct fsguard_fs_mark));
	case BPF_MAP_TYPE_PERCPU_ARRAY:
		return k == 4 && (v == sizeof(struct fsguard_stats) ||
				  v == sizeof(struct fsguard_ratelimit));
	case BPF_MAP_TYPE_HASH:
		return (k == sizeof(struct fsguard_inode_key) &&
			(v == sizeof(struct fsguard_inode_value) || v == sizeof(__u32))) ||
		       (k == sizeof(__u64) &&
			(v == sizeof(__u32) || v == sizeof(struct fsguard_request)));
	case BPF_MAP_TYPE_LRU_HASH:
		return k == sizeof(__u64) && v == sizeof(struct fsguard_result);
	case BPF_MAP_TYPE_RINGBUF:
	case BPF_MAP_TYPE_TASK_STORAGE:
	case BPF_MAP_TYPE_INODE_STORAGE:
		return true;
	}
	return false;
}

/* A new map of maps whose inner maps could be the guard's: refused from the freeze on. */
SEC("lsm/bpf_map_alloc_security")
int BPF_PROG(fsguard_bpf_map_alloc, struct bpf_map *map, int ret)
{
	__u32 type;
	struct bpf_map *inner;

	if (ret)
		return ret;
	type = BPF_CORE_READ(map, map_type);
	if (type != BPF_MAP_TYPE_ARRAY_OF_MAPS && type != BPF_MAP_TYPE_HASH_OF_MAPS)
		return 0;
	inner = BPF_CORE_READ(map, inner_map_meta);
	if (!guard_sealed() || (inner && !guard_shaped(inner)))
		return 0;
	return refuse_guard_op(FSGUARD_OP_BPF_MAP);
}

static __always_inline bool same_name(const char *a, const char *b)
{
	int i;

#pragma unroll
	for (i = 0; i < FSGUARD_NAME_LEN; i++) {
		if (a[i] != b[i])
			return false;
		if (!a[i])
			return true;
	}
	return true;
}

static __always_inline bool apply_capsule(__u32 slot, struct fsguard_capsule *want)
{
	struct fsguard_capsule *have = bpf_map_lookup_elem(&capsules, &slot);

	if (!have || slot == 0 || !(want->flags & FSGUARD_CAPSULE_ACTIVE) ||
	    (want->flags & (FSGUARD_CAPSULE_COMPLETE | FSGUARD_CAPSULE_TAINTED)))
		return false;
	if (have->flags & FSGUARD_CAPSULE_ACTIVE)
		/* Taken: fine only if it is the same capsule (an idempotent `enforce`). */
		return have->cgroup_id == want->cgroup_id &&
		       (have->flags & ~(FSGUARD_CAPSULE_COMPLETE | FSGUARD_CAPSULE_TAINTED)) ==
			       want->flags &&
		       same_name(have->name, want->name);
	/* An inside that is everybody (the root cgroup), another capsule's cgroup or one above
	 * one: its members could reach that capsule's processes (and marks made there last). */
	if ((want->flags & FSGUARD_CAPSULE_HAS_CGROUP) &&
	    (want->cgroup_level == 0 || want->cgroup_id == CGROUP2_ROOT_ID ||
	     bpf_map_lookup_elem(&cgroup_capsules, &want->cgroup_id) ||
	     bpf_map_lookup_elem(&cgroup_ancestors, &want->cgroup_id)))
		return false;
	if (bpf_map_update_elem(&capsules, &slot, want, BPF_ANY))
		return false;
	bpf_map_update_elem(&capsules_view, &slot, want, BPF_ANY);
	return true;
}

static __always_inline bool slot_active(__u32 slot)
{
	struct fsguard_capsule *c = bpf_map_lookup_elem(&capsules, &slot);

	return c && (c->flags & FSGUARD_CAPSULE_ACTIVE);
}

/* A slot whose capsule has no processes inside (no cgroup): its tree is frozen for all. */
static __always_inline bool slot_has_no_inside(__u32 slot)
{
	struct fsguard_capsule *c = bpf_map_lookup_elem(&capsules, &slot);

	return c && (c->flags & FSGUARD_CAPSULE_ACTIVE) && !(c->flags & FSGUARD_CAPSULE_HAS_CGROUP);
}

/* What applying a request came to. */
#define APPLIED 1
#define REJECTED 0
/* The `inodes` map's allocator had no element at hand (its per-CPU cache is refilled by an
 * irq_work, which may not have run yet or may have failed to allocate): the request is to
 * be tried again. */
#define RETRY -1

/* Whether capsule `slot` is completed: its tree is in, nothing more is added to it. */
static __always_inline bool slot_complete(__u32 slot)
{
	struct fsguard_capsule *c = bpf_map_lookup_elem(&capsules, &slot);

	return c && (c->flags & FSGUARD_CAPSULE_COMPLETE);
}

/* One more inode or exec trust added to capsule `slot` by a request. */
static __always_inline void count_claim(__u32 slot)
{
	__u32 *n = bpf_map_lookup_elem(&claims, &slot);

	if (n)
		__sync_fetch_and_add(n, 1);
}

/* FSGUARD_REQ_COMPLETE: the capsule's tree is in. Its count of what requests added is the
 * sealer's, or something slipped in while it was sealed: then it is tainted (nothing runs
 * inside) and the request rejected, which the sealer reports. */
static __always_inline bool apply_complete(__u32 slot, __u64 expected)
{
	struct fsguard_capsule *c = bpf_map_lookup_elem(&capsules, &slot);
	__u32 *n = bpf_map_lookup_elem(&claims, &slot);

	if (!c || !n || slot == 0 || !(c->flags & FSGUARD_CAPSULE_ACTIVE))
		return false;
	if (c->flags & FSGUARD_CAPSULE_COMPLETE)
		return !(c->flags & FSGUARD_CAPSULE_TAINTED);
	c->flags |= FSGUARD_CAPSULE_COMPLETE;
	if (*n != expected)
		c->flags |= FSGUARD_CAPSULE_TAINTED;
	bpf_map_update_elem(&capsules_view, &slot, c, BPF_ANY);
	return !(c->flags & FSGUARD_CAPSULE_TAINTED);
}

/* FSGUARD_REQ_EXEC_TRUST: capsule `slot` may run the sealed entries of capsule `base`;
 * added only before the capsule is completed (counted), and never to the guard's slot. */
static __always_inline bool apply_exec_trust(__u32 slot, __u64 base)
{
	__u64 key;
	__u32 one = 1;

	if (!slot_active(slot) || base == 0 || base >= FSGUARD_MAX_CAPSULES || base == slot)
		return false;
	key = exec_trust_key(slot, (__u32)base);
	if (bpf_map_lookup_elem(&exec_trust, &key))
		return true;
	if (slot_complete(slot) || bpf_map_update_elem(&exec_trust, &key, &one, BPF_NOEXIST))
		return false;
	count_claim(slot);
	return true;
}

static __always_inline int apply_inode(struct fsguard_request *r)
{
	struct fsguard_inode_key key = { .dev = r->a, .ino = r->b };
	struct fsguard_inode_value value = { .capsule = r->slot,
					     .flags = r->flags | FSGUARD_INODE_CLAIMED };
	struct fsguard_inode_value *have;
	int err;

	/* Not a kernel dev_t (32 bits), and never the map's completeness key. */
	if (!slot_active(r->slot) || r->a > 0xffffffffull ||
	    (r->flags & ~(FSGUARD_INODE_FROZEN | FSGUARD_INODE_APPEND_ONLY | FSGUARD_INODE_BACKING)) ||
	    r->flags == (FSGUARD_INODE_FROZEN | FSGUARD_INODE_APPEND_ONLY) ||
	    ((r->flags & FSGUARD_INODE_BACKING) && r->flags != FSGUARD_INODE_BACKING))
		return REJECTED;
	/* The filesystem first: without it, the directory cache could tell that nothing on it
	 * is protected. No room: the map stops being trusted. */
	if (!bpf_map_lookup_elem(&entry_filesystems, &r->a) &&
	    bpf_map_update_elem(&entry_filesystems, &r->a, &r->slot, BPF_NOEXIST) &&
	    !bpf_map_lookup_elem(&entry_filesystems, &r->a)) {
		__u64 complete = FSGUARD_ENTRY_FILESYSTEMS_COMPLETE;

		bpf_map_delete_elem(&entry_filesystems, &complete);
	}
	/* A directory above a sealed root or above the guard's pins is a capsule's (or the
	 * guard's) already, in `ancestors` or `pin_path`: an entry of its own would speak for
	 * it first (decide_mountpoint). */
	if (bpf_map_lookup_elem(&ancestors, &key) || bpf_map_lookup_elem(&pin_path, &key))
		return REJECTED;
	if (!raise_mark(&key))
		return REJECTED;
	/* A completed capsule takes no new inode: what it held when completed is its tree. */
	if (slot_complete(r->slot)) {
		have = bpf_map_lookup_elem(&inodes, &key);
		return have && have->capsule == r->slot && have->flags == value.flags ? APPLIED :
											 REJECTED;
	}
	/* (int): see adopt(). */
	err = (int)bpf_map_update_elem(&inodes, &key, &value, BPF_NOEXIST);
	if (!err) {
		count_claim(r->slot);
		return APPLIED;
	}
	if (err == -ENOMEM)
		return RETRY;
	/*
	 * Known already (or the map is full): applied only if the request asks for exactly what
	 * is there (an idempotent `enforce`; anything else would let an earlier request's flags
	 * pass for the requester's). Flags are never added to an entry, nor anything to another
	 * capsule's: anyone may leave requests, and "frozen" on a capsule's file, or a second
	 * capsule's hold on it, would take from that capsule what it may do.
	 */
	have = bpf_map_lookup_elem(&inodes, &key);
	if (have && have->capsule == r->slot && have->flags == value.flags)
		return APPLIED;
	/* One tightening: append-only to frozen, in a slot nobody is inside of (the registry's:
	 * a capsule's directory once its seal is recorded). It takes nothing from any process
	 * inside, only the additions root outside could still make. */
	if (have && have->capsule == r->slot &&
	    have->flags == (FSGUARD_INODE_APPEND_ONLY | FSGUARD_INODE_CLAIMED) &&
	    value.flags == (FSGUARD_INODE_FROZEN | FSGUARD_INODE_CLAIMED) && slot_has_no_inside(r->slot)) {
		have->flags = value.flags;
		return APPLIED;
	}
	return REJECTED;
}

static __always_inline bool apply_slot_key(void *map, void *key, __u32 slot)
{
	__u32 *have;

	if (!bpf_map_update_elem(map, key, &slot, BPF_NOEXIST))
		return true;
	have = bpf_map_lookup_elem(map, key);
	return have && *have == slot;
}

static __always_inline bool apply_level(__u32 level, struct fsguard_state *st)
{
	__u32 zero = 0;
	struct fsguard_config *cfg = bpf_map_lookup_elem(&config, &zero);

	if (!cfg || level > FSGUARD_LEVEL_LOCKED || level < current_level())
		return false;
	/* Above 0 only once no descriptor opened earlier can write the guard's maps. */
	if (level >= FSGUARD_LEVEL_SEALED && !guard_frozen())
		return false;
	cfg->level = level;
	cfg->magic = FSGUARD_MAGIC;
	cfg->version = FSGUARD_ABI_VERSION;
	st->level = level;
	return true;
}

/* APPLIED, REJECTED or RETRY (inode requests only). */
static __always_inline int apply_request(struct fsguard_request *r, struct fsguard_state *st)
{
	struct fsguard_inode_key ikey = { .dev = r->a, .ino = r->b };
	__u64 id = r->a;

	switch (r->kind) {
	case FSGUARD_REQ_INODE:
		return apply_inode(r);
	case FSGUARD_REQ_CAPSULE:
		return apply_capsule(r->slot, &r->capsule);
	case FSGUARD_REQ_CGROUP: {
		/* Only the capsule's own cgroup, named when its slot was filled: otherwise
		 * anybody could make their cgroup the inside of someone else's capsule. */
		struct fsguard_capsule *c = bpf_map_lookup_elem(&capsules, &r->slot);

		if (!c || !(c->flags & FSGUARD_CAPSULE_ACTIVE) ||
		    !(c->flags & FSGUARD_CAPSULE_HAS_CGROUP) || c->cgroup_id != id)
			return false;
		return apply_slot_key(&cgroup_capsules, &id, r->slot);
	}
	case FSGUARD_REQ_LEVEL:
		return apply_level(r->level, st);
	case FSGUARD_REQ_LOCK_TRACING:
		st->tracing_locked = 1;
		return true;
	case FSGUARD_REQ_EXEC_TRUST:
		return apply_exec_trust(r->slot, r->a);
	case FSGUARD_REQ_COMPLETE:
		return apply_complete(r->slot, r->a);
	/* Directories and devices shared by several capsules keep the first one's slot: they
	 * are protected either way (a different slot takes nothing away). */
	case FSGUARD_REQ_ANCESTOR:
		if (!slot_active(r->slot))
			return false;
		return apply_slot_key(&ancestors, &ikey, r->slot) ||
		       bpf_map_lookup_elem(&ancestors, &ikey);
	case FSGUARD_REQ_PIN_PATH: {
		struct fsguard_capsule *c = bpf_map_lookup_elem(&capsules, &r->slot);

		if (!c || !(c->flags & FSGUARD_CAPSULE_GUARD))
			return false;
		return apply_slot_key(&pin_path, &ikey, r->slot) ||
		       bpf_map_lookup_elem(&pin_path, &ikey);
	}
	case FSGUARD_REQ_CGROUP_ANCESTOR: {
		__u32 *have;

		if (!slot_active(r->slot))
			return false;
		if (apply_slot_key(&cgroup_ancestors, &id, r->slot))
			return true;
		/* Asked for by a second capsule (the first may be anybody's, asked for around
		 * the requester's own cgroup): no capsule's members write it any more. */
		have = bpf_map_lookup_elem(&cgroup_ancestors, &id);
		if (!have)
			return false;
		*have = ABOVE_SEVERAL;
		return true;
	}
	case FSGUARD_REQ_DEVICE:
		if (!slot_active(r->slot))
			return false;
		return apply_slot_key(&devices, &id, r->slot) || bpf_map_lookup_elem(&devices, &id);
	}
	return false;
}

#define ROTL64(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                           \
	do {                                                                               \
		v0 += v1; v1 = ROTL64(v1, 13); v1 ^= v0; v0 = ROTL64(v0, 32);              \
		v2 += v3; v3 = ROTL64(v3, 16); v3 ^= v2;                                   \
		v0 += v3; v3 = ROTL64(v3, 21); v3 ^= v0;                                   \
		v2 += v1; v1 = ROTL64(v1, 17); v1 ^= v2; v2 = ROTL64(v2, 32);              \
	} while (0)

/* SipHash-2-4 of the 8 bytes of `m` (little-endian) under key (k0, k1): a MAC nobody can
 * make for a tag without the key, even knowing the tag and the MAC of the first request. */
static __always_inline __u64 siphash_u64(__u64 k0, __u64 k1, __u64 m)
{
	__u64 v0 = k0 ^ 0x736f6d6570736575ull, v1 = k1 ^ 0x646f72616e646f6dull;
	__u64 v2 = k0 ^ 0x6c7967656e657261ull, v3 = k1 ^ 0x7465646279746573ull;
	__u64 b = 8ull << 56;

	v3 ^= m;
	SIPROUND;
	SIPROUND;
	v0 ^= m;
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/* Counts what a tagged request came to under its sender's tag, if its key is the one the
 * tag's first request bound. No room (a new tag evicts the oldest): the sender finds its
 * count short (or the MAC another's), and fails closed. */
static __always_inline void count_result(struct fsguard_request *r, bool applied)
{
	struct fsguard_result *have, fresh = {};
	__u64 tag = r->tag;

	if (!tag)
		return;
	fresh.mac = siphash_u64(r->key[0], r->key[1], tag);
	have = bpf_map_lookup_elem(&results, &tag);
	if (!have) {
		bpf_map_update_elem(&results, &tag, &fresh, BPF_NOEXIST);
		have = bpf_map_lookup_elem(&results, &tag);
		if (!have)
			return;
	}
	if (have->mac != fresh.mac)
		__sync_fetch_and_add(&have->foreign, 1);
	else if (applied)
		__sync_fetch_and_add(&have->applied, 1);
	else
		__sync_fetch_and_add(&have->rejected, 1);
}

/*
 * Every bpf(2) call applies the pending requests, in sequence order, up to
 * FSGUARD_REQUESTS_PER_CALL of them (an empty map costs one lookup): sealtool writes its
 * requests, then makes bpf(2) calls until none is left, and reads `state` to see what was
 * applied or rejected.
 */
SEC("lsm/bpf")
int BPF_PROG(fsguard_bpf, int cmd, union bpf_attr *attr, unsigned int size, int ret)
{
	struct fsguard_request req, *r;
	struct fsguard_state *st;
	__u32 zero = 0;
	__u64 seq;
	int i, res;

	if (ret)
		return ret;
	/*
	 * Level 2: no new program that runs in other processes' context (kprobes, tracepoints,
	 * perf events, fentry/fexit, LSM, extensions): such a program could read or write a
	 * capsule process's memory or signal it, or undo the guard's decisions' effects.
	 */
	/*
	 * From the freeze or level 1 on: no new program that can skip or replace one of the
	 * guard's decisions: an LSM
	 * program (the first nonzero answer on a hook ends it, so one answering -EOPNOTSUPP in
	 * inode_init_security would skip the guard's adoption of a new inode), fmod_ret, an
	 * extension.
	 */
	if (cmd == BPF_PROG_LOAD && guard_sealed()) {
		__u32 type = 0, expected = 0;

		bpf_probe_read_kernel(&type, sizeof(type), attr);
		bpf_probe_read_kernel(&expected, sizeof(expected), (void *)attr + 68);
		if (type == BPF_PROG_TYPE_LSM || type == BPF_PROG_TYPE_EXT ||
		    (type == BPF_PROG_TYPE_TRACING && expected == BPF_MODIFY_RETURN))
			return refuse(NULL, NULL, 0, FSGUARD_OP_BPF_TRACING, FSGUARD_RULE_GUARD,
				      current_level(), current_fsuid());
	}
	if (cmd == BPF_PROG_LOAD && current_level() >= FSGUARD_LEVEL_LOCKED) {
		__u32 type = 0;

		bpf_probe_read_kernel(&type, sizeof(type), attr);
		if (type == BPF_PROG_TYPE_KPROBE || type == BPF_PROG_TYPE_TRACEPOINT ||
		    type == BPF_PROG_TYPE_PERF_EVENT || type == BPF_PROG_TYPE_RAW_TRACEPOINT ||
		    type == BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE || type == BPF_PROG_TYPE_TRACING ||
		    type == BPF_PROG_TYPE_EXT || type == BPF_PROG_TYPE_LSM)
			return refuse(NULL, NULL, 0, FSGUARD_OP_BPF_TRACING, FSGUARD_RULE_LOCKED,
				      current_level(), current_fsuid());
	}
	if (cmd == BPF_LINK_CREATE || cmd == BPF_RAW_TRACEPOINT_OPEN || cmd == BPF_PROG_ATTACH ||
	    cmd == BPF_LINK_UPDATE) {
		res = decide_attach(cmd, attr);
		if (res)
			return res;
	}
	st = bpf_map_lookup_elem(&state, &zero);
	if (!st)
		return 0;
	for (i = 0; i < FSGUARD_REQUESTS_PER_CALL; i++) {
		seq = st->next;
		r = bpf_map_lookup_elem(&requests, &seq);
		if (!r)
			break;
		req = *r;
		/* Whoever deletes a request applies it and moves `next` on, so two bpf(2) calls
		 * at once neither apply a request twice nor skip one. */
		if (bpf_map_delete_elem(&requests, &seq))
			break;
		res = apply_request(&req, st);
		/* Whatever it changed, cached answers from before it are stale. */
		if (res == APPLIED)
			bump_dir_cache_epoch();
		/* Put back for the next bpf(2) call (the element just freed makes room); a request
		 * that can't be put back is rejected, so that its sender hears of it. */
		if (res == RETRY) {
			if (!bpf_map_update_elem(&requests, &seq, &req, BPF_NOEXIST))
				break;
			res = REJECTED;
		}
		if (res == APPLIED)
			__sync_fetch_and_add(&st->applied, 1);
		else
			__sync_fetch_and_add(&st->rejected, 1);
		count_result(&req, res == APPLIED);
		st->next = seq + 1;
	}
	st->magic = FSGUARD_MAGIC;
	return 0;
}

/* GPL-compatible, as BTF-attached (LSM) programs require; matches the project's BSD-2. */
char LICENSE[] SEC("license") = "Dual BSD/GPL";
