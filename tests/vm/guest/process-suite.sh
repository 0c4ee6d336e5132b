#!/bin/sh
# process-suite.sh LEVEL: end-to-end checks of process capsules (fsguard's process and cgroup
# rules), run as root in the test guest (tests/vm/run; busybox sh). LEVEL is 0 or 1: the
# guard is first loaded at that level (`sealtool level 0`, or by the seal for 1).
#
# Set-up: a capsule `app` with cgroup /sys/fs/cgroup/app is started with `sealtool run app
# --seal` (this joins the cgroup, seals the capsule from inside, then execs an agent that
# runs the suite's inside commands, see inside.sh), and a target process IN (uid 1000) runs
# inside it. A twin target OUT (same uid, same program) runs outside, in cgroup `other`.
#
# For every operation, the same operation on OUT is the control: it must be allowed (so the
# refusal on IN is fsguard's, not a permission the operation lacked anyway), and an inside
# actor must be allowed on IN. To outside actors (root and user 1000):
#   attach/debug/pin (every level, root included): ptrace attach and seize, /proc/PID/mem,
#     process_vm_readv/writev, sched_setaffinity, sched_setscheduler, setpriority, ioprio,
#     prlimit, following /proc/PID/fd/N and /proc/PID/map_files/*,
#     setns through a pidfd, joining or changing the capsule's cgroups (cgroup.procs,
#     cgroup.threads, clone3 into it, mkdir, rmdir, control files, chmod);
#   see/signal: kill, pidfd_send_signal, /proc/PID details needing ptrace read, /proc/PID/ns
#     links, hidepid=invisible visibility, hanging up or taking a capsule's terminal,
#     receiving its calls from a seccomp listener (answering them is attaching): root
#     allowed at level 0 only, the user never.
# Then: a member moved out of the cgroup by root stays protected; a capsule process can't
# make an outside parent its tracer (PTRACE_TRACEME); `sealtool run` from outside a sealed
# capsule is refused and says why; the same workload run inside gives the same results
# before and after the seal.
#
# Mutation testing: see PROCESS_SUITE_DETACH below.
#
# Output: `PASS: <what>` / `FAIL: <what> (expected X, got Y)` lines, then
# `process-suite: N passed, M failed`; exit 0 when M is 0.
set -u
LEVEL=${1:-}
case "$LEVEL" in
    0 | 1) ;;
    *)
        echo "usage: process-suite.sh 0|1" >&2
        exit 2
        ;;
esac
. /inside.sh
CG=/sys/fs/cgroup/capsules/app
OTHER=/sys/fs/cgroup/other
LOG=/tmp/process-suite.log
W=/tmp/process-suite
: >"$LOG"
mkdir -p "$W" && chmod 0777 "$W"
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
expect() { # WHAT EXPECTED GOT
    if [ "$2" = "$3" ]; then ok "$1"; else bad "$1 (expected $2, got ${3:-nothing})"; fi
}
contains() { # WHAT TEXT NEEDLE
    case "$2" in
        *"$3"*) ok "$1" ;;
        *) bad "$1 (expected output containing '$3', got: $(printf '%s' "$2" | tr '\n' '|'))" ;;
    esac
}
finish() {
    if [ "$fail" -gt 0 ]; then
        echo "--- diagnostics ($LOG, last 60 lines):"
        tail -n 60 "$LOG"
        echo "--- inside agent stderr:"
        tail -n 20 "$INSIDE_DIR/err" 2>/dev/null
    fi
    echo "process-suite: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit $?
}
die() {
    bad "setup: $*"
    finish
}

# Actors. root-out (in the root cgroup), user-out (in cgroup `other`, which it may manage: the
# kernel lets a user move processes only below a cgroup whose cgroup.procs it can write);
# root-in, user-in: through the inside agent.
as() { # ACTOR COMMAND...
    a=$1
    shift
    case "$a" in
        root-out) "$@" ;;
        user-out) (echo 0 >"$OTHER/cgroup.procs" && exec runas user "$@") ;;
        root-in) inside "$@" ;;
        user-in) inside runas user "$@" ;;
    esac 2>>"$LOG"
}
pp() { # ACTOR OP ARGS...
    a=$1
    shift
    as "$a" proc-probe "$@"
}
# /proc reads fail with EACCES (procfs's answer when ptrace access is refused) or EPERM.
norm() { case "$1" in refused | "error: EACCES") echo refused ;; *) echo "$1" ;; esac; }

ready() { # FILE: waits up to 10 s for FILE to hold something, then prints it
    i=0
    while [ ! -s "$1" ] && [ $i -lt 200 ]; do
        sleep 0.05
        i=$((i + 1))
    done
    cat "$1" 2>/dev/null
}

start_target() { # NAME CGROUP_OR_EMPTY -> sets NAME_PID, NAME_ADDR
    rm -f "$W/$1.ready" "$W/$1.ready.signals"
    if [ -n "$2" ]; then
        (echo 0 >"$2/cgroup.procs" && exec runas user proc-probe sleeper "$W/$1.ready") \
            >/dev/null 2>>"$LOG" &
    else
        (exec runas user proc-probe sleeper "$W/$1.ready") >/dev/null 2>>"$LOG" &
    fi
    line=$(ready "$W/$1.ready")
    pid=$(echo "$line" | sed -n 's/.*pid=\([0-9]*\).*/\1/p')
    addr=$(echo "$line" | sed -n 's/.*addr=\(0x[0-9a-f]*\).*/\1/p')
    tid=$(echo "$line" | sed -n 's/.*tid=\([0-9]*\).*/\1/p')
    [ -n "$pid" ] && [ -n "$addr" ] && [ -n "$tid" ] || die "target $1 did not start: $line"
    eval "${1}_PID=$pid ${1}_ADDR=$addr ${1}_TID=$tid"
}

start_tty() { # NAME CGROUP [MEMBER_CGROUP] -> sets NAME_PID, NAME_PTS (and NAME_MEMBER): a
    # session leader on a new pty (and a member of its session and group in MEMBER_CGROUP)
    rm -f "$W/$1.ready"
    (echo 0 >"$2/cgroup.procs" && exec proc-probe pty-holder "$W/$1.ready" ${3:+"$3"}) >/dev/null 2>>"$LOG" &
    line=$(ready "$W/$1.ready")
    pid=$(echo "$line" | sed -n 's/.*pid=\([0-9]*\).*/\1/p')
    member=$(echo "$line" | sed -n 's/.*member=\([0-9]*\).*/\1/p')
    pts=$(echo "$line" | sed -n 's/.*pts=\([^ ]*\).*/\1/p')
    [ -n "$pid" ] && [ -n "$pts" ] && { [ -z "${3:-}" ] || [ -n "$member" ]; } ||
        die "terminal $1 did not start: $line"
    eval "${1}_PID=$pid ${1}_PTS=$pts ${1}_MEMBER=$member"
}

