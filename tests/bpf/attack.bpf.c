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

/* Loaded against own_capsule, then attached to the guard's function instead (retargeted). */
SEC("freplace/own_capsule")
__u32 retarget(void)
{
	return slot;
}

char LICENSE[] SEC("license") = "GPL";
