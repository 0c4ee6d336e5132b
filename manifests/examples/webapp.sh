#!/bin/sh
# Builds a small web-application jail at $1 (default /jails/webapp): binaries, configuration,
# a setuid helper, a symlink, a fifo and a hard link — the kinds of entry a capsule records —
# and the static busybox its service runs (the tree is the capsule's root).
set -eu
root=${1:-/jails/webapp}
rm -rf "$root"
mkdir -p "$root/bin" "$root/etc/app" "$root/var/log" "$root/run" "$root/proc" "$root/dev" "$root/tmp"
# What the service runs, sealed with it: a static busybox (its shell), the root that
# `sealtool run` gives the capsule holding nothing else.
cp /bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
printf '#!/bin/sh\necho "serving"\n' > "$root/bin/server"
chmod 0755 "$root/bin/server"
printf '#!/bin/sh\nid\n' > "$root/bin/helper"
chmod 4750 "$root/bin/helper"
printf 'listen = 8080\nworkers = 4\n' > "$root/etc/app/app.conf"
ln -s ../bin/server "$root/etc/app/entrypoint"
ln "$root/etc/app/app.conf" "$root/etc/app/app.conf.default"
mkfifo "$root/run/control"
echo "started" > "$root/var/log/app.log"
