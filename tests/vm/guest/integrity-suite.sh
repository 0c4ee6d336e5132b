#!/bin/sh
# integrity-suite.sh: the guard's own interfaces, tried as root outside a capsule would
# (tests/tests/vm_integrity.rs runs it in one boot of the test guest; busybox sh).
#
#   level 0   the guard loaded at 0 with two sealed capsules (svc has an inside, which made a
#             file after the seal); what is allowed there (controls); extensions of the
#             guard's programs refused at every level; a raw request for level 1 rejected
#             while the maps are not frozen; `sealtool level 1` refused while something from
#             level 0 still reaches the guard (an iterator link over its config pinned; an LSM
#             program before the guard's in inode_init_security; a process holding the config
#             map, a guard program and an extension; one holding a readable descriptor of
#             `requests`; loop devices bound to protected files), and what that process
#             holds is useless from the freeze on; from the freeze on no loop device is bound
#             to a protected file, and one bound before can't be looked up (refused raise).
#   level 1   no descriptor of a guard program, no program using a guard map, no write of the
#             reports through a fresh descriptor, no iterator over a map's elements, no map of
#             maps shaped for a guard map, no LSM program loaded or attached, no mount over
#             the directories above the pins; requests that
#             would take a file from the capsule that protects it through its directory, or
#             freeze another capsule's file, change nothing; `requests` opens write-only only;
#             a seal whose requests another process overwrote before the guard applied them
#             (it traces sealtool to do it at the worst moment) says it is not enforced; each
#             with a control.
#   level 2   a program that reads other processes' memory, loaded while `sealtool level 2`
#             is under way: between its looks at the programs (the raise is refused), and
#             after them (programs are locked: the load is refused).
#   identity  (at 0 and at 1) `sealtool status` vouches only for this build's guard as the
#             kernel runs it: pins hidden by a mount say "hidden"; an impostor's pins (its
#             own LSM program, or maps of its own beside the guard's links) are told apart.
#   enforce2  (`integrity-suite.sh enforce2`, a boot of its own) plain `sealtool enforce` over
#             a registry configured for level 2 applies level 2's locks (registry, lockdown)
#             as `sealtool level 2` does.
#
# Output: `PASS:`/`FAIL:` lines, then `integrity-suite: N passed, M failed`; exit 0 when M is 0.
set -u
export CAPSULE_REGISTRY=/tmp/registry
LOG=/tmp/integrity-suite.log
. /inside.sh
PINS=/sys/fs/bpf/fsguard
PROG=fsguard_file_permission
SUITE=integrity-suite
. /checks.sh
attack() { guard-attack "$@" 2>>"$LOG"; }
rejected() { bpf-probe request-level $PINS "$1" 2>>"$LOG"; }

if [ "${1:-}" = enforce2 ]; then
    # A fresh boot, a registry configured for level 2 (as `sealtool level 2` records it), and
    # plain `sealtool enforce` (no --boot) loading the guard at that level: level 2's locks
    # must follow, as after `sealtool level 2`.
    mkdir -p /jails/app && echo x >/jails/app/f
    out=$(sealtool register /jails/app --name app 2>&1)
    echo "$out" >>"$LOG"
    printf '2\n' >/tmp/registry/level
    expect "setup: nothing is enforced yet" absent "$([ -e $PINS/link_fsguard_file_open ] && echo present || echo absent)"
    out=$(sealtool enforce 2>&1)
    echo "$out" >>"$LOG"
    expect "plain enforce: the guard is loaded at level 2" 2 "$(sealtool level 2>>"$LOG")"
    contains "plain enforce: the registry is locked" "$out" "registry /tmp/registry locked"
    expect "plain enforce: lockdown is integrity" integrity "$(sed -n 's/.*\[\(.*\)\].*/\1/p' /sys/kernel/security/lockdown)"
    expect "plain enforce: rewrite the registry's level file" refused "$(res sh -c 'echo 0 > /tmp/registry/level')"
    expect "plain enforce: write the registry's lock file (not protected; control)" allowed "$(res sh -c 'echo >> /tmp/registry/lock')"
    finish
fi

