#!/bin/sh
# The demo's guest half (scripts/demo boots a kernel with the BPF LSM and runs this as root):
# register a jail, start its service inside while sealing it (`sealtool run --seal`), show
# outside tampering refused (files, cgroup, signals) and the service's own write allowed, and
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
# The capsule's service: started inside by `sealtool run --seal`, it answers requests sent
# through a fifo outside the tree (the way a real service answers the network): "log"
# appends to its log, "tamper" tries to overwrite its own frozen binary.
SERVICE='
while :; do
    read -r req </run/webapp.req || exit 0
    case "$req" in
        log) echo "request served" >>/jails/webapp/var/log/app.log 2>/dev/null && r=ok || r=refused ;;
        tamper) echo evil >/jails/webapp/bin/server 2>/dev/null && r=ok || r=refused ;;
        pid) r=$$ ;;
        *) exit 0 ;;
    esac
    echo "$r" >/run/webapp.ans
done'
ask() { # REQUEST -> the service's answer
    echo "$1" >/run/webapp.req
    cat /run/webapp.ans
}

mkdir -p /jails && mount -t tmpfs tmpfs /jails
/examples/webapp.sh /jails/webapp
mkfifo /run/webapp.req /run/webapp.ans

step "register the jail (its logs are runtime state, left out of the manifest)"
run "sealtool register /jails/webapp --exclude 'var/log/**'" || failed=1
step "start its service inside, sealing at creation: its inside is the cgroup webapp; bin/ is frozen even for the inside"
printf '$ %s\n' "sealtool run webapp --seal --cgroup /sys/fs/cgroup/webapp --frozen 'bin/**' -- sh -c \"\$SERVICE\" &"
sealtool run webapp --seal --cgroup /sys/fs/cgroup/webapp --frozen 'bin/**' -- sh -c "$SERVICE" &
pid=$(ask pid)
echo "  -> the service runs as pid $pid in $(cut -d: -f3 /proc/$pid/cgroup 2>/dev/null || echo '(hidden)')"
run "sealtool status"

step "root outside the capsule tries to tamper"
expect refused "outside write to the config" "echo 'workers = 400' >> /jails/webapp/etc/app/app.conf"
expect refused "outside removal of the server" "rm -f /jails/webapp/bin/server"
expect refused "outside swap of the entrypoint symlink" "ln -sfn /bin/sh /jails/webapp/etc/app/entrypoint"
expect refused "outside setuid bit" "chmod u+s /jails/webapp/bin/server"
expect refused "outside joining the capsule's cgroup" "echo \$\$ > /sys/fs/cgroup/webapp/cgroup.procs"
expect refused "outside signal to the service (level 1)" "kill -STOP $pid"
expect refused "outside read of the service's environment" "cat /proc/$pid/environ"

step "the capsule's own processes work normally"
printf '$ (service, inside) echo "request served" >> /jails/webapp/var/log/app.log\n'
got=$(ask log)
if [ "$got" = ok ]; then
    echo "  -> inside write to its log: ok, as expected"
else
    echo "  -> inside write to its log: $got, EXPECTED ok"; failed=1
fi
printf '$ (service, inside) echo evil > /jails/webapp/bin/server\n'
got=$(ask tamper)
if [ "$got" = refused ]; then
    echo "  -> inside write to frozen bin/: refused, as expected"
else
    echo "  -> inside write to frozen bin/: $got, EXPECTED refused"; failed=1
fi
echo quit >/run/webapp.req

step "verify: the sealed tree is exactly what was registered"
run "sealtool verify webapp" || failed=1
run "cat /jails/webapp/var/log/app.log"
echo
if [ "$failed" = 0 ]; then echo "demo: success"; else echo "demo: FAILURE"; fi
exit "$failed"