listed() { # ACTOR PID: is PID among the entries of /proc2 as ACTOR lists them?
    as "$1" ls /proc2 | grep -qx "$2" && echo visible || echo invisible
}

# ------------------------------------------------------------------------------ set-up
mount -t tmpfs -o mode=0755 tmpfs /jails 2>/dev/null || { mkdir -p /jails && mount -t tmpfs -o mode=0755 tmpfs /jails; } || die "tmpfs"
mkdir -p /jails/app/etc && echo conf >/jails/app/etc/app.conf && echo ns >/jails/app/etc/ns.acct
dd if=/dev/zero of=/jails/app/etc/disk.img bs=4096 count=4 2>/dev/null
[ -e /dev/loop-control ] || insmod /lib/modules/vm/loop.ko >>"$LOG" 2>&1
[ -w /proc/sys/kernel/yama/ptrace_scope ] && echo 0 >/proc/sys/kernel/yama/ptrace_scope
# The controllers systemd enables by default; cpuset is checked at the end.
echo "+cpu +memory +pids" >/sys/fs/cgroup/cgroup.subtree_control 2>>"$LOG" ||
    die "cannot enable cgroup controllers"
mkdir -p "${CG%/*}" "$OTHER" "$OTHER/sub" || die "cannot create cgroups"
echo "+cpu +memory +pids" >"${CG%/*}/cgroup.subtree_control" 2>>"$LOG" ||
    die "cannot enable controllers below ${CG%/*}"
mkdir -p "$CG" || die "cannot create $CG"
# gid=4242: nobody's group, so root too is subject to the hiding (the default gid 0 exempts it).
mkdir -p /proc2 && mount -t proc -o hidepid=invisible,gid=4242 proc /proc2 ||
    die "cannot mount proc with hidepid=invisible"
if [ "$LEVEL" = 0 ]; then
    sealtool level 0 >>"$LOG" 2>&1 || die "sealtool level 0"
fi
sealtool register /jails/app --name app >>"$LOG" 2>&1 || die "register"
start_target OUT "$OTHER"

# The twin target inside, and a sub-cgroup, exist before the seal.
mkdir -p "$CG/sub" || die "cannot create $CG/sub"
start_target IN "$CG"
# Sessions on terminals of their own, inside and outside (two each: one hung up, one taken).
start_tty IN_TTY "$CG"
start_tty IN_TTY2 "$CG"
start_tty OUT_TTY "$OTHER"
start_tty OUT_TTY2 "$OTHER"
# A session led from outside whose foreground group holds a capsule's process (a job started
# from root's shell): its terminal is the capsule's too.
start_tty MIX_TTY "$OTHER" "$CG"
# From level 1 no outside process opens a capsule's terminal: the checks of what is done to
# one use descriptors this shell (no session leader: it takes no controlling terminal)
# keeps from before the seal, as `fd:N`.
exec 17<>"$IN_TTY_PTS" 18<>"$IN_TTY2_PTS" 19<>"$MIX_TTY_PTS" || die "cannot keep the terminals"
# A descriptor of the capsule's terminal kept from before the seal by an outside process
# (not a session leader: it takes no controlling terminal), read once told to.
rm -f "$W/ttyread."*
(exec 5<"$IN_TTY_PTS" && while [ ! -e "$W/ttyread.go" ]; do sleep 0.05; done &&
    timeout 2 dd bs=1 count=1 <&5 >/dev/null 2>"$W/ttyread.err"; echo $? >"$W/ttyread.rc") 2>>"$LOG" &