# ---------------------------------------------------------------- level 0
out=$(sealtool level 0 2>&1)
echo "$out" >>"$LOG"
expect "setup: the guard is loaded at level 0" 0 "$(sealtool level 2>>"$LOG")"
# Which guard sealtool talks to: the kernel's attached programs by id and tag, not the pins
# (issue 25, class 3). An impostor's pins are seen only in a mount namespace of its own.
out=$(sealtool status 2>&1)
contains "level 0: status vouches for this build's guard (control)" "$out" "active (fsguard, this build's"
out=$(unshare -m sh -c 'mount -t tmpfs t /sys/fs && sealtool status' 2>&1)
rc=$?
contains "level 0: status with the pins hidden says the guard is hidden" "$out" "active but HIDDEN"
expect "level 0: status with the pins hidden fails" "exit 2" "exit $rc"
out=$(attack impostor $PINS real own-lsm -- sealtool status)
rc=$?
contains "level 0: an impostor's program pinned for the guard's file_open is told by its tag" "$out" "another build's guard or an impostor"
expect "level 0: status over that impostor fails" "exit 2" "exit $rc"
out=$(attack impostor $PINS real -- sealtool status)
contains "level 0: the guard's own links and maps pinned again elsewhere (control)" "$out" "active (fsguard, this build's"
out=$(attack impostor $PINS fake -- sealtool status)
contains "level 0: the guard's links with maps of an impostor's are told by the maps' ids" "$out" "is not a map the guard's programs use"
mkdir -p /jails/app/etc /jails/app/dev && echo "listen = 80" >/jails/app/etc/app.conf
# Special files in the sealed tree (issue 25, class 4), and their twins outside any capsule.
mkfifo /jails/app/etc/ctl.fifo /tmp/free.fifo
capsule-probe mknod-chr /jails/app/dev/null >>"$LOG" 2>&1
capsule-probe mknod-chr /tmp/free.null >>"$LOG" 2>&1
capsule-probe bind-unix /jails/app/etc/ctl.sock >>"$LOG" 2>&1
capsule-probe bind-unix /tmp/free.sock >>"$LOG" 2>&1
# Modes that let the unprivileged user try (so that what refuses is the guard, not DAC).
chmod 666 /jails/app/etc/ctl.fifo /jails/app/dev/null /jails/app/etc/ctl.sock /tmp/free.fifo /tmp/free.null /tmp/free.sock
chmod 777 /jails/app/etc /jails/app/dev
exec 8<>/jails/app/etc/ctl.fifo 9<>/tmp/free.fifo
out=$(sealtool register /jails/app --name app --seal 2>&1)
echo "$out" >>"$LOG"
contains "setup: seal app" "$out" "enforced by fsguard"
slot=$(sealtool status 2>>"$LOG" | sed -n 's/^capsule *app .*(slot \([0-9]*\)).*/\1/p')
# svc: a capsule with an inside, which makes a file after the seal (on tmpfs, protected
# through its directory only).
mkdir -p /jails/svc/data /sys/fs/cgroup/svc && echo seed >/jails/svc/data/seed
sysbase_setup || bad "setup: seal the guest's programs as bases"
inside_start /sys/fs/cgroup/svc
sealtool register /jails/svc --name svc >>"$LOG" 2>&1
out=$(sealtool seal svc --cgroup /sys/fs/cgroup/svc 2>&1)
echo "$out" >>"$LOG"
contains "setup: seal svc" "$out" "enforced by fsguard"
svc_slot=$(sealtool status 2>>"$LOG" | sed -n 's/^capsule *svc .*(slot \([0-9]*\)).*/\1/p')
expect "setup: svc makes a file inside after the seal" allowed "$(res inside sh -c 'echo made > /jails/svc/data/made')"

expect "level 0: a descriptor of a guard program by id (control)" allowed "$(attack prog-fd $PROG)"
expect "level 0: an extension of the guard's fsguard_current_capsule" refused "$(attack ext-guard $PROG "${slot:-1}")"
expect "level 0: the same extension of the attacker's own program (control)" allowed "$(attack ext-own)"
expect "level 0: a socket filter using the guard's config map (control: allowed before the freeze)" \
    allowed "$(attack filter-map $PINS/config)"
out=$(rejected 1)
expect "level 0: a raw request for level 1 before the maps are frozen is rejected" "level 0" "$(echo "$out" | cut -d' ' -f1,2)"
expect "level 0: an iterator over a map's elements, which rewrites them (control)" allowed "$(attack iter-own-map)"
expect "level 0: a map of maps (control)" allowed "$(attack outer-own-map)"
expect "level 0: an LSM program of the attacker's own, attached (control)" "attach-lsm allowed" \
    "$(echo | guard-attack hold-lsm 2>>"$LOG" | grep '^attach-lsm')"
expect "level 0: an fmod_ret program, attached (control)" allowed "$(attack fmodret-attach)"

# (Each holder is started with the others' pipe ends closed, so that it alone keeps its own
# open.) What root leaves at level 0 to reach the guard after the raise; the raise must refuse while
# any of it stands, and name it. An iterator link over the guard's config, pinned (reading
# the pin would rewrite the config); an LSM program answering "no attribute" in
# inode_init_security before the guard's; a process holding the config map, a guard
# program and an extension loaded for its own LSM program.
expect "level 0: pin an iterator link over the guard's config (control: allowed before the raise)" \
    allowed "$(attack iter-pin $PINS/config /sys/fs/bpf/cfg-iter)"
# An empty map of maps whose inner maps are shaped like requests: after the raise a
# write-only descriptor of requests put in it would let a program read and rewrite requests.
expect "level 0: pin an empty map of maps shaped like requests (control: allowed before the raise)" \
    allowed "$(attack outer-pin $PINS/requests /sys/fs/bpf/outer-rq)"
for m in requests inodes state results; do
    expect "level 0: read the $m pin as a file (control: allowed before the freeze)" allowed "$(res cat $PINS/$m)"
done
# The requests pin opened as a file now, read after the raise.
mkfifo /tmp/pinrd.in
sh -c "exec 6<$PINS/requests; read x </tmp/pinrd.in; cat <&6 >/dev/null && echo allowed || echo refused" \
    >/tmp/pinrd.out 2>>"$LOG" &
