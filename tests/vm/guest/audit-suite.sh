#!/bin/sh
# audit-suite.sh: end-to-end checks of the audit log (`sealtool audit`), run as root in the
# test guest (tests/vm/run; busybox sh), the guard at level 1:
#
#   - `sealtool seal` starts a collector; a collector (`sealtool audit --collect`) runs; a
#     second one waits as a standby;
#   - known refused attempts (root and user writing a sealed file, an unlink) appear in
#     `sealtool audit --json` and in the human output with the right capsule, operation, rule,
#     level, path, pid, uid and command name, and in syslog;
#   - --capsule and --since select them; `--check` passes;
#   - a flood of AUDIT_FLOOD_N (default 1000000) refused open(O_WRONLY) attempts: every one
#     answers EPERM, the guest stays responsive, the kernel's refusal counter grows by exactly
#     N, and the log accounts for exactly N (refusal records + lost counts); overall, the log
#     accounts for every refusal the kernel counted;
#   - the collector stops on SIGTERM; events another reader takes from the ring buffer
#     (bpf-probe ringbuf-take) while no collector runs are counted as taken by the next
#     one (and those nobody took recorded one by one: the control); editing a record (audit-tamper, tests/src/bin) makes
#     `--check` exit 1 naming it.
#
# Output: `PASS: <what>` / `FAIL: <what> (...)` / `NOTE: <what>` lines, then
# `audit-suite: N passed, M failed`. Exit 0 when M is 0, 1 otherwise.

set -u
LOG=/tmp/audit-suite.log
CG=/sys/fs/cgroup/app
REG=/var/lib/capsule
PINS=/sys/fs/bpf/fsguard
N=${AUDIT_FLOOD_N:-1000000}
: >"$LOG"
pass=0
fail=0

ok() {
    pass=$((pass + 1))
    echo "PASS: $1"
}
bad() {
    fail=$((fail + 1))
    echo "FAIL: $1"
}
note() { echo "NOTE: $*"; }
expect() { # WHAT EXPECTED GOT
    if [ "$2" = "$3" ]; then ok "$1"; else bad "$1 (expected $2, got ${3:-nothing})"; fi
}
contains() { # WHAT TEXT NEEDLE
    case "$2" in
        *"$3"*) ok "$1" ;;
        *) bad "$1 (expected output containing '$3', got: $(printf '%s' "$2" | tail -n 5 | tr '\n' '|'))" ;;
    esac
}
finish() {
    [ -n "${COLL:-}" ] && kill "$COLL" 2>/dev/null
    if [ "$fail" -gt 0 ]; then
        echo "--- diagnostics ($LOG, last 60 lines):"
        tail -n 60 "$LOG"
    fi
    echo "audit-suite: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit $?
}
die() {
    bad "setup: $*"
    finish
}
now() { date +%s; }

# jfield LINE KEY: the value of KEY in a flat JSON object (strings without their quotes).
jfield() {
    printf '%s\n' "$1" | sed -nE "s/.*\"$2\":(\"[^\"]*\"|[0-9-]+|null).*/\1/p" | tr -d '"'
}

# totals: "RECORDED RATELIMITED DROPPED" over the whole log.
totals() {
    sealtool audit --json 2>>"$LOG" | awk '
        /"kind":"refusal"/ { r++ }
        /"kind":"lost"/ {
            if (match($0, /"ratelimited":[0-9]+/)) rl += substr($0, RSTART + 14, RLENGTH - 14)
            if (match($0, /"dropped":[0-9]+/)) dr += substr($0, RSTART + 10, RLENGTH - 10)
            if (match($0, /"taken":[0-9]+/)) tk += substr($0, RSTART + 8, RLENGTH - 8)
        }
        END { printf "%d %d %d %d\n", r, rl, dr, tk }'
}
accounted() { set -- $(totals); echo $(($1 + $2 + $3 + $4)); }
denied() { sealtool status 2>>"$LOG" | sed -n 's/^refusals *\([0-9]*\).*/\1/p'; }