# A process inside (and, as the control, one outside) whose getppid goes to a seccomp
# listener held by a supervisor outside, in cgroup `other`, from before the seal.
for p in SP_IN:$CG SP_OUT:$OTHER; do
    n=${p%%:*} g=${p#*:}
    rm -f "$W/$n.ready"*
    (echo 0 >"$g/cgroup.procs" && exec proc-probe seccomp-pair "$W/$n.ready" "$OTHER") >/dev/null 2>>"$LOG" &
    sup=$(ready "$W/$n.ready" | sed -n 's/.*supervisor=\([0-9]*\).*/\1/p')
    i=0
    while ! grep -qx "${sup:-none}" "$OTHER/cgroup.procs" && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
    grep -qx "${sup:-none}" "$OTHER/cgroup.procs" || die "seccomp pair $n did not start"
done
# A mapping of each target, to be opened through /proc/PID/map_files.
IN_MAP=$(ls "/proc/$IN_PID/map_files" | head -n 1)
OUT_MAP=$(ls "/proc/$OUT_PID/map_files" | head -n 1)
[ -n "$IN_MAP" ] && [ -n "$OUT_MAP" ] || die "no map_files entries"
# So that the user's joins meet only fsguard.
chmod 0666 "$CG/cgroup.procs" "$OTHER/cgroup.procs" "$OTHER/sub/cgroup.procs"

# A capsule process whose parent is outside, waiting to ask for PTRACE_TRACEME after the seal.
sh -c 'echo 0 >'"$CG"'/cgroup.procs && while [ ! -e '"$W"'/go.traceme ]; do sleep 0.05; done; exec proc-probe traceme' \
    >"$W/traceme.out" 2>>"$LOG" &
TRACEME_JOB=$!

# The same workload inside, before the seal (run through the agent, started inside).
workload() { # -> one line per step
    inside sh -c '
        proc-probe sleeper /tmp/process-suite/wl.ready >/dev/null 2>&1 &
        s=$!
        while [ ! -s /tmp/process-suite/wl.ready ]; do sleep 0.05; done
        a=$(sed -n "s/.*addr=\(0x[0-9a-f]*\).*/\1/p" /tmp/process-suite/wl.ready)
        for op in "kill $s 0" "kill $s 10" "setpriority $s" "prlimit $s" "setaffinity $s" "setscheduler $s" \
            "ioprio $s" "read-file /proc/$s/environ" "proc-mem $s" "vm-read $s $a" \
            "ptrace-attach $s" "ptrace-seize $s" "setns-pidfd $s" \
            "write-file '"$CG"'/sub/cgroup.freeze 0" "clone-into-cgroup '"$CG"'/sub"; do
            echo "$op: $(proc-probe $op 2>/dev/null)" | sed "s#/$s/#/PID/#g; s/ $s\([: ]\)/ PID\1/g; s/ $a/ ADDR/"
        done
        echo "mkdir+rmdir sub: $(mkdir '"$CG"'/wl && rmdir '"$CG"'/wl && echo allowed)"
        kill $s
        rm -f /tmp/process-suite/wl.ready'
}
sysbase_setup || die "cannot seal the guest's programs as bases"
inside_start "$CG" || die "cannot start the inside agent"
BEFORE=$(workload)

# Carried state. A loop device bound to a file of the tree writes it with no check (direct
# I/O, discards): the seal is refused while one is.
got=$(bpf-probe loop-over /jails/app/etc/disk.img 2>>"$LOG")
out=$(sealtool run app --host-root --seal --cgroup "$CG" -- true 2>&1)
rc=$?
echo "$out" >>"$LOG"
[ "${got%% *}" = allowed ] && losetup -d "/dev/${got#* }" >>"$LOG" 2>&1
expect "setup: a loop device over a file of the tree (control)" allowed "${got%% *}"
expect "a seal while a loop device is backed by a file of the tree is refused" "exit 2" "exit $rc"
contains "... naming it" "$out" "loop device /dev/${got#* } is backed by a file of its tree"
expect "... and no seal is recorded" 0 "$(ls /var/lib/capsule/manifests/app/ 2>/dev/null | grep -c 'seal$')"
# Carried state. A tracer outside attached to a capsule process before the seal would keep
# its trace (ptrace requests meet no LSM hook): the seal is refused while one is attached.
proc-probe trace-hold "$IN_PID" "$W/tracer.ready" >/dev/null 2>>"$LOG" &
TRACER=$!
ready "$W/tracer.ready" >/dev/null
out=$(sealtool run app --host-root --seal --cgroup "$CG" -- true 2>&1)
rc=$?
echo "$out" >>"$LOG"
expect "a seal while an outside tracer holds a capsule process is refused" "exit 2" "exit $rc"
contains "... naming the tracer" "$out" "is traced by process $TRACER outside it"
expect "... and no seal is recorded" 0 "$(ls /var/lib/capsule/manifests/app/ 2>/dev/null | grep -c 'seal$')"
kill "$TRACER"
wait "$TRACER" 2>/dev/null
# Descriptors of /proc/PID files opened before the seal are judged when used after it.
exec 7<>"/proc/$IN_PID/mem" 8<>"/proc/$OUT_PID/mem" 9<"/proc/$IN_PID/environ"
exec 5<"/proc/$IN_PID/smaps" 6<"/proc/$OUT_PID/smaps"
# The same of a second thread that exits after the seal (its pid then has no task, while its
# mem and environ still reach the process's memory), and of a descriptor's fdinfo.
exec 12<"/proc/$IN_PID/task/$IN_TID/mem" 13<"/proc/$IN_PID/task/$IN_TID/environ"
exec 14<"/proc/$IN_PID/fdinfo/0" 15<"/proc/$OUT_PID/task/$OUT_PID/mem" 16<"/proc/$OUT_PID/fdinfo/0"
# A file of the tree opened for writing before the seal, and one outside it: a loop device
# bound to it later writes it with no hook of its own.
dd if=/dev/zero of="$W/plain.img" bs=4096 count=4 2>/dev/null
exec 3<>/jails/app/etc/disk.img 4<>"$W/plain.img"

# Seal with `sealtool run --seal`: it joins the cgroup, seals from inside, then execs.
out=$(sealtool run app --host-root --seal --cgroup "$CG" -- sh -c 'echo started-inside; cat /proc/self/cgroup; grep "core file" /proc/self/limits' 2>&1)
rc=$?
echo "$out" >>"$LOG"
expect "sealtool run --seal exits 0" "exit 0" "exit $rc"
contains "sealtool run --seal seals and enforces" "$out" "enforced by fsguard"
contains "sealtool run --seal runs the command inside" "$out" "0::/capsules/app"
# A core dump would hand the process's memory to root's core_pattern (a pipe ignores a limit
# of 0): run sets 1 byte, soft and hard.
expect "sealtool run sets the core-dump limit to 1 byte (soft and hard)" "1 1 bytes" "$(echo "$out" | sed -n 's/^Max core file size *\([0-9a-z]*\) *\([0-9a-z]*\) *\(bytes\).*/\1 \2 \3/p')"
expect "the level is $LEVEL" "$LEVEL" "$(sealtool level 2>>"$LOG")"
# Mutation testing: PROCESS_SUITE_DETACH="task_kill task_setnice ..." detaches those hooks of the
# guard right after the seal (level 0 only: from level 1 on the guard protects its pins); the
# checks that depend on them must then fail.
for h in ${PROCESS_SUITE_DETACH:-}; do
    if rm "/sys/fs/bpf/fsguard/link_fsguard_$h" 2>>"$LOG"; then
        echo "NOTE: mutation: hook $h detached"
    else
        bad "mutation: hook $h could not be detached (use level 0)"
    fi
done

# ------------------------------------------------------------------------------ checks
IN=$IN_PID OUT=$OUT_PID
if [ "$LEVEL" = 0 ]; then SEE_ROOT=allowed; else SEE_ROOT=refused; fi

# attach/debug/pin: refused to outside actors at every level; controls on OUT allowed.
for a in root-out user-out; do
    for op in ptrace-attach ptrace-seize proc-mem setaffinity setscheduler setpriority ioprio prlimit setns-pidfd; do
        [ "$a" = user-out ] && [ "$op" = setscheduler ] && continue # needs CAP_SYS_NICE anyway
        [ "$a" = user-out ] && [ "$op" = setns-pidfd ] && continue  # needs CAP_SYS_ADMIN anyway
        expect "$a: $op on a capsule process" refused "$(norm "$(pp $a $op "$IN")")"
        expect "$a: $op on an outside process (control)" allowed "$(pp $a $op "$OUT")"
    done
    expect "$a: process_vm_readv of a capsule process" refused "$(pp $a vm-read "$IN" "$IN_ADDR")"
    expect "$a: process_vm_readv of an outside process (control)" allowed "$(pp $a vm-read "$OUT" "$OUT_ADDR")"
    expect "$a: process_vm_writev into a capsule process" refused "$(pp $a vm-write "$IN" "$IN_ADDR" 0123456789abcdef)"
    expect "$a: process_vm_writev into an outside process (control)" allowed "$(pp $a vm-write "$OUT" "$OUT_ADDR" 0123456789abcdef)"
done

# see/signal: root at level 0 only; the user never.
for a in root-out user-out; do
    if [ "$a" = root-out ]; then want=$SEE_ROOT; else want=refused; fi
    expect "$a: kill -0 a capsule process (level $LEVEL)" "$want" "$(pp $a kill "$IN" 0)"
    expect "$a: kill -0 an outside process (control)" allowed "$(pp $a kill "$OUT" 0)"
    before=$(cat "$W/IN.ready.signals" 2>/dev/null | wc -l)
    expect "$a: SIGUSR1 to a capsule process (level $LEVEL)" "$want" "$(pp $a kill "$IN" 10)"
    expect "$a: pidfd_send_signal to a capsule process (level $LEVEL)" "$want" "$(pp $a pidfd-signal "$IN" 10)"
    sleep 0.3
    after=$(cat "$W/IN.ready.signals" 2>/dev/null | wc -l)
    if [ "$want" = refused ]; then
        expect "$a: no refused signal reached the capsule process" "$before" "$after"
    else
        [ "$after" -gt "$before" ] && ok "$a: the allowed signal arrived" || bad "$a: the allowed signal arrived ($before -> $after)"
    fi
    expect "$a: pidfd_send_signal to an outside process (control)" allowed "$(pp $a pidfd-signal "$OUT" 10)"
    expect "$a: read /proc/PID/environ of a capsule process (level $LEVEL)" "$want" "$(norm "$(pp $a read-file /proc/$IN/environ)")"
    expect "$a: read /proc/PID/environ of an outside process (control)" allowed "$(pp $a read-file /proc/$OUT/environ)"
    expect "$a: list a capsule process's directory through /proc/PID/cwd" refused "$(norm "$(pp $a list-dir /proc/$IN/cwd/)")"
    expect "$a: list an outside process's directory through /proc/PID/cwd (control)" allowed "$(pp $a list-dir /proc/$OUT/cwd/)"
    [ "$a" = root-out ] && [ "$LEVEL" = 0 ] && wv=visible || wv=invisible
    expect "$a: hidepid=invisible lists a capsule process (level $LEVEL)" "$wv" "$(listed $a "$IN")"
    expect "$a: hidepid=invisible lists an outside process of the same user (control)" visible "$(listed $a "$OUT")"
done
# Entering namespaces through /proc/PID/ns: following the link is refused at every level;
# reading it (which only names the namespace) is seeing.
for a in root-out user-out; do
    expect "$a: open /proc/PID/ns/uts of a capsule process to setns (level $LEVEL)" refused "$(norm "$(pp $a setns-path /proc/$IN/ns/uts)")"
    expect "$a: open /proc/PID/task/PID/ns/mnt of a capsule process (level $LEVEL)" refused "$(norm "$(pp $a read-file /proc/$IN/task/$IN/ns/mnt)")"
    if [ "$a" = root-out ]; then want=$SEE_ROOT; else want=refused; fi
    expect "$a: readlink /proc/PID/ns/uts of a capsule process (level $LEVEL)" "$want" "$(as $a readlink /proc/$IN/ns/uts >/dev/null && echo allowed || echo refused)"
done
expect "root-out: setns through /proc/PID/ns/uts of an outside process (control)" allowed "$(pp root-out setns-path /proc/$OUT/ns/uts)"
expect "user-out: readlink /proc/PID/ns/uts of an outside process of the same user (control)" allowed "$(as user-out readlink /proc/$OUT/ns/uts >/dev/null && echo allowed || echo refused)"
# The other magic links: following /proc/PID/fd/N opens the process's own file (a pipe, a
# memfd), /proc/PID/map_files/* the file behind a mapping (its shared memory): refused at
# every level (from level 1 on the kernel's ptrace read check on the directory refuses too;
# the user lacks CAP_SYS_ADMIN for map_files anyway); reading the fd link is seeing.
expect "root-out: open a capsule process's descriptor through /proc/PID/fd/2 (level $LEVEL)" refused "$(norm "$(pp root-out open-nonblock /proc/$IN/fd/2)")"
expect "root-out: open an outside process's descriptor through /proc/PID/fd/2 (control)" allowed "$(pp root-out open-nonblock /proc/$OUT/fd/2)"
expect "user-out: open a capsule process's descriptor through /proc/PID/fd/2" refused "$(norm "$(pp user-out open-nonblock /proc/$IN/fd/2)")"
expect "root-out: readlink /proc/PID/fd/2 of a capsule process (level $LEVEL)" "$SEE_ROOT" "$(readlink /proc/$IN/fd/2 >/dev/null 2>>"$LOG" && echo allowed || echo refused)"
expect "root-out: open a capsule process's mapping through /proc/PID/map_files (level $LEVEL)" refused "$(norm "$(pp root-out open-nonblock /proc/$IN/map_files/$IN_MAP)")"
expect "root-out: open an outside process's mapping through /proc/PID/map_files (control)" allowed "$(pp root-out open-nonblock /proc/$OUT/map_files/$OUT_MAP)"
expect "root-in: open a capsule process's descriptor through /proc/PID/fd/2" allowed "$(pp root-in open-nonblock /proc/$IN/fd/2)"
# A capsule's terminal: a hangup signals its session leader and takes the terminal from every
# member of its session, so taking it from its session (TIOCSCTTY) or hanging it up
# (TIOCVHANGUP) is signalling the capsule when a capsule's process is among them.
expect "root-out: resize a capsule's terminal (TIOCSWINSZ: SIGWINCH to its foreground group, level $LEVEL)" "$SEE_ROOT" "$(pp root-out tty-winsize fd:17)"
expect "root-out: resize a terminal led from outside with a capsule's process in its group (level $LEVEL)" "$SEE_ROOT" "$(pp root-out tty-winsize fd:19)"
expect "root-out: resize an outside terminal (control)" allowed "$(pp root-out tty-winsize "$OUT_TTY_PTS")"
expect "root-out: flush a capsule's terminal's input (TCFLSH, level $LEVEL)" "$SEE_ROOT" "$(pp root-out tty-flush fd:17)"
expect "root-out: flush an outside terminal's input (control)" allowed "$(pp root-out tty-flush "$OUT_TTY_PTS")"
expect "root-in: resize the capsule's terminal" allowed "$(pp root-in tty-winsize "$IN_TTY_PTS")"
# The kernel's own signals to every process, and page failures that signal those mapping a
# page (/proc/kpagecgroup names a capsule's), never pass task_kill: refused from level 1.
expect "root-out: write /proc/sysrq-trigger (h, help; e, i, f signal every process, level $LEVEL)" "$SEE_ROOT" "$(pp root-out write-file /proc/sysrq-trigger h)"
# fanotify: a permission event holds each open of what it marks until the marker answers (and
# can refuse it); its other events name the process behind each. On a sealed file, or on a
# mount or filesystem holding a sealed tree: root outside at level 0 only. inotify names only
# files. A filesystem of no capsule is the control.
mkdir -p "$W/ctl" && mount -t tmpfs tmpfs "$W/ctl" && echo x >"$W/ctl/f" || die "control tmpfs"
expect "root-out: fanotify permission mark on a sealed file (level $LEVEL)" "$SEE_ROOT" "$(pp root-out fanotify /jails/app/etc/app.conf inode perm)"
expect "root-out: fanotify permission mark on the sealed tree's filesystem (level $LEVEL)" "$SEE_ROOT" "$(pp root-out fanotify /jails/app fs perm)"
expect "root-out: fanotify permission mark on the sealed tree's mount (level $LEVEL)" "$SEE_ROOT" "$(pp root-out fanotify /jails/app mount perm)"
expect "root-out: fanotify open events of a sealed file (level $LEVEL)" "$SEE_ROOT" "$(pp root-out fanotify /jails/app/etc/app.conf inode notify)"
expect "root-out: fanotify permission mark on an outside file (control)" allowed "$(pp root-out fanotify "$W/ctl/f" inode perm)"
expect "root-out: fanotify permission mark on a filesystem of no capsule (control)" allowed "$(pp root-out fanotify "$W/ctl" fs perm)"
expect "root-out: inotify watch of a sealed file" allowed "$(pp root-out inotify /jails/app/etc/app.conf)"
expect "root-in: fanotify permission mark on the capsule's own file" allowed "$(pp root-in fanotify /jails/app/etc/app.conf inode perm)"
umount "$W/ctl"
# An overlay over the sealed tree: its inodes are not the layers' its opens reach.
mkdir -p "$W/ovl/u" "$W/ovl/w" "$W/ovl/m"
modprobe overlay 2>>"$LOG"
mount -t overlay ovl -o lowerdir=/jails/app,upperdir="$W/ovl/u",workdir="$W/ovl/w" "$W/ovl/m" 2>>"$LOG" || die "overlay over the sealed tree"
expect "root-out: fanotify permission mark on an overlay's mount (level $LEVEL)" "$SEE_ROOT" "$(pp root-out fanotify "$W/ovl/m" mount perm)"
expect "root-out: fanotify permission mark on an overlay's file (level $LEVEL)" "$SEE_ROOT" "$(pp root-out fanotify "$W/ovl/m/etc/app.conf" inode perm)"
umount "$W/ovl/m"
# A capsule-led terminal read from outside: what is typed for the capsule (passwords) taken.
expect "root-out: open a capsule's terminal (level $LEVEL)" "$SEE_ROOT" "$(pp root-out open-nonblock "$IN_TTY_PTS")"
expect "root-out: open an outside terminal (control)" allowed "$(pp root-out open-nonblock "$OUT_TTY_PTS")"
expect "root-in: open the capsule's terminal" allowed "$(pp root-in open-nonblock "$IN_TTY_PTS")"
touch "$W/ttyread.go"
ready "$W/ttyread.rc" >/dev/null
# (timeout ends a read that waits for input: 124, or 143 where its SIGTERM is the status)
case "$(cat "$W/ttyread.rc")" in 124 | 143) got=allowed ;; *) grep -q "not permitted" "$W/ttyread.err" && got=refused || got="error: $(cat "$W/ttyread.err")" ;; esac
expect "root-out: read a capsule's terminal through a descriptor kept from before the seal (level $LEVEL)" "$SEE_ROOT" "$got"
# Writes of kernel.sysrq (a keyboard's SysRq, an injected one included, signals every
# process) and of debugfs (fault injection, failed pages): level 0 only.
expect "root-out: write kernel.sysrq (level $LEVEL)" "$SEE_ROOT" "$(pp root-out write-file /proc/sys/kernel/sysrq 438)"
mkdir -p /sys/kernel/debug && { grep -q ' /sys/kernel/debug ' /proc/mounts || mount -t debugfs none /sys/kernel/debug 2>>"$LOG"; }
expect "root-out: write a debugfs file (clear_warn_once, level $LEVEL)" "$SEE_ROOT" "$(pp root-out write-file /sys/kernel/debug/clear_warn_once 1)"
expect "root-out: take a capsule's terminal from its session (TIOCSCTTY, level $LEVEL)" "$SEE_ROOT" "$(pp root-out tty-steal fd:18)"
expect "root-out: take an outside terminal from its session (control)" allowed "$(pp root-out tty-steal "$OUT_TTY2_PTS")"
expect "root-out: hang up a capsule's terminal (TIOCVHANGUP, level $LEVEL)" "$SEE_ROOT" "$(pp root-out tty-vhangup fd:17)"
expect "root-out: hang up an outside terminal (control)" allowed "$(pp root-out tty-vhangup "$OUT_TTY_PTS")"
expect "root-out: hang up a terminal led from outside with a capsule's process in its group (level $LEVEL)" "$SEE_ROOT" "$(pp root-out tty-vhangup fd:19)"
sleep 0.3
expect "the outside terminal's session leader got its hangup (control)" gone "$([ -e /proc/$OUT_TTY_PID ] && echo alive || echo gone)"
[ "$LEVEL" = 0 ] && want=gone || want=alive
expect "the capsule terminal's session leader after the hangup (level $LEVEL)" "$want" "$([ -e /proc/$IN_TTY_PID ] && echo alive || echo gone)"
expect "root-in: hang up the capsule's other terminal" allowed "$(pp root-in tty-vhangup "$IN_TTY2_PTS")"
kill "$OUT_TTY2_PID" "$MIX_TTY_PID" 2>>"$LOG"
# A seccomp listener of a capsule process's calls, kept outside from before the seal:
# receiving a call is seeing the process, answering it (a forged result, or ADDFD's file in
# its descriptor table) is attaching to it.
touch "$W/SP_IN.ready.go" "$W/SP_OUT.ready.go"
i=0
while { [ ! -s "$W/SP_IN.ready.target" ] || [ ! -s "$W/SP_OUT.ready.target" ]; } && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
got=$(cat "$W/SP_IN.ready.supervisor" 2>/dev/null)
expect "root-out: receive a capsule process's call from a seccomp listener kept from before the seal (level $LEVEL)" "$SEE_ROOT" "$(echo "$got" | sed -n 's/.*recv=\([a-z]*\).*/\1/p')"
expect "root-out: add a descriptor to the process through that listener (ADDFD, 32-byte form)" refused "$(echo "$got" | sed -n 's/.*addfd=\([a-z]*\).*/\1/p')"
expect "root-out: answer it through that listener (SEND)" refused "$(echo "$got" | sed -n 's/.*send=\([a-z]*\).*/\1/p')"
expect "... and the capsule process's call got no forged answer" "errno=ENOSYS" "$(cat "$W/SP_IN.ready.target" 2>/dev/null)"
expect "root-out: receive and answer an outside process's call the same way (control)" "recv=allowed addfd=allowed send=allowed" "$(cat "$W/SP_OUT.ready.supervisor" 2>/dev/null)"
expect "... and the outside process got the answer (control)" "ret=42" "$(cat "$W/SP_OUT.ready.target" 2>/dev/null)"

