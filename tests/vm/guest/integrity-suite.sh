#!/bin/sh
# integrity-suite.sh: the guard's own interfaces, tried as root outside a capsule would
# (tests/tests/vm_integrity.rs runs it in one boot of the test guest; busybox sh).
#
#   level 0   the guard loaded at 0 with a sealed capsule; what is allowed there (controls);
#             extensions of the guard's programs refused at every level; a raw request for
#             level 1 rejected while the maps are not frozen; a process holding the config
#             map, a guard program and an extension across the raise makes `sealtool level 1`
#             refuse, and what it holds is useless from the freeze on.
#   level 1   no descriptor of a guard program, no program using a guard map, no write of the
#             reports through a fresh descriptor; each with a control.
#   enforce2  (`integrity-suite.sh enforce2`, a boot of its own) plain `sealtool enforce` over
#             a registry configured for level 2 applies level 2's locks (registry, lockdown)
#             as `sealtool level 2` does.
#
# Output: `PASS:`/`FAIL:` lines, then `integrity-suite: N passed, M failed`; exit 0 when M is 0.
set -u
export CAPSULE_REGISTRY=/tmp/registry
LOG=/tmp/integrity-suite.log
: >"$LOG"
PINS=/sys/fs/bpf/fsguard
PROG=fsguard_file_permission
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "PASS: $1"; }
bad() { fail=$((fail + 1)); echo "FAIL: $1"; }
expect() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1 (expected $2, got ${3:-nothing})"; fi; }
contains() {
    case "$2" in *"$3"*) ok "$1" ;; *) bad "$1 (expected '$3' in: $(printf '%s' "$2" | tr '\n' '|'))" ;; esac
}
res() { "$@" >>"$LOG" 2>&1 && echo allowed || echo refused; }
attack() { guard-attack "$@" 2>>"$LOG"; }
rejected() { bpf-probe request-level $PINS "$1" 2>>"$LOG"; }
finish() {
    if [ "$fail" -gt 0 ]; then echo "--- $LOG (last 60 lines):"; tail -n 60 "$LOG"; fi
    echo "integrity-suite: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit $?
}

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
mkdir -p /jails/app/etc && echo "listen = 80" >/jails/app/etc/app.conf
out=$(sealtool register /jails/app --name app --seal 2>&1)
echo "$out" >>"$LOG"
contains "setup: seal app" "$out" "enforced by fsguard"
slot=$(sealtool status 2>>"$LOG" | sed -n 's/^capsule *app .*(slot \([0-9]*\)).*/\1/p')

expect "level 0: a descriptor of a guard program by id (control)" allowed "$(attack prog-fd $PROG)"
expect "level 0: an extension of the guard's fsguard_current_capsule" refused "$(attack ext-guard $PROG "${slot:-1}")"
expect "level 0: the same extension of the attacker's own program (control)" allowed "$(attack ext-own)"
expect "level 0: a socket filter using the guard's config map (control: allowed before the freeze)" \
    allowed "$(attack filter-map $PINS/config)"
out=$(rejected 1)
expect "level 0: a raw request for level 1 before the maps are frozen is rejected" "level 0" "$(echo "$out" | cut -d' ' -f1,2)"

# A process that took hold of the guard at level 0 and keeps it across the raise.
mkfifo /tmp/hold.in
guard-attack hold $PINS $PROG </tmp/hold.in >/tmp/hold.out 2>>"$LOG" &
holder=$!
exec 5>/tmp/hold.in
i=0
while [ "$i" -lt 100 ] && ! grep -q '^held' /tmp/hold.out 2>/dev/null && ! grep -q '^error' /tmp/hold.out; do
    sleep 0.1; i=$((i + 1))
done
expect "level 0: the holder took the config map, a guard program and an extension" held "$(head -n1 /tmp/hold.out)"
out=$(sealtool level 1 2>&1)
rc=$?
echo "$out" >>"$LOG"
expect "raise: sealtool level 1 fails while something else holds the guard" "exit 2" "exit $rc"
contains "raise: the refusal names the holder" "$out" "process $holder"
expect "raise: the level stays 0" 0 "$(sealtool level 2>>"$LOG")"
echo go >&5
i=0
while [ "$i" -lt 100 ] && ! grep -q '^filter' /tmp/hold.out; do sleep 0.1; i=$((i + 1)); done
expect "frozen: write the config map through a descriptor opened before" "write-config refused" "$(grep '^write-config' /tmp/hold.out)"
expect "frozen: attach the held extension to the guard's function (retarget)" "retarget refused" "$(grep '^retarget' /tmp/hold.out)"
expect "frozen: a socket filter using the held config map" "filter refused" "$(grep '^filter' /tmp/hold.out)"
exec 5>&-
wait "$holder"
out=$(sealtool level 1 2>&1)
rc=$?
echo "$out" >>"$LOG"
expect "raise: sealtool level 1 once the holder is gone" "exit 0" "exit $rc"
expect "raise: the level is 1" 1 "$(sealtool level 2>>"$LOG")"

# ---------------------------------------------------------------- level 1
expect "level 1: a descriptor of a guard program by id" refused "$(attack prog-fd $PROG)"
expect "level 1: a descriptor of the attacker's own program by id (control)" allowed "$(attack own-prog-fd)"
expect "level 1: an extension of the guard's function" refused "$(attack ext-guard $PROG "${slot:-1}")"
expect "level 1: an extension of the attacker's own program (control)" allowed "$(attack ext-own)"
for m in state stats capsules_view; do
    expect "level 1: a socket filter using the guard's $m map" refused "$(attack filter-map $PINS/$m)"
    expect "level 1: rewrite the guard's $m through a fresh descriptor" refused "$(attack write-map $PINS/$m)"
done
expect "level 1: a socket filter using a map of its own (control)" allowed "$(attack filter-own-map)"
expect "level 1: read the guard's stats (control)" allowed "$(bpf-probe obj-get $PINS/stats ro 2>>"$LOG")"
expect "level 1: outside write to the sealed tree" refused "$(res sh -c 'echo x >> /jails/app/etc/app.conf')"
expect "level 1: write to an unrelated file (control)" allowed "$(res sh -c 'echo x >> /tmp/unrelated')"
r0=$(rejected 1 | cut -d' ' -f4)
out=$(rejected 1)
expect "level 1: a raw request for the level in force is applied (control)" "level 1 rejected $r0" "$(echo "$out" | cut -d' ' -f1-4)"

finish