pin_reader=$!
mkfifo /tmp/skip.in /tmp/hold.in /tmp/lsm.in /tmp/fmr.in
guard-attack skip-init-security </tmp/skip.in >/tmp/skip.out 2>>"$LOG" 4>&- 5>&- 6>&- 7>&- &
skipper=$!
exec 6>/tmp/skip.in
guard-attack hold $PINS $PROG </tmp/hold.in >/tmp/hold.out 2>>"$LOG" 4>&- 5>&- 6>&- 7>&- &
holder=$!
exec 5>/tmp/hold.in
# An LSM program loaded (not attached): attached after the guard, it would run before it.
guard-attack hold-lsm </tmp/lsm.in >/tmp/lsm.out 2>>"$LOG" 4>&- 5>&- 6>&- 7>&- &
lsm_holder=$!
exec 7>/tmp/lsm.in
# An fmod_ret program loaded (not attached): the scan lets it be; attaching it is refused.
guard-attack hold-fmodret </tmp/fmr.in >/tmp/fmr.out 2>>"$LOG" 4>&- 5>&- 6>&- 7>&- &
fmr_holder=$!
exec 4>/tmp/fmr.in
# A readable descriptor of `requests` (it would read the tags other senders' requests carry,
# and so pass requests off as theirs), and a write-only one (the control: what sealtool holds).
mkfifo /tmp/rq.in
guard-attack hold-requests $PINS rw </tmp/rq.in >/tmp/rqrw.out 2>>"$LOG" 4>&- 5>&- 6>&- 7>&- &
rq_reader=$!
guard-attack hold-requests $PINS wo </tmp/rq.in >/tmp/rqwo.out 2>>"$LOG" 4>&- 5>&- 6>&- 7>&- &
rq_writer=$!
exec 3>/tmp/rq.in
i=0
while [ "$i" -lt 150 ] && ! { grep -q '^held' /tmp/skip.out && grep -q '^held' /tmp/hold.out &&
    grep -q '^held' /tmp/lsm.out && grep -q '^held' /tmp/fmr.out &&
    grep -q '^held' /tmp/rqrw.out && grep -q '^held' /tmp/rqwo.out; } 2>/dev/null &&
    ! grep -q '^error\|^refused' /tmp/hold.out /tmp/skip.out /tmp/lsm.out /tmp/fmr.out 2>/dev/null; do
    sleep 0.1; i=$((i + 1))
done
expect "level 0: an LSM program of the attacker's own, loaded (control)" held "$(head -n1 /tmp/lsm.out)"
expect "level 0: an fmod_ret program, loaded (control)" held "$(head -n1 /tmp/fmr.out)"
expect "level 0: an LSM program before the guard's in inode_init_security (control: allowed at 0)" \
    "attach-lsm allowed" "$(grep '^attach-lsm' /tmp/skip.out)"
expect "level 0: the holder took the config map, a guard program and an extension" held "$(head -n1 /tmp/hold.out)"
# Loop devices bound at level 0 (a loop device writes its backing file with no hook of its
# own): to a sealed file, to the file svc made inside after its seal (protected through its
# directory), and to a file of no capsule (the control, kept through the raise below).
head -c 65536 /dev/zero >/tmp/free-loop.img
[ -e /dev/loop-control ] || insmod /lib/modules/vm/loop.ko >>"$LOG" 2>&1
bound() { r=$(bpf-probe loop-over "$1" 2>>"$LOG"); echo "${r#allowed }"; }
lo_sealed=$(bound /jails/app/etc/app.conf)
lo_made=$(bound /jails/svc/data/made)
lo_free=$(bound /tmp/free-loop.img)
expect "level 0: loop devices bound to a sealed file, a file made in svc, a free file (allowed at 0)" \
    "loop loop loop" "${lo_sealed%%[0-9]*} ${lo_made%%[0-9]*} ${lo_free%%[0-9]*}"
