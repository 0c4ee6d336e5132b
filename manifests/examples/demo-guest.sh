#!/bin/sh
# The demo's guest half (scripts/demo boots a kernel with the BPF LSM and runs this as root):
# register a jail, seal it, show an outside write refused and an inside write allowed, and
# verify the tree clean. Exits non-zero if anything does not behave as shown.
set -u
export CAPSULE_REGISTRY=/var/lib/capsule
failed=0
step() { printf '\n\033[1m# %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; sh -c "$*"; }
expect() { # expect ok|refused DESCRIPTION -- command...
    want=$1; shift; what=$1; shift
    printf '$ %s\n' "$*"
    if sh -c "$*" 2>/tmp/err; then got=ok; else got=refused; fi
    [ -s /tmp/err ] && sed 's/^/  /' /tmp/err
    if [ "$got" = "$want" ]; then
        echo "  -> $what: $got, as expected"
    else
        echo "  -> $what: $got, EXPECTED $want"; failed=1
    fi
}
inside() { # a shell in the capsule's cgroup
    sh -c 'echo $$ > /sys/fs/cgroup/webapp/cgroup.procs && exec sh -c "$1"' sh "$*"
}

mkdir -p /jails && mount -t tmpfs tmpfs /jails
/examples/webapp.sh /jails/webapp

step "register the jail (its logs are runtime state, left out of the manifest)"
run "sealtool register /jails/webapp --exclude 'var/log/**'" || failed=1
step "seal it: its inside is the cgroup webapp; bin/ is frozen even for the inside"
run "sealtool seal webapp --cgroup /sys/fs/cgroup/webapp --frozen 'bin/**'" || failed=1
run "sealtool status"

step "root outside the capsule tries to tamper"
expect refused "outside write to the config" "echo 'workers = 400' >> /jails/webapp/etc/app/app.conf"
expect refused "outside removal of the server" "rm -f /jails/webapp/bin/server"
expect refused "outside swap of the entrypoint symlink" "ln -sfn /bin/sh /jails/webapp/etc/app/entrypoint"
expect refused "outside setuid bit" "chmod u+s /jails/webapp/bin/server"

step "the capsule's own processes work normally"
mkdir -p /sys/fs/cgroup/webapp
printf '$ (inside) echo "request served" >> /jails/webapp/var/log/app.log\n'
if inside 'echo "request served" >> /jails/webapp/var/log/app.log'; then
    echo "  -> inside write to its log: ok, as expected"
else
    echo "  -> inside write to its log: refused, EXPECTED ok"; failed=1
fi
printf '$ (inside) echo evil > /jails/webapp/bin/server\n'
if inside 'echo evil > /jails/webapp/bin/server' 2>/dev/null; then
    echo "  -> inside write to frozen bin/: ok, EXPECTED refused"; failed=1
else
    echo "  -> inside write to frozen bin/: refused, as expected"
fi

step "verify: the sealed tree is exactly what was registered"
run "sealtool verify webapp" || failed=1
run "cat /jails/webapp/var/log/app.log"
echo
if [ "$failed" = 0 ]; then echo "demo: success"; else echo "demo: FAILURE"; fi
exit "$failed"
