// SPDX-License-Identifier: BSD-2-Clause
/*
 * attack.bpf.c - programs an attacker with root outside a capsule loads against the guard
 * (tests/src/bin/guard-attack.rs, compiled by tests/build.rs). Not part of the product.
 */
typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef short __s16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
#include <bpf/bpf_helpers.h>

/* The capsule slot the replacements answer: set at load. */
volatile const __u32 slot = 0;

/* Replaces the guard's fsguard_current_capsule: everybody is inside capsule `slot`. */
SEC("freplace/fsguard_current_capsule")
__u32 everyone_inside(void)
{
	return slot;
}

/* The attacker's own program, with a global function of the same shape as the guard's. */
__attribute__((noinline)) __u32 own_capsule(void)
{
	return slot + 1;
}

SEC("socket")
int own_filter(void *skb)
{
	return own_capsule() ? 0 : 1;
}

/* The attacker's own LSM program (of the guard's type, so that an extension loaded for it
 * can be attached to the guard's programs instead); it refuses nothing. */
SEC("lsm/file_open")
int own_lsm(unsigned long long *ctx)
{
	return own_capsule() == 0xffffffff ? -1 : 0;
}

/* Answers "no attribute" in inode_init_security: running before the guard's program there, it
 * ends the hook's run, so the guard never adopts the new inode into its directory's capsule. */
SEC("lsm/inode_init_security")
int skip_init_security(unsigned long long *ctx)
{
	return -95; /* -EOPNOTSUPP */
}

/* Loaded against own_lsm's own_capsule, then attached to the guard's function instead. */
SEC("freplace/own_capsule")
__u32 retarget(void)
{
	return slot;
}

char LICENSE[] SEC("license") = "GPL";
