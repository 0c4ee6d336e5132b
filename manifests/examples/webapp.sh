#!/bin/sh
# Builds a small web-application jail at $1 (default /jails/webapp): binaries, configuration,
# a setuid helper, a symlink, a fifo and a hard link — the kinds of entry a capsule records.
set -eu
root=${1:-/jails/webapp}
rm -rf "$root"
mkdir -p "$root/bin" "$root/etc/app" "$root/var/log" "$root/run"
printf '#!/bin/sh\necho "serving"\n' > "$root/bin/server"
chmod 0755 "$root/bin/server"
printf '#!/bin/sh\nid\n' > "$root/bin/helper"
chmod 4750 "$root/bin/helper"
printf 'listen = 8080\nworkers = 4\n' > "$root/etc/app/app.conf"
ln -s ../bin/server "$root/etc/app/entrypoint"
ln "$root/etc/app/app.conf" "$root/etc/app/app.conf.default"
mkfifo "$root/run/control"
echo "started" > "$root/var/log/app.log"
