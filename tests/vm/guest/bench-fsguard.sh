#!/bin/sh
# Guest side of scripts/bench-fsguard: fsguard's hook overhead on a file-operation workload
# (create, write 4 KiB, rename, unlink), inside and outside a capsule, in one boot.
#
# Under TCG with the host's clock a guest's speed drifts by tens of percent over a minute
# (with instruction counting, scripts/bench-fsguard's default, pairs agree to a few tenths of
# a percent), so "without" and "with" are measured in adjacent pairs, and the pairs' ratios
# are compared: the guard is
# detached between measurements by removing its link pins (it runs at level 0, where that is
# still possible) and attached again with its maps, and so its entries, intact.
set -eu
N=${BENCH_OPS:-2000}
ROUNDS=${BENCH_ROUNDS:-2}
PAIRS=${BENCH_PAIRS:-8}
ENTRIES=${BENCH_ENTRIES:-100000}
MORE=${BENCH_MORE:-1000000}
export CAPSULE_REGISTRY=/var/lib/capsule
mkdir -p /jails /work
mount -t tmpfs -o size=2g tmpfs /jails
mount -t tmpfs -o size=1g tmpfs /work
mkdir -p /jails/app/scratch /work/outside /sys/fs/cgroup/app
fsops-bench populate /jails/app/tree "$ENTRIES"

# fsops-bench in the capsule: a server started in its cgroup before the seal (once sealed,
# nothing outside may join the cgroup), asked through fifos. Both sides wait in blocking
# opens, so nothing polls while a workload is timed: the guest's clock counts every
# instruction the CPU executes, and a poller's (a shell loop forking sleep every 20 ms, as
# the suites' inside agent does) would be counted, with the guard's cost on each of its
# forks and execs, as the workload's. fsops-bench times itself, so the round trip is not
# measured.
mkfifo /tmp/bench.req /tmp/bench.rep
(
    echo 0 >/sys/fs/cgroup/app/cgroup.procs || exit 1
    exec fsops-bench serve /tmp/bench.req /tmp/bench.rep
) &
server=$!
# A server that is gone (it could not join the cgroup, or failed on a fifo) would leave the
# fifo opens waiting forever: each side of a request has a deadline (in the guest's time,
# which here counts instructions: a round of the workload is well under a second of it;
# busybox timeout's watcher wakes once a second for a kill(0), next to nothing).
in_capsule() { # ops DIR N ROUNDS | where
    kill -0 "$server" 2>/dev/null || { echo "bench: the inside server is gone" >&2; exit 1; }
    timeout 60 sh -c 'echo "$1" >/tmp/bench.req' - "$*" ||
        { echo "bench: the inside server took no request" >&2; exit 1; }
    reply=$(timeout 900 sh -c 'read -r r </tmp/bench.rep && echo "$r"') ||
        { echo "bench: the inside server gave no answer" >&2; exit 1; }
    case $reply in error:*) echo "bench: inside: $reply" >&2; exit 1 ;; esac
    echo "$reply"
}
where=$(in_capsule where)
[ "$where" = "0::/app" ] || { echo "bench: the inside server is in $where, not 0::/app" >&2; exit 1; }
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a < b) ? a : b }'; }
detach() { rm -f /sys/fs/bpf/fsguard/link_*; }
attach() { fsguard-loadbench 0 >/dev/null; }

# One phase: PAIRS x (without, with), each measurement the best of ROUNDS rounds. A pair's two
# halves run back to back, so the guest's drift mostly cancels in the pair's ratio; prints
# the median pair ratio and the range of the pair ratios.
phase() {
    : >/tmp/pairs
    for _ in $(seq "$PAIRS"); do
        detach
        wo=$(fsops-bench ops /work/outside "$N" "$ROUNDS")
        wi=$(in_capsule ops /jails/app/scratch "$N" "$ROUNDS")
        attach
        go=$(fsops-bench ops /work/outside "$N" "$ROUNDS")
        gi=$(in_capsule ops /jails/app/scratch "$N" "$ROUNDS")
        echo "$wo $wi $go $gi" >>/tmp/pairs
    done
    awk '{ print $3 / $1 }' /tmp/pairs | sort -n >/tmp/ratios.out
    awk '{ print $4 / $2 }' /tmp/pairs | sort -n >/tmp/ratios.in
    median() { awk '{ v[NR] = $1 } END { printf "%.3f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }' "$1"; }
    range() { awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.3f-%.3f", lo, hi }' "$1"; }
    awk '{ a += $1; b += $2; c += $3; d += $4 }
        END { printf "  mean seconds: without fsguard outside %.4f, inside %.4f; with: outside %.4f, inside %.4f\n",
              a / NR, b / NR, c / NR, d / NR }' /tmp/pairs
    echo "  ratio outside $(median /tmp/ratios.out) (pairs $(range /tmp/ratios.out)), inside $(median /tmp/ratios.in) (pairs $(range /tmp/ratios.in))"
}

# Where the guard's time goes: the kernel's run count and run time of each program (bpf_stats
# on only here, since counting costs time too) over one workload, per file of the workload.
profile() { # LABEL COMMAND...
    label=$1
    shift
    echo 1 >/proc/sys/kernel/bpf_stats_enabled
    bpf-probe prog-stats >/tmp/stats.0
    secs=$("$@")
    bpf-probe prog-stats >/tmp/stats.1
    echo 0 >/proc/sys/kernel/bpf_stats_enabled
    echo "  $label: best round ${secs}s for $N files; per file (all $ROUNDS rounds), the programs that ran:"
    awk -v files=$((N * ROUNDS)) '
        NR == FNR { cnt[$1] = $3; ns[$1] = $4; next }
        { dc = $3 - cnt[$1]; dn = $4 - ns[$1]
          if (dc > 0) printf "%s %.2f %.0f\n", $2, dc / files, dn / files }' \
        /tmp/stats.0 /tmp/stats.1 >/tmp/stats.d
    sort -k3 -n -r /tmp/stats.d | awk '{ printf "    %-16s %6.2f runs %8s ns\n", $1, $2, $3 }'
    # secs: the best round of N files.
    awk -v secs="$secs" -v n="$N" '{ t += $3 }
        END { printf "    all programs: %.0f ns per file, %.1f%% of the best round'"'"'s time per file\n",
              t, 100 * t / (secs * 1e9 / n) }' /tmp/stats.d
}

sealtool level 0 >/dev/null
sealtool -q register /jails/app >/dev/null
sealtool seal app --cgroup /sys/fs/cgroup/app | grep 'enforced by'
echo "workload: $N files x (create, write 4 KiB, rename, unlink); $PAIRS pairs of (without, with), each the best of $ROUNDS rounds"
echo "with $ENTRIES sealed entries:"
phase
echo "where the time goes (guard attached):"
profile "outside" fsops-bench ops /work/outside "$N" "$ROUNDS"
profile "inside" in_capsule ops /jails/app/scratch "$N" "$ROUNDS"
fsguard-loadbench "$MORE"
echo "with $MORE more entries:"
phase