# ----------------------------------------------------------------------------- setup
syslogd -n -O /tmp/messages >>"$LOG" 2>&1 &
SYSLOGD=$!
mkdir -p /jails && mount -t tmpfs -o mode=0755 tmpfs /jails || die "cannot mount tmpfs on /jails"
mkdir -p "$CG" || die "cannot create $CG"
mkdir -p /jails/app/etc
echo data >/jails/app/file
echo data >/jails/app/victim
echo data >/jails/app/etc/conf
# Permissions let the user write and unlink: only the guard refuses.
chmod 0666 /jails/app/file && chmod 0777 /jails/app
out=$(sealtool register /jails/app --name app --seal --cgroup "$CG" 2>&1)
rc=$?
echo "$out" >>"$LOG"
expect "sealtool register --seal app exits 0" 0 "$rc"
expect "the guard is at level 1" 1 "$(sealtool level 2>>"$LOG")"

# ----------------------------------------------------------------------------- collector
# The seal started a collector of its own (in the background, detached): found, then
# stopped, so that this suite's own collector below is the one whose exit it can check.
collectors() { # pids of running `sealtool ... audit --collect`
    for d in /proc/[0-9]*; do
        tr '\0' ' ' <"$d/cmdline" 2>/dev/null | grep -q 'audit --collec[t]' && echo "${d#/proc/}"
    done
}
sleep 1
AUTO=$(collectors)
if [ -n "$AUTO" ]; then ok "sealtool seal started the collector (pid $AUTO)"; else bad "sealtool seal started the collector"; fi
for p in $AUTO; do kill -TERM "$p"; done
i=0
while [ -n "$(collectors)" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if [ -z "$(collectors)" ]; then ok "the collector seal started ends on SIGTERM"; else bad "the collector seal started ends on SIGTERM"; fi
sealtool audit --collect >>"$LOG" 2>&1 &
COLL=$!
sleep 1
if kill -0 "$COLL" 2>/dev/null; then ok "the collector runs"; else die "the collector exited at once"; fi
sealtool audit --collect >/tmp/second.out 2>&1 &
SECOND=$!
sleep 2
if kill -0 "$SECOND" 2>/dev/null; then
    ok "a second collector waits as a standby"
else
    bad "a second collector waits as a standby (it exited: $(cat /tmp/second.out))"
fi
contains "the second collector says another one runs" "$(cat /tmp/second.out)" "another collector runs (pid $COLL)"
kill "$SECOND" 2>/dev/null
sleep 1
if kill -0 "$SECOND" 2>/dev/null; then
    bad "a standby collector ends on SIGTERM"
    kill -9 "$SECOND" 2>/dev/null
else
    ok "a standby collector ends on SIGTERM"
fi
wait "$SECOND" 2>/dev/null

# ----------------------------------------------------------------------------- known refusals
t0=$(now)
P1=$(sh -c 'echo $$; echo x >/jails/app/file' 2>>"$LOG")
P2=$(runas user sh -c 'echo $$; echo x >/jails/app/file' 2>>"$LOG")
P3=$(sh -c 'echo $$; exec rm -f /jails/app/victim' 2>>"$LOG")
expect "root outside: the write was refused" data "$(cat /jails/app/file)"
[ -e /jails/app/victim ] && ok "root outside: the unlink was refused" || bad "root outside: the unlink was refused"

# The collector writes within 250 ms; give it time under TCG.
i=0
while [ "$i" -lt 40 ]; do
    n=$(sealtool audit --json 2>>"$LOG" | grep -c '"kind":"refusal"')
    [ "$n" -ge 3 ] && break
    sleep 0.5
    i=$((i + 1))
done
JSON=$(sealtool audit --json 2>>"$LOG")
echo "$JSON" >>"$LOG"
expect "sealtool audit --json: 3 refusals recorded" 3 "$(printf '%s\n' "$JSON" | grep -c '"kind":"refusal"')"

# INODE: the protected inode that decided (for an unlink, the directory: removing a name
# modifies it; the path still names the entry).
check_record() { # WHAT PID OP UID COMM PATH INODE
    line=$(printf '%s\n' "$JSON" | grep "\"pid\":$2[,}]" | head -n 1)
    if [ -z "$line" ]; then
        bad "$1: a record with pid $2"
        return
    fi
    expect "$1: kind" refusal "$(jfield "$line" kind)"
    expect "$1: capsule" app "$(jfield "$line" capsule)"
    expect "$1: op" "$3" "$(jfield "$line" op)"
    expect "$1: rule" outside "$(jfield "$line" rule)"
    expect "$1: level" 1 "$(jfield "$line" level)"
    expect "$1: uid" "$4" "$(jfield "$line" uid)"
    expect "$1: comm" "$5" "$(jfield "$line" comm)"
    expect "$1: path" "$6" "$(jfield "$line" path)"
    expect "$1: target_pid" 0 "$(jfield "$line" target_pid)"
    ino=$(stat -c %i "$7" 2>/dev/null)
    expect "$1: ino" "$ino" "$(jfield "$line" ino)"
    dev=$(stat -c %d /jails)
    expect "$1: dev" "$((dev >> 8 & 0xfff)):$((dev & 0xff))" "$(jfield "$line" dev)"
    ts=$(jfield "$line" time_ns)
    s=$((ts / 1000000000))
    if [ "$s" -ge "$t0" ] && [ "$s" -le "$(now)" ]; then
        ok "$1: time is wall-clock time of the attempt"
    else
        bad "$1: time is wall-clock time of the attempt ($s not in $t0..$(now))"
    fi
    cg=$(jfield "$line" cgroup_id)
    [ "${cg:-0}" -gt 0 ] && ok "$1: cgroup id" || bad "$1: cgroup id ($cg)"
    case "$(jfield "$line" time)" in
        20[0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z) ok "$1: time is RFC 3339" ;;
        *) bad "$1: time is RFC 3339 ($(jfield "$line" time))" ;;
    esac
}
check_record "root write" "$P1" open-write 0 sh /jails/app/file /jails/app/file
check_record "user write" "$P2" open-write 1000 sh /jails/app/file /jails/app/file
check_record "root unlink" "$P3" unlink 0 rm /jails/app/victim /jails/app