out=$(sealtool level 1 2>&1)
rc=$?
echo "$out" >>"$LOG"
expect "raise: sealtool level 1 fails while they stand" "exit 2" "exit $rc"
contains "raise: the refusal names the loop device over a sealed file" "$out" "loop device $lo_sealed is bound to a file the guard protects"
contains "raise: ... and the one over the file made in svc after its seal" "$out" "loop device $lo_made is bound to a file the guard protects"
case "$out" in
*"loop device $lo_free "*) bad "raise: a loop device over a file of no capsule is let be (control)" ;;
*) ok "raise: a loop device over a file of no capsule is let be (control)" ;;
esac
contains "raise: the refusal names the iterator link" "$out" "iterates over the guard's map"
contains "raise: the refusal names the LSM link" "$out" "to inode_init_security, before the guard's"
contains "raise: the refusal names the holder" "$out" "process $holder"
contains "raise: the refusal names the loaded LSM program" "$out" "is an LSM program that is not the guard's"
contains "raise: the refusal names the map of maps shaped for the guard's" "$out" "is a map of maps whose inner maps have the shape of one of the guard's"
contains "raise: the refusal names the reader of requests" "$out" "process $rq_reader (guard-attack) holds descriptor"
contains "raise: ... as a reader of requests" "$out" "(a readable one of requests"
case "$out" in
*"process $rq_writer ("*) bad "raise: a write-only descriptor of requests is let be (control)" ;;
*) ok "raise: a write-only descriptor of requests is let be (control)" ;;
esac
expect "raise: the level stays 0" 0 "$(sealtool level 2>>"$LOG")"
echo go >&5
i=0
while [ "$i" -lt 100 ] && ! grep -q '^attach-lsm' /tmp/hold.out; do sleep 0.1; i=$((i + 1)); done
expect "frozen: write the config map through a descriptor opened before" "write-config refused" "$(grep '^write-config' /tmp/hold.out)"
expect "frozen: attach the held extension to the guard's function (retarget)" "retarget refused" "$(grep '^retarget' /tmp/hold.out)"
expect "frozen: a socket filter using the held config map" "filter refused" "$(grep '^filter' /tmp/hold.out)"
expect "frozen: open the guard's config (from the freeze on, as at level 1)" refused "$(bpf-probe obj-get $PINS/config ro 2>>"$LOG")"
exec 3>&- 5>&- 6>&- 7>&-
wait "$holder" "$skipper" "$lsm_holder" "$rq_reader" "$rq_writer"
rm -f /sys/fs/bpf/cfg-iter /sys/fs/bpf/outer-rq
losetup -d /dev/$lo_sealed >>"$LOG" 2>&1
losetup -d /dev/$lo_made >>"$LOG" 2>&1
# The refused raise froze the guard's maps: from then on a loop device is bound to a file
# only where the guard lets it, and one bound before can't be looked up any more.
out=$(sealtool level 1 2>&1)
rc=$?
echo "$out" >>"$LOG"
expect "raise: refused again while any loop device is bound (none can be looked up once frozen)" "exit 2" "exit $rc"
contains "raise: ... naming it" "$out" "loop device $lo_free is bound to a file that can't be looked up"
losetup -d /dev/$lo_free >>"$LOG" 2>&1
got=$(bpf-probe loop-over /jails/app/etc/app.conf 2>>"$LOG")
expect "frozen: bind a loop device to a sealed file" refused "$got"
got=$(bpf-probe loop-over /tmp/free-loop.img 2>>"$LOG")
expect "frozen: bind one to a file of no capsule (control)" allowed "${got%% *}"
[ "${got%% *}" = allowed ] && losetup -d "/dev/${got#* }" >>"$LOG" 2>&1
# The raise, traced: as it writes its request (after its checks) a loop device is bound to a
# sealed file, which the guard refuses; the raise is whole.
out=$(guard-attack during-raise 1 loop /jails/app/etc/app.conf -- sealtool level 1 2>&1)
rc=$?
echo "$out" >>"$LOG"
expect "raise: a loop device bound to a sealed file as sealtool level 1 writes its request" \
    "error: LOOP_SET_FD: Operation not permitted (os error 1)" "$(echo "$out" | grep '^error: LOOP_SET_FD')"
expect "raise: sealtool level 1 once the holders are gone" "exit 0" "exit $rc"
expect "raise: the level is 1" 1 "$(sealtool level 2>>"$LOG")"
echo go >/tmp/pinrd.in
wait "$pin_reader"
expect "level 1: read requests through its pin opened as a file at level 0" refused "$(cat /tmp/pinrd.out)"
echo go >&4
i=0
while [ "$i" -lt 100 ] && ! grep -q '^rawtp' /tmp/fmr.out; do sleep 0.1; i=$((i + 1)); done
expect "level 1: attach an fmod_ret program loaded at level 0 (BPF_LINK_CREATE)" "link refused" "$(grep '^link' /tmp/fmr.out)"
expect "level 1: attach it by BPF_RAW_TRACEPOINT_OPEN" "rawtp refused" "$(grep '^rawtp' /tmp/fmr.out)"
exec 4>&-
wait "$fmr_holder"

# ---------------------------------------------------------------- level 1
expect "level 1: open requests read-write (it would read other senders' tags)" refused \
    "$(bpf-probe obj-get $PINS/requests 2>>"$LOG")"
expect "level 1: open requests read-only" refused "$(bpf-probe obj-get $PINS/requests ro 2>>"$LOG")"
expect "level 1: open requests write-only (control)" allowed "$(bpf-probe obj-get $PINS/requests wo 2>>"$LOG")"
for m in requests inodes state results; do
    expect "level 1: read the $m pin as a file (bpffs lists its elements)" refused "$(res cat $PINS/$m)"