# The capsule's cgroups: nobody outside joins or changes them, root included.
for a in root-out user-out; do
    expect "$a: join the capsule's cgroup (cgroup.procs)" refused "$(pp $a write-file $CG/cgroup.procs 0)"
    expect "$a: join an outside cgroup (control)" allowed "$(pp $a write-file $OTHER/sub/cgroup.procs 0)"
    expect "$a: clone3 into the capsule's cgroup" refused "$(pp $a clone-into-cgroup $CG)"
    expect "$a: clone3 into an outside cgroup (control)" allowed "$(pp $a clone-into-cgroup $OTHER/sub)"
    # fsguard judges clone3 by every descriptor of the caller (the kernel does not say which
    # one is the target): holding one of the capsule's cgroup is enough to be refused, and a
    # shared descriptor table can't be checked race-free, so it is refused while a capsule
    # has a cgroup.
    expect "$a: clone3 into an outside cgroup holding a descriptor of the capsule's cgroup" refused "$(pp $a clone-into-cgroup-holding $OTHER/sub $CG)"
    expect "$a: clone3 into the capsule's cgroup from two threads" refused "$(pp $a clone-into-cgroup-threaded $CG)"
    expect "$a: clone3 into an outside cgroup from two threads (uncheckable)" refused "$(pp $a clone-into-cgroup-threaded $OTHER/sub)"
