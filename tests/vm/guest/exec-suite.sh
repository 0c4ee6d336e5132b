#!/bin/sh
# exec-suite.sh LEVEL: a capsule runs only sealed code (the guard's exec rule) and `sealtool
# run` starts it in its own root, in the test guest (busybox sh). LEVEL: the level the guard
# is first loaded at (0 lets the test detach hooks: EXEC_SUITE_DETACH="bprm_check_security
# ..." detaches those right after the seals, and the checks that need them must then fail).
#
# Capsules (trees on a tmpfs at /jails):
#   dyn     runs on the host's root from the guest's programs, sealed as bases (sys-*), with
#           an inside agent: what is outside every sealed tree, or in a base it does not
#           name, is refused; its own files and its bases' run
#   nob     names no base: only its own busybox runs
#   own     `sealtool run --seal` in its own root, with its own busybox, probe and libraries
#   strict  the same with --exec sealed
#   fake*   slots root fills through raw requests (a completed capsule takes nothing more;
#           a count that differs taints)
LEVEL=${1:-1}
SUITE=exec-suite
LOG=/tmp/exec-suite.log
export CAPSULE_REGISTRY=/tmp/registry
PINS=/sys/fs/bpf/fsguard
. /checks.sh
. /inside.sh

if [ "$LEVEL" = 0 ]; then
    sealtool level 0 >>"$LOG" 2>&1 || { bad "setup: sealtool level 0"; finish; }
fi
mkdir -p /jails /tmp/outside && mount -t tmpfs -o mode=0755 tmpfs /jails
sysbase_setup || finish
cp /bin/busybox /tmp/outside/busybox
printf '#!/bin/sh\necho ran\n' >/tmp/outside/script && chmod 755 /tmp/outside/script
pp() { proc-probe "$@" 2>>"$LOG"; }

# A tree with its own busybox (static), the probe and the guest's libraries.
make_tree() { # DIR
    mkdir -p "$1/bin" "$1/lib" "$1/data" "$1/proc" "$1/dev" "$1/tmp" "$1/opt"
    cp /bin/busybox "$1/bin/busybox"
    for a in sh cat cp ls echo true mkdir grep wc head mv rm sleep touch tail; do ln -s busybox "$1/bin/$a"; done
    cp /usr/local/bin/proc-probe "$1/bin/proc-probe"
    cp -a /lib/x86_64-linux-gnu "$1/lib/x86_64-linux-gnu"
    [ -d /lib64 ] && cp -a /lib64 "$1/lib64"
    cp /usr/local/lib/libz-test.so "$1/lib/libz-test.so"
    echo marker >"$1/data/marker"
}

# ----------------------------------------------------------------------- dyn: host root
mkdir -p /jails/dyn/bin /sys/fs/cgroup/dyn
printf '#!/bin/sh\necho ran\n' >/jails/dyn/bin/good.sh
printf '#!/tmp/outside/busybox sh\necho ran\n' >/jails/dyn/bin/bad.sh
chmod 755 /jails/dyn/bin/good.sh /jails/dyn/bin/bad.sh
INSIDE_DIR=/tmp/dyn-agent inside_start /sys/fs/cgroup/dyn
out=$(sealtool register /jails/dyn --name dyn --seal --cgroup /sys/fs/cgroup/dyn 2>&1)
echo "$out" >>"$LOG"
contains "setup: seal dyn, running from the guest's programs (sys-*)" "$out" "enforced by fsguard"

# nob: no base; its agent runs its own busybox.
make_tree /jails/nob
mkdir -p /sys/fs/cgroup/nob
INSIDE_SHELL=/jails/nob/bin/busybox PATH=/jails/nob/bin:$PATH INSIDE_DIR=/tmp/nob-agent inside_start /sys/fs/cgroup/nob
out=$(CAPSULE_EXEC_FROM= sealtool register /jails/nob --name nob --seal --cgroup /sys/fs/cgroup/nob 2>&1)
echo "$out" >>"$LOG"
contains "setup: seal nob, which runs from no base" "$out" "enforced by fsguard"

# sdyn: the same, under --exec sealed.
mkdir -p /jails/sdyn /sys/fs/cgroup/sdyn && echo s >/jails/sdyn/f
INSIDE_DIR=/tmp/sdyn-agent inside_start /sys/fs/cgroup/sdyn
out=$(sealtool register /jails/sdyn --name sdyn --seal --cgroup /sys/fs/cgroup/sdyn --exec sealed 2>&1)
echo "$out" >>"$LOG"
contains "setup: seal sdyn (--exec sealed), running from the guest's programs" "$out" "enforced by fsguard"