done
out=$(sealtool status 2>&1)
contains "level 1: status vouches for this build's guard (control)" "$out" "active (fsguard, this build's"
n1=$(echo "$out" | sed -n 's/^refusals *\([0-9]*\).*/\1/p')
n2=$(sealtool status 2>>"$LOG" | sed -n 's/^refusals *\([0-9]*\).*/\1/p')
expect "level 1: status costs no refusal (its look at the guard's answers is neither reported nor counted)" "$n1" "$n2"
out=$(unshare -m sh -c 'mount -t tmpfs t /sys/fs && sealtool status' 2>&1)
rc=$?
contains "level 1: status with the pins hidden in a private namespace says the guard is hidden" "$out" "active but HIDDEN"
expect "level 1: status with the pins hidden fails" "exit 2" "exit $rc"
out=$(attack impostor $PINS fake -- sealtool status)
rc=$?
contains "level 1: an impostor's reports beside the guard's links are told (the guard refuses its own to writers)" "$out" "opens for writing"
expect "level 1: status over that impostor fails" "exit 2" "exit $rc"
out=$(attack impostor $PINS fake-requests -- sealtool status)
rc=$?
contains "level 1: an impostor's requests beside the guard's reports and links are told (the guard refuses its own to readers)" "$out" "requests (map"
expect "level 1: status over that impostor fails" "exit 2" "exit $rc"
mkdir -p /tmp/imp && echo x >/tmp/imp/f
sealtool register /tmp/imp --name imp >>"$LOG" 2>&1
out=$(attack impostor $PINS fake -- sealtool seal imp)
rc=$?
contains "level 1: seal over that impostor does not take it for the guard" "$out" "enforcement is NOT active: the guard pinned in"
expect "level 1: seal over that impostor says so in its exit status" "exit 3" "exit $rc"
sealtool enforce >>"$LOG" 2>&1
expect "level 1: enforce (outside the impostor's namespace) applies that seal (control)" 1 "$(sealtool status 2>&1 | grep -c '^capsule *imp *enforced')"
expect "level 1: a descriptor of a guard program by id" refused "$(attack prog-fd $PROG)"
expect "level 1: a descriptor of the attacker's own program by id (control)" allowed "$(attack own-prog-fd)"
expect "level 1: an extension of the guard's function" refused "$(attack ext-guard $PROG "${slot:-1}")"
expect "level 1: an extension (of the attacker's own LSM program) loaded" refused "$(attack ext-own)"
expect "level 1: an iterator over the guard's state map" refused "$(attack iter-map $PINS/state)"
expect "level 1: an iterator over a map of its own (level 0 above is the control)" refused "$(attack iter-own-map)"
expect "level 1: a map of maps whose inner maps are like the guard's state" refused "$(attack outer-map $PINS/state)"
expect "level 1: a map of maps of another shape (control)" allowed "$(attack outer-own-map)"
for m in state stats capsules_view; do
    expect "level 1: a socket filter using the guard's $m map" refused "$(attack filter-map $PINS/$m)"
    expect "level 1: rewrite the guard's $m through a fresh descriptor" refused "$(attack write-map $PINS/$m)"
done
expect "level 1: a socket filter using a map of its own (control)" allowed "$(attack filter-own-map)"
expect "level 1: read the guard's stats (control)" allowed "$(bpf-probe obj-get $PINS/stats ro 2>>"$LOG")"
# Mounts that would hide the pins (and let an impostor's stand in for them).
for d in /sys/fs /sys; do
    got=$(res mount -t tmpfs t $d)
    [ "$got" = allowed ] && umount $d
    expect "level 1: mount over $d, above the pins" refused "$got"
done
got=$(res mount --bind /tmp /sys/fs)
[ "$got" = allowed ] && umount /sys/fs
expect "level 1: bind-mount over /sys/fs" refused "$got"
mkdir -p /tmp/mnt-control
got=$(res mount -t tmpfs t /tmp/mnt-control)
[ "$got" = allowed ] && umount /tmp/mnt-control
expect "level 1: mount over an unrelated directory (control)" allowed "$got"
expect "level 1: outside write to the sealed tree" refused "$(res sh -c 'echo x >> /jails/app/etc/app.conf')"
probe() { capsule-probe "$@" 2>>"$LOG"; }
user_probe() { su -s /bin/sh user -c "capsule-probe $*" 2>>"$LOG"; }
for who in root user; do
    if [ "$who" = root ]; then p=probe; else p=user_probe; fi
    expect "special files, $who: open the sealed tree's FIFO for writing" refused "$($p open-rdwr /jails/app/etc/ctl.fifo)"
    expect "special files, $who: open a FIFO outside any capsule for writing (control)" allowed "$($p open-rdwr /tmp/free.fifo)"
    expect "special files, $who: open the sealed tree's device node for writing" refused "$($p open-wronly /jails/app/dev/null)"
    expect "special files, $who: open a device node outside any capsule for writing (control)" allowed "$($p open-wronly /tmp/free.null)"
    for f in etc/ctl.fifo dev/null etc/ctl.sock; do
        expect "special files, $who: unlink the sealed tree's $f" refused "$($p unlink /jails/app/$f)"
        expect "special files, $who: rename the sealed tree's $f" refused "$($p rename /jails/app/$f /jails/app/$f.moved)"
    done
done
for f in etc/ctl.fifo dev/null etc/ctl.sock; do
    expect "special files, root: chmod the sealed tree's $f" refused "$(probe chmod /jails/app/$f 600)"
done
expect "special files, root: chmod a socket file outside any capsule (control)" allowed "$(probe chmod /tmp/free.sock 600)"
mkdir -p /tmp/free.d && chmod 777 /tmp/free.d && capsule-probe bind-unix /tmp/free.d/s >>"$LOG" 2>&1
expect "special files, user: unlink a socket file outside any capsule (control)" allowed "$(user_probe unlink /tmp/free.d/s)"
expect "special files: write the sealed tree's FIFO through a descriptor opened before the seal" refused \
    "$(res sh -c 'echo x >&8')"