done
# Control files; each control writes the same value to the outside cgroup (cgroup.threads:
# a thread of a process not in the target cgroup is EINVAL there, so its control is the
# cgroup.procs join above; cgroup.subtree_control: EBUSY in any cgroup with processes).
for fv in cgroup.threads:$$ cpu.max:max memory.max:max pids.max:max cpu.weight:100 cgroup.freeze:0 cgroup.kill:0 cgroup.subtree_control:+pids; do
    f=${fv%%:*} v=${fv#*:}
    expect "root-out: write the capsule's $f" refused "$(pp root-out write-file $CG/$f $v)"
    case $f in cgroup.threads | cgroup.subtree_control | cgroup.kill) continue ;; esac
    expect "root-out: write an outside cgroup's $f (control)" allowed "$(pp root-out write-file $OTHER/$f $v)"
done
expect "root-out: clone3 into the capsule's sub-cgroup" refused "$(pp root-out clone-into-cgroup $CG/sub)"
# The cgroup above the capsule's: its cgroup.kill and cgroup.freeze would reach the capsule.
expect "root-out: write cgroup.freeze of the cgroup above the capsule's" refused "$(pp root-out write-file ${CG%/*}/cgroup.freeze 1)"
expect "root-out: write cgroup.kill of the cgroup above the capsule's" refused "$(pp root-out write-file ${CG%/*}/cgroup.kill 1)"
expect "root-out: write pids.max of the cgroup above the capsule's (a limit: root's)" allowed "$(pp root-out write-file ${CG%/*}/pids.max max)"
expect "root-out: write cgroup.kill of an empty outside cgroup (control)" allowed "$(pp root-out write-file $OTHER/sub/cgroup.kill 1)"
expect "root-out: write the capsule's sub-cgroup cgroup.freeze" refused "$(pp root-out write-file $CG/sub/cgroup.freeze 1)"
expect "root-out: write an outside sub-cgroup's cgroup.freeze (control)" allowed "$(pp root-out write-file $OTHER/sub/cgroup.freeze 0)"
expect "root-out: mkdir in the capsule's cgroup" refused "$(mkdir $CG/x 2>>"$LOG" && echo allowed || echo refused)"
expect "root-out: mkdir in an outside cgroup (control)" allowed "$(mkdir $OTHER/x 2>>"$LOG" && echo allowed || echo refused)"
expect "root-out: rmdir the capsule's sub-cgroup" refused "$(rmdir $CG/sub 2>>"$LOG" && echo allowed || echo refused)"
expect "root-out: rmdir an outside sub-cgroup (control)" allowed "$(rmdir $OTHER/x 2>>"$LOG" && echo allowed || echo refused)"
expect "root-out: chmod the capsule's cgroup.procs" refused "$(chmod 0644 $CG/cgroup.procs 2>>"$LOG" && echo allowed || echo refused)"
expect "root-out: the capsule's cgroup still holds its process" yes "$(grep -qx "$IN" $CG/cgroup.procs && echo yes)"
out=$(sealtool run app --host-root -- true 2>&1)
rc=$?
echo "$out" >>"$LOG"
expect "sealtool run from outside a sealed capsule exits 2" "exit 2" "exit $rc"
contains "sealtool run from outside says why" "$out" "sealed and this process is outside it"

