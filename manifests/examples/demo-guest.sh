#!/bin/sh
# The demo's guest half (scripts/demo boots a kernel with the BPF LSM and runs this as root):
# register a jail, start its service inside while sealing it (`sealtool run --seal`, in the
# jail's own root, running only the jail's sealed code), show
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
# The capsule's service: started inside by `sealtool run --seal` in the capsule's own root
# (its sealed tree as /, running the tree's own busybox), it answers requests sent through
# two fifos outside the tree, handed to it as descriptors 3 and 4 (the way a real service
# answers the network): "log" appends to its log, "tamper" tries to overwrite its own frozen
# binary, "outside" tries to run a program that is not sealed.
SERVICE='
while :; do
    read -r req <&3 || exit 0
    case "$req" in
        log) echo "request served" >>/var/log/app.log 2>/dev/null && r=ok || r=refused ;;
        tamper) echo evil >/bin/server 2>/dev/null && r=ok || r=refused ;;
        outside) cp /bin/busybox /tmp/busybox && /tmp/busybox true 2>/dev/null && r=ok || r=refused ;;
        root) r=$(ls / | tr "\n" " ") ;;
        pid) r=$$ ;;
        *) exit 0 ;;
    esac
    echo "$r" >&4
done'
ask() { # REQUEST -> the service's answer (one line; none in 60 s: "no answer")
    echo "$1" >&5
    read -t 60 -r answer <&6 || answer="no answer"
    echo "$answer"
}

mkdir -p /jails && mount -t tmpfs tmpfs /jails
/examples/webapp.sh /jails/webapp
mkfifo /run/webapp.req /run/webapp.ans
exec 5<>/run/webapp.req 6<>/run/webapp.ans # never blocks, whether the service runs or not

step "register the jail (its logs are runtime state, left out of the manifest)"
run "sealtool register /jails/webapp --exclude 'var/log/**'" || failed=1
step "start its service inside, sealing at creation: its inside is the cgroup webapp, its root its own tree; bin/ is frozen even for the inside"
printf '$ %s\n' "sealtool run webapp --seal --cgroup /sys/fs/cgroup/webapp --frozen 'bin/**' -- /bin/sh -c \"\$SERVICE\" 3<>/run/webapp.req 4<>/run/webapp.ans &"
sealtool run webapp --seal --cgroup /sys/fs/cgroup/webapp --frozen 'bin/**' -- /bin/sh -c "$SERVICE" 3<>/run/webapp.req 4<>/run/webapp.ans &
pid=$(ask pid)
echo "  -> the service runs as pid $pid in $(cut -d: -f3 /proc/$pid/cgroup 2>/dev/null || echo '(hidden)'), its / holding: $(ask root)"
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
printf '$ (service, inside) echo "request served" >> /var/log/app.log\n'
got=$(ask log)
if [ "$got" = ok ]; then
    echo "  -> inside write to its log: ok, as expected"
else
    echo "  -> inside write to its log: $got, EXPECTED ok"; failed=1
fi
printf '$ (service, inside) echo evil > /bin/server\n'
got=$(ask tamper)
if [ "$got" = refused ]; then
    echo "  -> inside write to frozen bin/: refused, as expected"
else
    echo "  -> inside write to frozen bin/: $got, EXPECTED refused"; failed=1
fi
printf '$ (service, inside) cp /bin/busybox /tmp/busybox && /tmp/busybox true\n'
got=$(ask outside)
if [ "$got" = refused ]; then
    echo "  -> inside run of a program that is not sealed: refused, as expected"
else
    echo "  -> inside run of a program that is not sealed: $got, EXPECTED refused"; failed=1
fi
echo quit >&5

step "verify: the sealed tree is exactly what was registered"
run "sealtool verify webapp" || failed=1
run "cat /jails/webapp/var/log/app.log"
echo
if [ "$failed" = 0 ]; then echo "demo: success"; else echo "demo: FAILURE"; fi
exit "$failed"
