# inside.sh: run commands inside a sealed capsule from a guest test suite (busybox sh;
# sourced, not run).
#
# Once a capsule with a cgroup is sealed, no outside process may join its cgroup (fsguard's
# attach rule), so a suite can't just `echo 0 > cgroup.procs` and exec. Instead it starts an
# agent in the cgroup BEFORE the seal; the agent then runs, from inside, each command the
# suite leaves in its directory, exactly as a long-running service in the capsule would.
#
#   inside_start CGROUP         start the agent in CGROUP (before the seal)
#   inside COMMAND ARGS...      run COMMAND in the agent (so inside the capsule, as root), in
#                               this shell's working directory, with its stdin, stdout and
#                               exit status; several may run at once (from `&` jobs)
#   inside_stop                 end the agent
#
# INSIDE_WAIT: how long `inside` waits for the agent's answer, in 20 ms steps (default 15000,
# 300 s); it then returns 125.
#
# Each request is a unique file name claimed with mktemp; the request, its stdin, output and
# exit status move into place whole (tmp + mv), so neither side reads half a file. The
# working directory travels as a process holding it (the agent enters /proc/PID/cwd), which
# works for directories whose path is longer than PATH_MAX; so do descriptors 3-9.

INSIDE_DIR=${INSIDE_DIR:-/tmp/inside-agent}
# The agent's busybox, named by path: busybox runs its applets through /proc/self/exe, so
# the agent runs every command with the very busybox it started from, which must be one the
# capsule may run once sealed (the guest's, sealed as a base by sysbase_setup; or the
# capsule's own).

inside_start() { # CGROUP
    rm -rf "$INSIDE_DIR"
    mkdir -p "$INSIDE_DIR" || return 1
    # The subshell joins the cgroup, then becomes the agent: every command it runs is its
    # child, born inside. It is started from a subshell that exits at once, so it is not a
    # job of the suite's shell (a bare `wait` there must not wait for it).
    ( (
        echo 0 >"$1/cgroup.procs" || exit 1
        exec "${INSIDE_SHELL:-/bin/busybox}" sh -c '
            d=$1
            cd /
            while [ ! -e "$d/stop" ]; do
                for r in "$d"/*.req; do
                    [ -e "$r" ] || continue
                    b=${r%.req}
                    mv "$r" "$b.run"
                    (
                        sh "$b.run" <"$b.in" >"$b.out" 2>>"$d/err"
                        echo $? >"$b.rc.tmp"
                        mv "$b.rc.tmp" "$b.rc"
                    ) &
                done
                sleep 0.02
            done' inside-agent "$INSIDE_DIR"
    ) </dev/null >/dev/null 2>&1 &)
    # Started when the agent is in the cgroup and answering.
    inside true
}

inside_quote() { # ARG -> 'ARG' with embedded single quotes escaped
    printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}

inside() { # COMMAND ARGS...
    b=$(mktemp "$INSIDE_DIR/r.XXXXXX") || return 125
    cat >"$b.in"
    sleep 600 &
    hold=$!
    {
        echo "cd -P /proc/$hold/cwd || exit 125"
        # Descriptors 3-9 the caller redirected (`5<file`) are reopened from the holder, so
        # /proc/self/fd/N names the same file inside.
        echo "for fd in 3 4 5 6 7 8 9; do [ -e /proc/$hold/fd/\$fd ] && eval \"exec \$fd</proc/$hold/fd/\$fd\"; done"
        for a in "$@"; do
            inside_quote "$a"
            printf ' '
        done
        echo
    } >"$b.tmp"
    mv "$b.tmp" "$b.req"
    waited=0
    while [ ! -e "$b.rc" ]; do
        sleep 0.02
        waited=$((waited + 1))
        if [ "$waited" -gt "${INSIDE_WAIT:-15000}" ]; then
            kill "$hold"
            echo "error: the inside agent did not answer $b in $((${INSIDE_WAIT:-15000} / 50)) s" >&2
            return 125
        fi
    done
    kill "$hold"
    # The holder dies of that TERM: its status (143) is not the command's, and must not end
    # a caller that runs under `set -e`.
    wait "$hold" 2>/dev/null || :
    cat "$b.out"
    rc=$(cat "$b.rc")
    rm -f "$b" "$b.in" "$b.run" "$b.out" "$b.rc"
    return "$rc"
}

inside_stop() {
    : >"$INSIDE_DIR/stop"
}

# The guest's programs as sealed bases. Once sealed, a capsule's processes run only sealed
# code (the guard's exec rule); the suites' capsules run the guest's busybox and probes, so
# sysbase_setup copies /bin, /sbin, /usr, /lib and /lib64 to $SYSBASE (on /disk when there is
# one: a reboot finds the same inodes), binds each copy over its directory, seals the copies
# with nobody inside in the current registry (once) and exports CAPSULE_EXEC_FROM, so that
# every capsule sealed with an inside runs from them. Call it before the first such seal,
# and again after each boot (it binds again, seals nothing twice).
SYSBASE_DIRS="bin sbin usr lib lib64"
sysbase_setup() {
    if [ -z "${SYSBASE:-}" ]; then
        if grep -q " /disk " /proc/mounts; then SYSBASE=/disk/sysbase; else SYSBASE=/tmp/sysbase; fi
    fi
    names=
    for d in $SYSBASE_DIRS; do
        [ -d "/$d" ] && [ ! -L "/$d" ] || continue
        if [ ! -d "$SYSBASE/$d" ]; then
            mkdir -p "$SYSBASE" && cp -a "/$d" "$SYSBASE/$d" || { bad "sysbase: copy /$d"; return 1; }
        fi
        grep -q " /$d " /proc/mounts || mount --bind "$SYSBASE/$d" "/$d" || { bad "sysbase: bind /$d"; return 1; }
        if ! sealtool status 2>/dev/null | grep -q "capsule *sys-$d "; then
            sealtool register "$SYSBASE/$d" --name "sys-$d" --seal >>"$LOG" 2>&1
            # 3: sealed, not enforced (a guest without the bpf LSM).
            case $? in 0 | 3) ;; *) bad "sysbase: seal $SYSBASE/$d as sys-$d"; return 1 ;; esac
        fi
        names="${names:+$names,}sys-$d"
    done
    export CAPSULE_EXEC_FROM="$names"
}