# Inside: everything works among members, including joining from inside.
for op in "kill $IN 0" "setpriority $IN" "prlimit $IN" "ptrace-attach $IN" "read-file /proc/$IN/environ" "vm-read $IN $IN_ADDR"; do
    expect "root-in: $op" allowed "$(pp root-in $op)"
done
expect "root-in: clone3 into the capsule's sub-cgroup from two threads" allowed "$(pp root-in clone-into-cgroup-threaded $CG/sub)"
expect "root-in: clone3 into the capsule's sub-cgroup holding a descriptor of its cgroup" allowed "$(pp root-in clone-into-cgroup-holding $CG/sub $CG)"
expect "user-in: kill -0 a process of the capsule" allowed "$(pp user-in kill "$IN" 0)"
expect "user-in: ptrace-attach a process of the capsule" allowed "$(pp user-in ptrace-attach "$IN")"
expect "root-in: sealtool run from inside the sealed capsule" ok "$(inside sealtool run app --host-root -- sh -c 'echo ok' 2>>"$LOG")"
AFTER=$(workload)
if [ "$BEFORE" = "$AFTER" ]; then
    ok "the inside workload gives the same results before and after the seal"
else
    bad "the inside workload gives the same results before and after the seal"
    echo "$BEFORE" | sed 's/^/  before: /'
    echo "$AFTER" | sed 's/^/  after:  /'