expect "special files: write a FIFO outside any capsule through a descriptor opened before (control)" allowed \
    "$(res sh -c 'echo x >&9')"
expect "level 1: write to an unrelated file (control)" allowed "$(res sh -c 'echo x >> /tmp/unrelated')"
r0=$(rejected 1 | cut -d' ' -f4)
out=$(rejected 1)
expect "level 1: a raw request for the level in force is applied (control)" "level 1 rejected $r0" "$(echo "$out" | cut -d' ' -f1-4)"

# Requests anyone may leave: a capsule of the attacker's whose inside is its own cgroup, then
# claims. A new capsule and a claim on a free file are applied (the controls); a claim on
# svc's file made inside (protected through its directory only) is applied but gives nothing;
# claims that would freeze svc's files, or give one to the attacker's capsule, are rejected.
mkdir -p /sys/fs/cgroup/evil
echo free >/tmp/free
evil() { sh -c 'echo $$ > /sys/fs/cgroup/evil/cgroup.procs && exec "$@"' evil "$@"; }
rej() { echo "$1" | cut -d' ' -f4; }
r0=$(rej "$(rejected 1)")
out=$(bpf-probe request-capsule $PINS 200 evil /sys/fs/cgroup/evil 2>>"$LOG")
expect "requests: a new capsule whose inside is the attacker's cgroup (control: applied)" "$r0" "$(rej "$out")"
out=$(bpf-probe request-inode $PINS 200 /tmp/free 0 2>>"$LOG")
expect "requests: claim an unprotected file for it (control: applied)" "$r0" "$(rej "$out")"
expect "requests: the claimed file is protected from root outside (control)" refused "$(res sh -c 'echo x >> /tmp/free')"
expect "requests: ... and writable inside the new capsule (control)" allowed "$(res evil sh -c 'echo x >> /tmp/free')"
out=$(bpf-probe request-inode $PINS 200 /jails/svc/data/made 0 2>>"$LOG")
echo "claim of made: $out" >>"$LOG"
expect "requests: inside the new capsule, write svc's file made inside after a claim on it" refused \
    "$(res evil sh -c 'echo x >> /jails/svc/data/made')"
expect "requests: ... unlink it" refused "$(res evil rm -f /jails/svc/data/made)"
expect "requests: svc still writes its file (control)" allowed "$(res inside sh -c 'echo y >> /jails/svc/data/made')"
# The same file reached through an overlay whose upper layer is svc's directory (the guard
# sees the real file through a path that is not its own).
mkdir -p /jails/ovl/lower /jails/ovl/work /tmp/merged
if mount -t overlay ovl -o lowerdir=/jails/ovl/lower,upperdir=/jails/svc/data,workdir=/jails/ovl/work /tmp/merged 2>>"$LOG"; then
    expect "requests: inside the new capsule, write the claimed file through an overlay" refused \
        "$(res evil sh -c 'echo x >> /tmp/merged/made')"
    expect "requests: svc writes its file through the same overlay (control)" allowed \
        "$(res inside sh -c 'echo y >> /tmp/merged/made')"
    umount /tmp/merged
else
    bad "requests: overlay over svc's directory could not be mounted"
fi
# A claim with "frozen" on a file svc protects through its directory freezes nothing.
expect "requests: svc makes a second file inside (control)" allowed "$(res inside sh -c 'echo m > /jails/svc/data/made2')"
bpf-probe request-inode $PINS 200 /jails/svc/data/made2 1 >>"$LOG" 2>&1
expect "requests: svc still writes it after a frozen claim on it" allowed "$(res inside sh -c 'echo y >> /jails/svc/data/made2')"
# A claim is applied again only as it is: asking for less (or more) than an earlier claim
# set is rejected, so an earlier request's flags never pass for a later requester's.
r4=$(rej "$(rejected 1)")
out=$(bpf-probe request-inode $PINS 200 /tmp/free 0 2>>"$LOG")
expect "requests: the same claim again (control: applied)" "$r4" "$(rej "$out")"
out=$(bpf-probe request-inode $PINS 200 /tmp/free 1 2>>"$LOG")
expect "requests: the same inode claimed again with frozen is rejected" "$((r4 + 1))" "$(rej "$out")"
echo tmp >/tmp/free3
out=$(bpf-probe request-inode $PINS 200 /tmp/free3 3 2>>"$LOG")
expect "requests: frozen and append-only together are rejected" "$((r4 + 2))" "$(rej "$out")"
# A capsule put in the guard by request under the name of one about to be sealed: the seal
# refuses to hand its tree to it.
mkdir -p /jails/pre && echo p >/jails/pre/f
bpf-probe request-capsule $PINS 202 pre >>"$LOG" 2>&1
sealtool register /jails/pre --name pre >>"$LOG" 2>&1
out=$(sealtool seal pre 2>&1)
rc=$?
echo "$out" >>"$LOG"
expect "requests: sealing a capsule whose name a request took first is not enforced" "exit 3" "exit $rc"
contains "requests: ... and says why" "$out" "already holds a capsule named \`pre\`"
# Capsules whose inside would hold another capsule's processes are rejected.
r2=$(rej "$(rejected 1)")
out=$(bpf-probe request-capsule $PINS 201 all /sys/fs/cgroup 2>>"$LOG")
expect "requests: a capsule whose inside is the root cgroup is rejected" "$((r2 + 1))" "$(rej "$out")"
out=$(bpf-probe request-capsule $PINS 201 twin /sys/fs/cgroup/svc 2>>"$LOG")
expect "requests: a capsule whose inside is svc's cgroup is rejected" "$((r2 + 2))" "$(rej "$out")"
mkdir -p /jails/out
expect "requests: svc links its file into a directory of no capsule (control)" allowed \
    "$(res inside ln /jails/svc/data/made /jails/out/made.link)"