for h in ${EXEC_SUITE_DETACH:-}; do
    if rm "$PINS/link_fsguard_$h" 2>>"$LOG"; then
        echo "NOTE: mutation: hook $h detached"
    else
        bad "mutation: hook $h could not be detached (use level 0)"
    fi
done

din() { INSIDE_DIR=/tmp/dyn-agent inside "$@" 2>>"$LOG"; }
nin() { INSIDE_DIR=/tmp/nob-agent inside "$@" 2>>"$LOG"; }

expect "dyn: run a base's program (/bin/busybox, sealed as sys-bin; control)" allowed "$(din proc-probe exec /bin/busybox true)"
expect "dyn: run a program outside every sealed tree" refused "$(din proc-probe exec /tmp/outside/busybox true)"
expect "root outside: run that program (outside every capsule: no rule)" allowed "$(pp exec /tmp/outside/busybox true)"
expect "dyn: map that program executable" refused "$(din proc-probe mmap-exec /tmp/outside/busybox)"
expect "dyn: map a base's library executable (control)" allowed "$(din proc-probe mmap-exec /lib/x86_64-linux-gnu/libc.so.6)"
expect "root outside: map the outside program executable" allowed "$(pp mmap-exec /tmp/outside/busybox)"
cp /usr/local/lib/libz-test.so /tmp/outside/libz-test.so
expect "dyn: dlopen a base's library (control)" allowed "$(din proc-probe dlopen /usr/local/lib/libz-test.so)"
expect "dyn: dlopen a library outside every sealed tree" refused "$(din proc-probe dlopen /tmp/outside/libz-test.so)"
expect "root outside: dlopen it" allowed "$(pp dlopen /tmp/outside/libz-test.so)"
mkdir -p /tmp/outside/ld && cp /lib/x86_64-linux-gnu/libc.so.6 /tmp/outside/ld/
out=$(din sh -c 'LD_LIBRARY_PATH=/tmp/outside/ld proc-probe anon-exec 2>&1')
contains "dyn: a program whose libraries LD_LIBRARY_PATH finds outside does not start" "$out" "error while loading shared libraries"
expect "dyn: ... without it, it starts (control)" allowed "$(din proc-probe anon-exec)"
expect "dyn: a script of its tree whose interpreter is a base's (control)" allowed "$(din proc-probe exec /jails/dyn/bin/good.sh)"
expect "dyn: a script of its tree whose interpreter is outside" refused "$(din proc-probe exec /jails/dyn/bin/bad.sh)"
expect "dyn: a script outside every sealed tree" refused "$(din proc-probe exec /tmp/outside/script)"
expect "dyn: a program memfd holds" refused "$(din proc-probe memfd-exec /bin/busybox true)"
expect "root outside: a program memfd holds (control)" allowed "$(pp memfd-exec /bin/busybox true)"
expect "dyn: anonymous executable memory (default mode: allowed)" allowed "$(din proc-probe anon-exec)"
expect "dyn: a program it wrote in its tree after the seal (default mode: its own)" allowed \
    "$(din sh -c 'mkdir -p /jails/dyn/w && cp /bin/busybox /jails/dyn/w/busybox && proc-probe exec /jails/dyn/w/busybox true')"