HUMAN=$(sealtool audit 2>>"$LOG")
contains "sealtool audit: a line for the root write" "$HUMAN" \
    "app open-write refused (outside, level 1): /jails/app/file by pid $P1 uid 0 comm sh"
contains "sealtool audit: a line for the unlink" "$HUMAN" \
    "app unlink refused (outside, level 1): /jails/app/victim by pid $P3 uid 0 comm rm"
expect "sealtool audit --capsule app shows them" 3 \
    "$(sealtool audit --json --capsule app 2>>"$LOG" | grep -c '"kind":"refusal"')"
expect "sealtool audit --capsule other shows none" 0 \
    "$(sealtool audit --json --capsule other 2>>"$LOG" | grep -c '"kind":"refusal"')"
expect "sealtool audit --since 10m shows them" 3 \
    "$(sealtool audit --json --since 10m 2>>"$LOG" | grep -c '"kind":"refusal"')"
expect "sealtool audit --since (a minute ahead) shows none" 0 \
    "$(sealtool audit --json --since $(($(now) + 60)) 2>>"$LOG" | grep -c '"kind":"refusal"')"
sleep 1
MSG=$(cat /tmp/messages 2>/dev/null)
contains "syslog: the root write" "$MSG" \
    "refused: capsule=app op=open-write rule=outside level=1 path=/jails/app/file pid=$P1 uid=0 comm=sh"
contains "syslog: the user write" "$MSG" "path=/jails/app/file pid=$P2 uid=1000 comm=sh"
contains "syslog: auth facility" "$(grep 'comm=rm' /tmp/messages)" "authpriv.warn"
out=$(sealtool audit --check 2>&1)
rc=$?
echo "$out" >>"$LOG"
expect "sealtool audit --check exits 0" 0 "$rc"
contains "sealtool audit --check says intact" "$out" "audit log intact: "