fi
case "$AFTER" in *refused* | *error*) bad "the inside workload is all allowed: $(echo "$AFTER" | tr '\n' '|')" ;; *) ok "the inside workload is all allowed ($(echo "$AFTER" | wc -l) steps)" ;; esac

# The descriptors opened before the seal: memory through one is debugging (every level),
# the environment seeing (root at level 0 only).
expect "root-out: write a capsule process's memory through /proc/PID/mem opened before the seal" refused "$(proc-probe held-pwrite 7 "$IN_ADDR" 0123456789abcdef 2>>"$LOG")"
expect "root-out: read it through that descriptor" refused "$(proc-probe held-pread 7 "$IN_ADDR" 2>>"$LOG")"
expect "root-out: write an outside process's memory through a descriptor as old (control)" allowed "$(proc-probe held-pwrite 8 "$OUT_ADDR" 0123456789abcdef 2>>"$LOG")"
expect "root-out: read a capsule process's environ through a descriptor opened before the seal (level $LEVEL)" "$SEE_ROOT" "$(proc-probe held-pread 9 0 2>>"$LOG")"
expect "root-out: read a capsule process's memory map (smaps) through a descriptor opened before the seal (level $LEVEL)" "$SEE_ROOT" "$(proc-probe held-pread 5 0 2>>"$LOG")"
expect "root-out: read an outside process's smaps through a descriptor as old (control)" allowed "$(proc-probe held-pread 6 0 2>>"$LOG")"
expect "root-out: read a capsule process's fdinfo/0 through a descriptor opened before the seal (level $LEVEL)" "$SEE_ROOT" "$(proc-probe held-pread 14 0 2>>"$LOG")"
expect "root-out: read an outside process's fdinfo/0 through a descriptor as old (control)" allowed "$(proc-probe held-pread 16 0 2>>"$LOG")"
touch "$W/IN.ready.thread-exit"
i=0
while [ -e "/proc/$IN_PID/task/$IN_TID" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
expect "setup: the capsule process's second thread has exited" gone "$([ -e /proc/$IN_PID/task/$IN_TID ] && echo alive || echo gone)"
expect "root-out: read a capsule process's memory through task/TID/mem of a thread gone since (opened before the seal)" refused "$(proc-probe held-pread 12 "$IN_ADDR" 2>>"$LOG")"
expect "root-out: read its environ through that thread's task/TID/environ (level $LEVEL)" "$SEE_ROOT" "$(proc-probe held-pread 13 0 2>>"$LOG")"
expect "root-out: read an outside process's memory through task/PID/mem opened as early (control)" allowed "$(proc-probe held-pread 15 "$OUT_ADDR" 2>>"$LOG")"
loop_held() { # DESC FD: judged LOOP_SET_FD with descriptor FD, detached again when allowed
    got=$(bpf-probe loop-held "$2" 2>>"$LOG")
    [ "${got%% *}" = allowed ] && losetup -d "/dev/${got#* }" >>"$LOG" 2>&1
    r=${got%% *}
    [ "$r" = "$3" ] || r="$got"
    expect "$1" "$3" "$r"
}
loop_held "root-out: a loop device over a sealed file, its descriptor opened for writing before the seal (level $LEVEL)" 3 "$SEE_ROOT"
loop_held "root-out: a loop device over an outside file through a descriptor as old (control)" 4 allowed
# LOOP_CONFIGURE reads its descriptor from memory after the hook: refused from level 1 on
# with EINVAL (losetup then falls back to LOOP_SET_FD, judged as above).
got=$(bpf-probe loop-configure-held 4 2>>"$LOG")
[ "${got%% *}" = allowed ] && losetup -d "/dev/${got#* }" >>"$LOG" 2>&1
if [ "$LEVEL" = 0 ]; then want=allowed; else want=EINVAL; fi
expect "root-out: LOOP_CONFIGURE over an outside file (level $LEVEL)" "$want" "${got%% *}"
exec 3<&- 4<&- 5<&- 6<&- 7<&- 8<&- 9<&- 12<&- 13<&- 14<&- 15<&- 16<&- 17<&- 18<&- 19<&-
# Process accounting: the kernel appends to its file with no check. Onto a sealed file it is
# refused like any write-open from level 1 on; at level 0 root may (it may modify the tree),
# and the raise switches it off (checked at the end).
if [ "$LEVEL" = 0 ]; then want=allowed; else want=refused; fi
expect "root-out: process accounting onto a sealed file (level $LEVEL)" "$want" "$(proc-probe acct /jails/app/etc/app.conf 2>>"$LOG")"
if [ "$LEVEL" = 1 ]; then
    : >"$W/acct"
    expect "root-out: process accounting onto an outside file (control)" allowed "$(proc-probe acct "$W/acct" 2>>"$LOG")"
    proc-probe acct-off >>"$LOG" 2>&1
fi

# A capsule process asking an outside parent to trace it.
touch "$W/go.traceme"
wait $TRACEME_JOB
expect "a capsule process can't make its outside parent its tracer (PTRACE_TRACEME)" refused "$(cat "$W/traceme.out")"

# Enabling cpuset above the capsule would move its processes to new cpusets, which the
# kernel checks with the task_setscheduler hook (cpuset_can_attach): refused.
expect "root-out: enable the cpuset controller above the capsule" refused \
    "$(echo +cpuset 2>>"$LOG" >/sys/fs/cgroup/cgroup.subtree_control && echo allowed || echo refused)"
# Moving a capsule process out: no hook sees it (without cpuset); the member stays protected.
echo "$IN" >"$OTHER/cgroup.procs" 2>>"$LOG"
expect "root-out: a capsule process moved out of its cgroup" yes "$(grep -qx "$IN" $OTHER/cgroup.procs && echo yes)"
expect "root-out: ptrace-attach the moved-out capsule process" refused "$(pp root-out ptrace-attach "$IN")"
expect "root-out: setaffinity the moved-out capsule process" refused "$(pp root-out setaffinity "$IN")"
expect "root-out: prlimit the moved-out capsule process" refused "$(pp root-out prlimit "$IN")"
expect "user-out: kill -0 the moved-out capsule process" refused "$(pp user-out kill "$IN" 0)"

if [ "$LEVEL" = 0 ]; then
    # Accounting switched on at level 0 onto a sealed file writes to it at each process exit;
    # the raise to 1 switches it off, so nothing more is appended.
    a=$(wc -c </jails/app/etc/app.conf)
    /bin/true
    b=$(wc -c </jails/app/etc/app.conf)
    [ "$b" -gt "$a" ] && ok "level 0: accounting appends to the sealed file (control: $a -> $b bytes)" || bad "level 0: accounting appends to the sealed file ($a -> $b bytes)"
    # Accounting is per pid namespace: one of root's own, its accounting onto another sealed
    # file, a process there exiting every 0.2 s.
    proc-probe acct-off >>"$LOG" 2>&1
    rm -f "$W/ns.stop"
    unshare -p -f sh -c "proc-probe acct /jails/app/etc/ns.acct >/dev/null 2>&1
        while [ ! -e $W/ns.stop ]; do /bin/true; sleep 0.2; done" 2>>"$LOG" &
    proc-probe acct /jails/app/etc/app.conf >>"$LOG" 2>&1
    sleep 1
    a=$(wc -c </jails/app/etc/ns.acct)
    sleep 1
    b=$(wc -c </jails/app/etc/ns.acct)
    [ "$b" -gt "$a" ] && ok "level 0: accounting in another pid namespace appends to a sealed file (control: $a -> $b bytes)" || bad "level 0: accounting in another pid namespace appends to a sealed file ($a -> $b bytes)"
    # A fanotify mark on the sealed tree's filesystem, and a SysRq key that signals, made at
    # level 0: level 1 refuses to make them, so the raise refuses while they are there.
    rm -f "$W/fan.ready"
    proc-probe fanotify-holder /jails/app "$W/fan.ready" 2>>"$LOG" &
    fan=$(ready "$W/fan.ready" | sed -n 's/pid=//p')
    echo 1 >/proc/sys/kernel/sysrq
    out=$(sealtool level 1 2>&1)
    rc=$?
    echo "$out" >>"$LOG"
    expect "the raise to 1 is refused while a fanotify mark and SysRq signals are there" "exit 2 1 1" "exit $rc $(echo "$out" | grep -c "process $fan (proc-probe) holds 1 fanotify mark") $(echo "$out" | grep -c "kernel.sysrq is 1")"
    expect "... and the level stays 0" 0 "$(sealtool level 2>>"$LOG")"
    kill "$fan" 2>>"$LOG"
    wait "$fan" 2>/dev/null
    echo 438 >/proc/sys/kernel/sysrq
    out=$(sealtool level 1 2>&1)
    echo "$out" >>"$LOG"
    contains "the raise to 1 says process accounting was switched off" "$out" "process accounting switched off in every pid namespace"
    a=$(wc -c </jails/app/etc/app.conf)
    /bin/true
    /bin/true
    expect "after the raise nothing more is appended to the sealed file" "$a" "$(wc -c </jails/app/etc/app.conf)"
    a=$(wc -c </jails/app/etc/ns.acct)
    sleep 1
    expect "after the raise nothing more is appended to the sealed file by the other pid namespace" "$a" "$(wc -c </jails/app/etc/ns.acct)"
    touch "$W/ns.stop"
fi

if [ "$LEVEL" = 1 ]; then
    # Accounting in a pid namespace sealtool may not look at: a member of a capsule (asked
    # for by raw requests) in a pid namespace of its own, accounting switched on there.
    mkdir -p /sys/fs/cgroup/nsacct /jails/t2 && echo t2 >/jails/t2/f
    rm -f "$W/ns2.stop"
    sh -c "echo \$\$ > /sys/fs/cgroup/nsacct/cgroup.procs && exec unshare -p -f sh -c 'proc-probe acct $W/ns2.acct >/dev/null 2>&1; while [ ! -e $W/ns2.stop ]; do sleep 0.2; done'" 2>>"$LOG" &
    sleep 1
    bpf-probe request-capsule /sys/fs/bpf/fsguard 210 nsacct /sys/fs/cgroup/nsacct >>"$LOG" 2>&1
    bpf-probe request-cgroup /sys/fs/bpf/fsguard 210 "$(stat -c %i /sys/fs/cgroup/nsacct)" >>"$LOG" 2>&1
    sealtool register /jails/t2 --name t2 >>"$LOG" 2>&1
    out=$(sealtool seal t2 2>&1)
    rc=$?
    echo "$out" >>"$LOG"
    expect "a seal while a capsule's member keeps a pid namespace of its own says it is not whole" "exit 3" "exit $rc"
    contains "... naming why" "$out" "process accounting there can't be switched off"
    touch "$W/ns2.stop"
fi

out=$(sealtool status 2>&1)
refusals=$(printf '%s\n' "$out" | sed -n 's/^refusals *\([0-9]*\).*/\1/p')
[ "${refusals:-0}" -gt 0 ] && ok "sealtool status counts the refusals ($refusals)" || bad "sealtool status counts the refusals (got ${refusals:-nothing})"
finish