# Root seals a capsule of its own holding its program: a sealed, frozen file, but of a base
# dyn does not name.
mkdir -p /jails/evil && cp /bin/busybox /jails/evil/busybox
out=$(sealtool register /jails/evil --name evilbase --seal 2>&1)
echo "$out" >>"$LOG"
expect "dyn: a program of a base root sealed, which dyn does not name" refused "$(din proc-probe exec /jails/evil/busybox true)"
# Root's raw requests after dyn's seal: dyn's slot takes no more inodes nor bases.
slot_of() { sealtool status 2>>"$LOG" | sed -n "s/^capsule *$1 .*(slot \([0-9]*\)).*/\1/p"; }
DYN=$(slot_of dyn)
EVIL=$(slot_of evilbase)
r0=$(bpf-probe request-inode $PINS "$DYN" /tmp/outside/busybox 0 2>>"$LOG")
r1=$(bpf-probe request-inode $PINS "$DYN" /tmp/outside/busybox 0 2>>"$LOG")
expect "root: a raw request adding its program to dyn's completed slot is rejected" yes \
    "$([ "${r1##* }" -gt 0 ] 2>/dev/null && [ "${r1##* }" -gt "${r0##* }" ] && echo yes || echo "no ($r0 / $r1)")"
bpf-probe request-trust $PINS "$DYN" "$EVIL" >>"$LOG" 2>&1
expect "dyn: ... its program still refused" refused "$(din proc-probe exec /tmp/outside/busybox true)"
expect "dyn: ... and evilbase's, after a raw request naming it as dyn's base" refused "$(din proc-probe exec /jails/evil/busybox true)"

sin() { INSIDE_DIR=/tmp/sdyn-agent inside "$@" 2>>"$LOG"; }
expect "sdyn: a base's program runs (control)" allowed "$(sin proc-probe exec /bin/busybox true)"
expect "sdyn: anonymous executable memory" refused "$(sin proc-probe anon-exec)"
expect "sdyn: anonymous memory made executable (mprotect)" refused "$(sin proc-probe mprotect-exec)"
expect "sdyn: a program it wrote in its tree after the seal" refused \
    "$(sin sh -c 'mkdir -p /jails/sdyn/w && cp /bin/busybox /jails/sdyn/w/busybox && proc-probe exec /jails/sdyn/w/busybox true')"
expect "sdyn: a program memfd holds" refused "$(sin proc-probe memfd-exec /bin/busybox true)"

expect "nob: its own busybox runs (control)" allowed "$(nin /jails/nob/bin/sh -c 'exec /jails/nob/bin/busybox true' && echo allowed || echo refused)"
out=$(nin /jails/nob/bin/sh -c '/bin/busybox true; echo "rc=$?"' 2>&1)
contains "nob: a base's program (sys-bin), which nob does not name, is refused" "$out" "rc=126"
contains "nob: ... the shell says why" "$(cat /tmp/nob-agent/err 2>/dev/null)" "Operation not permitted"

# A slot root fills itself (it is that capsule's sealer): completed with the count it
# added, its own file runs inside; completed with another count, it is tainted and nothing
# runs inside. A process waits in each cgroup (on a FIFO, with shell builtins), started
# before the slots are.
for n in 1 2; do
    mkdir -p /jails/fk$n /sys/fs/cgroup/fk$n && cp /bin/busybox /jails/fk$n/busybox
    rm -f /tmp/fk$n.go && mkfifo /tmp/fk$n.go
    (echo 0 >/sys/fs/cgroup/fk$n/cgroup.procs && read -r _ </tmp/fk$n.go &&
        { /jails/fk$n/busybox true && echo ran || echo "refused $?"; } >/tmp/fk$n.out 2>&1) &
done
top=$(sealtool status 2>>"$LOG" | sed -n 's/^capsule .*(slot \([0-9]*\)).*/\1/p' | sort -n | tail -n 1)
free=$((${top:-0} + 20))
for n in 1 2; do
    s=$((free + n))
    bpf-probe request-capsule $PINS $s fake$n /sys/fs/cgroup/fk$n >>"$LOG" 2>&1
    bpf-probe request-cgroup $PINS $s "$(stat -c %i /sys/fs/cgroup/fk$n)" >>"$LOG" 2>&1
    bpf-probe request-inode $PINS $s /jails/fk$n/busybox 0 >>"$LOG" 2>&1
done
c1=$(bpf-probe request-complete $PINS $((free + 1)) 1 2>>"$LOG")
c2=$(bpf-probe request-complete $PINS $((free + 2)) 0 2>>"$LOG")
expect "root: completing a slot with the count it added is applied, with another rejected" "${c1##* }" "$((${c2##* } - 1))"
for n in 1 2; do echo go >/tmp/fk$n.go; done
for _ in $(seq 100); do [ -s /tmp/fk1.out ] && [ -s /tmp/fk2.out ] && break; sleep 0.1; done
expect "fake1: its own file runs inside (control)" ran "$(cat /tmp/fk1.out)"
contains "fake2 (tainted): its own file is refused inside" "$(cat /tmp/fk2.out)" "refused"

# ------------------------------------------------------------ own, strict: their own root
cat >/tmp/inside-checks.sh <<'EOF'
r() { echo "$1: $2"; }
r tree-is-root "$(cat /data/marker 2>&1)"
r host-gone "$([ -e /jails ] || [ -e /sys/fs/cgroup ] || [ -e /usr/local/bin/sealtool ] && echo visible || echo gone)"
r proc-fresh "$(grep -c . /proc/self/mountinfo)"
r tmp-writable "$(echo x >/tmp/t && echo yes)"
r dev-null "$(echo x >/dev/null && echo yes)"
r own-binary "$(/bin/proc-probe exec /bin/busybox true 2>/dev/null)"
r own-mmap "$(/bin/proc-probe mmap-exec /lib/libz-test.so 2>/dev/null)"
r own-dlopen "$(/bin/proc-probe dlopen /lib/libz-test.so 2>/dev/null)"
mkdir -p /tmp/x/ld && cp /bin/busybox /tmp/x/busybox && cp /lib/libz-test.so /tmp/x/libz-test.so
cp /lib/x86_64-linux-gnu/libc.so.6 /tmp/x/ld/
r tmp-binary "$(/bin/proc-probe exec /tmp/x/busybox true 2>/dev/null)"
r tmp-mmap "$(/bin/proc-probe mmap-exec /tmp/x/libz-test.so 2>/dev/null)"
r tmp-dlopen "$(/bin/proc-probe dlopen /tmp/x/libz-test.so 2>/dev/null)"
r ld-library-path "$(LD_LIBRARY_PATH=/tmp/x/ld /bin/proc-probe anon-exec 2>&1 | grep -c 'error while loading shared libraries')"
mkdir -p /data/w && cp /bin/busybox /data/w/busybox
r written-binary "$(/bin/proc-probe exec /data/w/busybox true 2>/dev/null)"
r memfd "$(/bin/proc-probe memfd-exec /bin/busybox true 2>/dev/null)"
r anon-exec "$(/bin/proc-probe anon-exec 2>/dev/null)"
r mprotect-exec "$(/bin/proc-probe mprotect-exec 2>/dev/null)"
r with-mounted "$([ -e /opt/local/bin/proc-probe ] && echo yes || echo no)"
r with-readonly "$(touch /opt/x 2>&1 | grep -c 'Read-only')"
r with-unnamed "$(/bin/proc-probe exec /opt/local/bin/proc-probe anon-exec 2>/dev/null)"
EOF
for c in own strict; do
    make_tree /jails/$c
    cp /tmp/inside-checks.sh /jails/$c/checks.sh
    sealtool register /jails/$c --name $c >>"$LOG" 2>&1
done
mode() { case "$1" in own) echo own ;; strict) echo sealed ;; esac; }
for c in own strict; do
    out=$(CAPSULE_EXEC_FROM= sealtool run $c --seal --cgroup /sys/fs/cgroup/$c --exec "$(mode $c)" --with sys-usr:/opt -- /bin/sh /checks.sh 2>&1)
    rc=$?
    echo "$out" >>"$LOG"
    expect "$c: sealtool run --seal in its own root exits 0" "exit 0" "exit $rc"
    v() { echo "$out" | sed -n "s/^$1: //p"; }
    expect "$c: its root is its tree" marker "$(v tree-is-root)"
    expect "$c: nothing of the host's root is there" gone "$(v host-gone)"
    expect "$c: a private /tmp" yes "$(v tmp-writable)"
    expect "$c: a /dev with null" yes "$(v dev-null)"
    expect "$c: its own program runs (dynamically linked, its own libraries)" allowed "$(v own-binary)"
    expect "$c: its own library maps executable" allowed "$(v own-mmap)"
    expect "$c: its own library dlopens" allowed "$(v own-dlopen)"
    expect "$c: a program copied to its private /tmp" refused "$(v tmp-binary)"
    expect "$c: a library copied there maps executable" refused "$(v tmp-mmap)"
    expect "$c: ... nor dlopens" refused "$(v tmp-dlopen)"
    expect "$c: LD_LIBRARY_PATH to libraries there: the program does not start" 1 "$(v ld-library-path)"
    expect "$c: a program memfd holds" refused "$(v memfd)"
    expect "$c: another sealed tree mounted at /opt (--with sys-usr:/opt)" yes "$(v with-mounted)"
    expect "$c: ... read-only" 1 "$(v with-readonly)"
    expect "$c: ... its programs (a base $c does not name) refused" refused "$(v with-unnamed)"
done
# What the modes tell apart (each run's lines are in the log, own's first).
for k in written-binary anon-exec mprotect-exec; do
    got=$(grep "^$k: " "$LOG" | tr '\n' ' ')
    expect "own (default mode) allows, strict (--exec sealed) refuses: $k" "$k: allowed $k: refused " "$got"
done
expect "bare: run in its own root refuses a tree without proc/, dev/, tmp/ (--host-root otherwise)" "exit 2" \
    "$(mkdir -p /jails/bare && sealtool register /jails/bare --name bare >>"$LOG" 2>&1 && sealtool run bare --seal --cgroup /sys/fs/cgroup/bare -- /bin/true >>"$LOG" 2>&1; echo "exit $?")"
expect "bare: ... and nothing was sealed" no "$(sealtool status 2>/dev/null | grep -q '^capsule *bare .*enforced' && echo yes || echo no)"
finish