# A clone3(CLONE_INTO_CGROUP) that can't be checked race-free (two threads share the
# descriptor table) is refused while a capsule has a cgroup, and the record says so.
expect "clone3 into the root cgroup from two threads: refused" refused \
    "$(proc-probe clone-into-cgroup-threaded /sys/fs/cgroup 2>>"$LOG")"
i=0
while [ "$i" -lt 40 ]; do
    line=$(sealtool audit --json 2>>"$LOG" | grep '"op":"cgroup"' | head -n 1)
    [ -n "$line" ] && break
    sleep 0.5
    i=$((i + 1))
done
echo "$line" >>"$LOG"
expect "the clone3 refusal: capsule" app "$(jfield "$line" capsule)"
expect "the clone3 refusal: rule" uncheckable "$(jfield "$line" rule)"
contains "sealtool audit: the clone3 refusal's line" "$(sealtool audit 2>>"$LOG")" \
    "app cgroup refused (uncheckable, level 1)"

settle() { # TARGET: wait (up to 180 s) until the log accounts for TARGET refusals
    i=0
    while [ "$i" -lt 180 ]; do
        a=$(accounted)
        [ "$a" -ge "$1" ] && break
        sleep 1
        i=$((i + 1))
    done
    echo "$a"
}

# ----------------------------------------------------------------------------- another reader
# Anyone holding a writable descriptor of the ring buffer can consume it (the kernel can't
# freeze one): what the collector didn't receive of the events the guard sent is counted as
# taken. Refusals while no collector runs, then a collector: the control (recorded one by
# one), then the same with the events taken first. Before the flood: the log is small,
# and listing it (which the checks do often) quick.
kill -TERM "$COLL"
wait "$COLL"
COLL=
refuse_outside() { # N refusals of an outside write
    i=0
    while [ "$i" -lt "$1" ]; do sh -c 'echo x >> /jails/app/victim' 2>/dev/null; i=$((i + 1)); done
}
collect_until() { # TARGET: runs a collector until the log accounts for TARGET refusals
    sealtool audit --collect >>"$LOG" 2>&1 &
    C=$!
    a=$(settle "$1")
    kill -TERM "$C"
    wait "$C"
    echo "$a"
}
set -- $(totals)
R2=$1 TK2=$4
D2=$(denied)
refuse_outside 3
expect "3 refusals counted while no collector runs" 3 "$(($(denied) - D2))"
expect "a collector started later accounts for them" "$((D2 + 3))" "$(collect_until "$((D2 + 3))")"
set -- $(totals)
expect "they are recorded one by one (control)" "$((R2 + 3)) $TK2" "$1 $4"
R3=$1 TK3=$4
D3=$(denied)
refuse_outside 4
out=$(bpf-probe ringbuf-take $PINS/events 2>>"$LOG")
note "another reader: $out"
expect "another reader opens the ring buffer and consumes it" allowed "${out%% *}"
expect "a collector started later accounts for the 4 refusals" "$((D3 + 4))" "$(collect_until "$((D3 + 4))")"
set -- $(totals)
expect "the 4 events taken are counted as taken, none recorded" "$R3 $((TK3 + 4))" "$1 $4"
HUMAN=$(sealtool audit --since 10m 2>>"$LOG" | grep ' lost: ' | tail -n 1)
contains "sealtool audit says they were taken" "$HUMAN" "4 TAKEN from the ring buffer"
contains "syslog: the taken count" "$(cat /tmp/messages)" "taken=4"
# Another reader moving the shared read position back (two 600-byte records): a collector
# goes on from its own position, stored with the log, and says what happened.
set -- $(totals)
R4=$1
out=$(bpf-probe ringbuf-rewind $PINS/events 1200 2>>"$LOG")
note "another reader: $out"
expect "another reader moves the ring buffer's read position back" "allowed rewound 1200 bytes" "$out"
D4=$(denied)
refuse_outside 2
expect "a collector started later accounts for the 2 refusals since" "$((D4 + 2))" "$(collect_until "$((D4 + 2))")"
set -- $(totals)
expect "no record is read twice: exactly the 2 new refusals are recorded" "$((R4 + 2))" "$1"
contains "a finding says the position was moved back" "$(sealtool audit --json 2>>"$LOG" | grep '"kind":"finding"')" "moved the refusal ring buffer's read position back by 1200 bytes"
sealtool audit --collect >>"$LOG" 2>&1 &
COLL=$!
sleep 1
kill -0 "$COLL" 2>/dev/null && ok "the collector runs again" || bad "the collector runs again"

