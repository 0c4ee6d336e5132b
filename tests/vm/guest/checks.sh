# checks.sh: the checks a guest suite is made of (busybox sh; sourced after SUITE and LOG are
# set). Added to the guest as /checks.sh by the suite's test (tests/tests/vm_*.rs).
#
#   ok WHAT / bad WHAT              a check that passed / failed
#   expect WHAT EXPECTED GOT        passes when GOT is EXPECTED
#   contains WHAT TEXT NEEDLE       passes when TEXT contains NEEDLE
#   res CMD...                      runs CMD (its output to $LOG): `allowed` or `refused`
#   finish                          the summary line `$SUITE: N passed, M failed` (with the
#                                   log's last lines on a failure); exits 0 when M is 0
pass=0
fail=0
: >"$LOG"
ok() { pass=$((pass + 1)); echo "PASS: $1"; }
bad() { fail=$((fail + 1)); echo "FAIL: $1"; }
expect() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1 (expected $2, got ${3:-nothing})"; fi; }
contains() {
    case "$2" in *"$3"*) ok "$1" ;; *) bad "$1 (expected '$3' in: $(printf '%s' "$2" | tr '\n' '|'))" ;; esac
}
res() { "$@" >>"$LOG" 2>&1 && echo allowed || echo refused; }
# Loads the storage modules (tests/vm/lib/build-base: loop, device-mapper, md, bcache, LIO,
# nvmet, scsi_debug, sg), in dependency order; a failure is a FAIL.
load_storage_modules() {
    while read -r m; do
        [ -n "$m" ] && [ ! -d "/sys/module/$m" ] || continue
        insmod "/lib/modules/vm/$m.ko" 2>>"$LOG" || { bad "insmod $m"; return 1; }
    done </lib/modules/vm/order-storage
}
finish() {
    if [ "$fail" -gt 0 ]; then echo "--- $LOG (last 60 lines):"; tail -n 60 "$LOG"; fi
    echo "$SUITE: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit $?
}
