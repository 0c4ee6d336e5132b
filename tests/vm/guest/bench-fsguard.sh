#!/bin/sh
# Guest side of scripts/bench-fsguard: the same file-operation workload, inside and outside a
# capsule, without fsguard and then with fsguard loaded and 100,000 sealed entries, in one
# boot. Prints one line per measurement and the ratios.
set -eu
N=${BENCH_OPS:-2000}
ROUNDS=${BENCH_ROUNDS:-5}
ENTRIES=${BENCH_ENTRIES:-100000}
export CAPSULE_REGISTRY=/var/lib/capsule
mkdir -p /jails /work
mount -t tmpfs -o size=2g tmpfs /jails
mount -t tmpfs -o size=1g tmpfs /work
mkdir -p /jails/app/scratch /work/outside /sys/fs/cgroup/app
fsops-bench populate /jails/app/tree "$ENTRIES"

inside() { # run fsops-bench in the capsule's cgroup
    sh -c 'echo $$ > /sys/fs/cgroup/app/cgroup.procs; exec fsops-bench "$@"' sh "$@"
}
measure() {
    out=$(fsops-bench ops /work/outside "$N" "$ROUNDS")
    ins=$(inside ops /jails/app/scratch "$N" "$ROUNDS")
    echo "$out $ins"
}
set -- $(measure)
base_out=$1 base_in=$2
echo "without fsguard: outside ${base_out}s, inside ${base_in}s ($N files x create/write/rename/unlink, best of $ROUNDS)"

sealtool -q register /jails/app >/dev/null
t0=$(date +%s)
sealtool seal app --cgroup /sys/fs/cgroup/app >/dev/null
t1=$(date +%s)
sealtool status | sed -n '1,3p'
set -- $(measure)
with_out=$1 with_in=$2
echo "with fsguard ($ENTRIES+ sealed entries, sealed in $((t1 - t0))s): outside ${with_out}s, inside ${with_in}s"
awk -v a="$with_out" -v b="$base_out" -v c="$with_in" -v d="$base_in" \
    'BEGIN { printf "ratio outside %.3f, inside %.3f\n", a / b, c / d }'

# A million more entries: loading them, and the same workload again (cost must not grow).
fsguard-loadbench "${BENCH_MORE:-1000000}"
set -- $(measure)
echo "with fsguard and ${BENCH_MORE:-1000000} more entries: outside ${1}s, inside ${2}s"
awk -v a="$1" -v b="$base_out" -v c="$2" -v d="$base_in" \
    'BEGIN { printf "ratio outside %.3f, inside %.3f\n", a / b, c / d }'