# ----------------------------------------------------------------------------- flood
# Quiet first: everything counted so far is in the log.
D0=$(denied)
A0=$(settle "$D0")
expect "before the flood the log accounts for every refusal counted" "$D0" "$A0"
set -- $(totals)
R0=$1 RL0=$2 DR0=$3

refusal-flood /jails/app/file "$N" >/tmp/flood.out 2>>"$LOG" &
FLOOD=$!
sleep 3
start=$(now)
lvl=$(timeout 60 sealtool level 2>>"$LOG")
took=$(($(now) - start))
expect "the guest answers during the flood (sealtool level)" 1 "$lvl"
note "sealtool level took ${took}s during the flood"
wait "$FLOOD"
frc=$?
FL=$(cat /tmp/flood.out)
note "refusal-flood $N: $FL"
expect "refusal-flood: all $N attempts answered EPERM" "eperm $N other 0" "$(echo "$FL" | sed 's/ seconds.*//')"
expect "refusal-flood exits 0" 0 "$frc"
D1=$(denied)
expect "the kernel counted exactly $N more refusals" "$N" "$((D1 - D0))"
t_settle=$(now)
A1=$(settle "$((A0 + N))")
note "the log settled $(($(now) - t_settle))s after the flood"
expect "the log accounts for exactly the $N flood refusals" "$N" "$((A1 - A0))"
expect "the log accounts for every refusal the kernel counted" "$D1" "$A1"
set -- $(totals)
note "flood: $(($1 - R0)) recorded one by one, $(($2 - RL0)) rate-limited, $(($3 - DR0)) dropped (ring buffer full)"
[ "$(($2 - RL0))" -gt 0 ] && ok "the flood was rate-limited and the excess counted in lost records" ||
    bad "the flood was rate-limited and the excess counted in lost records"
[ "$(($1 - R0))" -gt 0 ] && ok "flood refusals were recorded one by one too" ||
    bad "flood refusals were recorded one by one too"
sleep 2
[ "$(accounted)" = "$A1" ] && ok "nothing more is accounted after the flood settled" ||
    bad "nothing more is accounted after the flood settled ($(accounted) != $A1)"
HUMAN=$(sealtool audit --since 10m 2>>"$LOG" | grep ' lost: ' | tail -n 1)
contains "sealtool audit shows the lost counts" "$HUMAN" "refusals not recorded one by one"
contains "syslog: the lost counts" "$(cat /tmp/messages)" "lost: "
out=$(sealtool audit --check 2>&1)
rc=$?
echo "$out" >>"$LOG"
expect "sealtool audit --check exits 0 after the flood" 0 "$rc"
note "$out"
note "registry database size after the flood: $(du -sk "$REG/db" | cut -f1) KiB"

# ----------------------------------------------------------------------------- stop, tamper
kill -TERM "$COLL"
wait "$COLL"
expect "the collector exits 0 on SIGTERM" 0 "$?"
COLL=
contains "syslog: the collector anchors the head" "$(cat /tmp/messages)" "audit log head: seq"

out=$(audit-tamper edit "$REG" 2 2>&1)
expect "audit-tamper edits record 2" "edited record 2" "$out"
out=$(sealtool audit --check 2>&1)
rc=$?
echo "$out" >>"$LOG"
expect "sealtool audit --check exits 1 after an edit" 1 "$rc"
contains "sealtool audit --check names record 2" "$out" "TAMPERED at record 2"
kill "$SYSLOGD" 2>/dev/null
finish
