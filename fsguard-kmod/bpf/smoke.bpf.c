// SPDX-License-Identifier: BSD-2-Clause
/*
 * smoke.bpf.c - minimal BPF LSM program proving the fsguard enforcement path end to end:
 * on lsm/file_open it refuses (-EPERM) an open for write (FMODE_WRITE) of any inode whose
 * (dev, ino) is in the `deny_inodes` hash map with FSGUARD_DENY_WRITE set, as long as the
 * `config` map holds a valid config at FSGUARD_LEVEL_ENFORCE. Loaded by src/smoke.rs.
 */
#include "vmlinux_min.h"
#include "fsguard.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fsguard_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096); /* a handful of test files */
	__type(key, struct fsguard_inode_key);
	__type(value, __u32); /* FSGUARD_DENY_* bits */
} deny_inodes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fsguard_stats);
} stats SEC(".maps");

static __always_inline bool enforcing(void)
{
	__u32 zero = 0;
	struct fsguard_config *cfg = bpf_map_lookup_elem(&config, &zero);

	return cfg && cfg->magic == FSGUARD_MAGIC && cfg->version == FSGUARD_ABI_VERSION &&
	       cfg->level == FSGUARD_LEVEL_ENFORCE;
}

SEC("lsm/file_open")
int BPF_PROG(smoke_file_open, struct file *file, int ret)
{
	struct fsguard_inode_key key = {};
	struct fsguard_stats *st;
	struct inode *inode;
	__u32 zero = 0;
	__u32 *deny;

	/* An earlier LSM program already refused: keep its verdict. */
	if (ret != 0)
		return ret;
	if (!(file->f_mode & FMODE_WRITE))
		return 0;
	if (!enforcing())
		return 0;

	inode = file->f_inode;
	if (!inode)
		return 0;
	key.dev = inode->i_sb->s_dev;
	key.ino = inode->i_ino;

	deny = bpf_map_lookup_elem(&deny_inodes, &key);
	if (!deny || !(*deny & FSGUARD_DENY_WRITE))
		return 0;

	st = bpf_map_lookup_elem(&stats, &zero);
	if (st)
		st->denied++;
	return -EPERM;
}

/* GPL-compatible, as BTF-attached (LSM) programs require; matches the project's BSD-2. */
char LICENSE[] SEC("license") = "Dual BSD/GPL";