expect "requests: inside the new capsule, write it through that link" refused \
    "$(res evil sh -c 'echo x >> /jails/out/made.link')"
r1=$(rej "$(rejected 1)")
out=$(bpf-probe request-inode $PINS "${svc_slot:-0}" /jails/svc/data/seed 1 2>>"$LOG")
expect "requests: freeze svc's sealed file is rejected" "$((r1 + 1))" "$(rej "$out")"
out=$(bpf-probe request-inode $PINS 200 /jails/svc/data/seed 0 2>>"$LOG")
expect "requests: claim svc's sealed file for the new capsule is rejected" "$((r1 + 2))" "$(rej "$out")"
expect "requests: svc still writes its sealed file (control)" allowed "$(res inside sh -c 'echo y >> /jails/svc/data/seed')"
expect "requests: inside the new capsule, write svc's sealed file" refused "$(res evil sh -c 'echo x >> /jails/svc/data/seed')"
# Directories above the guard's pins and above sealed roots are the guard's and the
# capsules' already: a claim on one would make it the new capsule's, and speak for it first.
out=$(bpf-probe request-inode $PINS 200 /sys/fs 0 2>>"$LOG")
expect "requests: claim /sys/fs (above the guard's pins) for the new capsule is rejected" "$((r1 + 3))" "$(rej "$out")"
got=$(res evil mount --bind /tmp /sys/fs)
[ "$got" = allowed ] && umount /sys/fs
expect "requests: inside the new capsule, bind-mount over /sys/fs" refused "$got"
out=$(bpf-probe request-inode $PINS 200 /jails 0 2>>"$LOG")
expect "requests: claim /jails (above svc's root) for the new capsule is rejected" "$((r1 + 4))" "$(rej "$out")"

# A cgroup above a capsule sealed later, registered first as above a capsule of the
# attacker's (anyone may ask; its agent joined its cgroup before the capsule was asked for):
# once the capsule sealed there asks for it too it is nobody's, so the attacker's members can
# no longer freeze or kill the capsule's processes through it.
mkdir -p /sys/fs/cgroup/atk /sys/fs/cgroup/shared/x /sys/fs/cgroup/free /jails/sx && echo sx >/jails/sx/f
INSIDE_DIR=/tmp/atk-agent inside_start /sys/fs/cgroup/atk
atk() { INSIDE_DIR=/tmp/atk-agent inside "$@"; }
bpf-probe request-capsule $PINS 203 atk /sys/fs/cgroup/atk >>"$LOG" 2>&1
bpf-probe request-cgroup $PINS 203 "$(stat -c %i /sys/fs/cgroup/atk)" >>"$LOG" 2>&1
bpf-probe request-cgroup-ancestor $PINS 203 /sys/fs/cgroup/shared >>"$LOG" 2>&1
out=$(atk sh -c 'echo 0 > /sys/fs/cgroup/shared/cgroup.freeze' 2>&1)
rc=$?
[ "$rc" = 0 ] || out="$out; $(atk cat /proc/self/cgroup 2>&1); $(tail -n 3 /tmp/atk-agent/err 2>&1)"
expect "cgroup ancestors: inside the attacker's capsule, freeze the cgroup it registered (control: its own)" \
    "exit 0" "exit $rc${out:+ ($out)}"
expect "cgroup ancestors: root outside freezes it (the attacker's capsule's, until sx asks)" \
    refused "$(res sh -c 'echo 0 > /sys/fs/cgroup/shared/cgroup.freeze')"
sealtool register /jails/sx --name sx >>"$LOG" 2>&1
out=$(sealtool seal sx --cgroup /sys/fs/cgroup/shared/x 2>&1)
echo "$out" >>"$LOG"
contains "cgroup ancestors: seal sx in a cgroup below it" "$out" "enforced by fsguard"
expect "cgroup ancestors: inside the attacker's capsule, freeze it now that sx is below" \
    refused "$(res atk sh -c 'echo 0 > /sys/fs/cgroup/shared/cgroup.freeze')"
expect "cgroup ancestors: ... kill through it" refused "$(res atk sh -c 'echo 1 > /sys/fs/cgroup/shared/cgroup.kill')"
expect "cgroup ancestors: ... freeze a cgroup above no capsule (control)" \
    allowed "$(res atk sh -c 'echo 0 > /sys/fs/cgroup/free/cgroup.freeze')"
# A capsule of the attacker's around a cgroup in which a capsule is sealed later: the later
# capsule's processes become its own at the seal (the innermost capsule wins), and the outer
# one's members can no longer see, trace or kill them.
mkdir -p /sys/fs/cgroup/e2/n /jails/n && echo n >/jails/n/f
sh -c 'echo $$ > /sys/fs/cgroup/e2/n/cgroup.procs && exec sleep 100000' 4>&- 5>&- 6>&- 7>&- &
victim=$!
# The attacker's own agent in the outer cgroup, there before the capsule is asked for (once
# it is a capsule's, nobody outside can join it).
INSIDE_DIR=/tmp/outer-agent inside_start /sys/fs/cgroup/e2
outer() { INSIDE_DIR=/tmp/outer-agent inside "$@"; }
e2_id=$(stat -c %i /sys/fs/cgroup/e2)
r3=$(rej "$(rejected 1)")
out=$(bpf-probe request-capsule $PINS 201 outer /sys/fs/cgroup/e2 2>>"$LOG")
out=$(bpf-probe request-cgroup $PINS 201 "$e2_id" 2>>"$LOG")
expect "requests: a capsule around a cgroup with no capsule yet (control: applied)" "$r3" "$(rej "$out")"
expect "innermost: a member of the outer capsule reads the process's environ (control: same capsule)" allowed \
    "$(res outer cat /proc/$victim/environ)"
sealtool register /jails/n --name n >>"$LOG" 2>&1
out=$(sealtool seal n --cgroup /sys/fs/cgroup/e2/n 2>&1)
echo "$out" >>"$LOG"
contains "innermost: seal n inside the outer capsule's cgroup" "$out" "enforced by fsguard"
expect "innermost: the outer capsule's member reads n's process's environ" refused "$(res outer cat /proc/$victim/environ)"
# (Were it allowed, the agent would die with the rest of the outer cgroup: no answer, 125.)
rc=$(INSIDE_DIR=/tmp/outer-agent INSIDE_WAIT=1000 inside sh -c 'echo 1 > /sys/fs/cgroup/e2/cgroup.kill' >>"$LOG" 2>&1; echo $?)
expect "innermost: ... kills n's processes through the outer cgroup.kill (exit 1: refused)" 1 "$rc"
[ -d /proc/$victim ] && ok "innermost: n's process lives" || bad "innermost: n's process lives"

# Requests overwritten before the guard applies them. Anyone may write to `requests`
# (write-only): root outside traces sealtool, stops it once it has left the requests of a
# seal, and writes claims for its own capsule (slot 200) over keys the guard has not reached.
# The seal must not say it is enforced. The control: the same tracing, nothing written.
for t in race0 race1; do
    mkdir -p /jails/$t
    i=0
    while [ "$i" -lt 1200 ]; do echo "$i" >/jails/$t/f$i; i=$((i + 1)); done
    sealtool register /jails/$t --name $t >>"$LOG" 2>&1
done
out=$(attack replace-requests $PINS 200 /jails/race0 none -- sealtool seal race0 2>&1)
rc=$?
echo "$out" >>"$LOG"
contains "replaced requests: a traced seal stopped after leaving its requests (control)" "$out" "replaced 0"
expect "replaced requests: ... is enforced (control)" "exit 0" "exit $rc"
out=$(attack replace-requests $PINS 200 /jails/race1 claims -- sealtool seal race1 2>&1)
rc=$?
echo "$out" >>"$LOG"
contains "replaced requests: 100 of a seal's requests overwritten with claims for the attacker's capsule" "$out" "replaced 100"
expect "replaced requests: the seal says it is not enforced" "exit 3" "exit $rc"
contains "replaced requests: ... because its requests did not all reach the guard" "$out" "were replaced or removed"

# ---------------------------------------------------------------- level 2
# A raise to 2 looks at the programs, switches level 2's rule on programs on, looks again
# (the guard's verdict), then raises. A program that reads memory, loaded between the looks
# (as the lock is written): the second look finds it and the raise is refused.
out=$(guard-attack during-raise 1 reader -- sealtool level 2 2>&1)
rc=$?
echo "$out" >>"$LOG"
expect "raise to 2: a socket filter calling bpf_probe_read_user, loaded as programs are being locked" \
    yes "$(echo "$out" | grep -q '^loaded (descriptor' && echo yes)"
expect "raise to 2: ... the raise is refused" "exit 2" "exit $rc"
contains "raise to 2: ... naming the program the guard refuses now" "$out" "is one the guard hands no descriptor of"
expect "raise to 2: ... the level stays 1" 1 "$(sealtool level 2>>"$LOG")"
# Loaded after the second look (as the level is written): programs are locked by then.
out=$(guard-attack during-raise 2 reader -- sealtool level 2 2>&1)
rc=$?
echo "$out" >>"$LOG"
expect "raise to 2: the same loaded as the level is written is refused (programs locked)" \
    "error: load the reader: errno 1" "$(echo "$out" | grep '^error: load the reader')"
expect "raise to 2: ... and the raise is whole" "exit 0" "exit $rc"
expect "raise to 2: the level is 2" 2 "$(sealtool level 2>>"$LOG")"

finish
