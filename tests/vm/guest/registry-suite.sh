#!/bin/sh
# registry-suite.sh STEP: seals hold across reboots whatever happens to the registry
# (tests/tests/vm_registry.rs runs the steps, one boot each, on one ext4 disk; busybox sh).
#
#   setup          on /disk: capsules app and b sealed (registry /disk/registry), level 2;
#                  then the index gets an undecodable record (root may, at every level).
#   check WAS NEXT a fresh kernel: `sealtool enforce --boot` as init would, which must
#                  enforce both trees, name what is wrong with the index (WAS, the last
#                  damage), exit non-zero, and `status` too; then the next damage NEXT: truncate (the index's files cut short), delete (the index
#                  gone), root (app's record naming another root), none.
#   crash          enforce --boot, register capsule c, seal it and cut the power (reboot -f -n,
#                  no sync) after a random delay while the seal runs: the run ends without
#                  a status, on purpose.
#   after-crash    enforce --boot: either c's seal is recorded (a seal file) and enforced,
#                  or it is not recorded; never recorded and not enforced.
#   disk2          the registry on a second disk of its own (/disk2), the tree on /disk: at
#                  level 2 the registry's block device is protected like the tree's; a
#                  capsule registered and sealed at level 2 has its registry directory frozen.
#   overlap-setup  app sealed inside cgroup app: sealing e in app's cgroup, one below or above
#                  it is refused; level 2; then root plants a seal of capsule 0evil claiming
#                  app's cgroup (made in a registry of its own, copied into the real one).
#   overlap-boot   enforce --boot: the two overlapping insides leave both capsules with none
#                  (which seal came first can't be told), said, exit non-zero.
#
# Output: `PASS:`/`FAIL:` lines, then `registry-suite: N passed, M failed`; exit 0 when M is
# 0 (`crash` ends before).
set -u
STEP=${1:-}
export CAPSULE_REGISTRY=/disk/registry
LOG=/tmp/registry-suite.log
SUITE=registry-suite
. /checks.sh
grep -q ' /disk ext4 ' /proc/mounts || { bad "setup: /disk is not mounted (run with --disk)"; finish; }

# Both trees refuse outside writes; an unrelated file on the same disk does not.
enforced_checks() { # LABEL
    for t in app b; do
        expect "$1: outside write to capsule $t" refused "$(res sh -c "echo x >> /disk/jails/$t/f")"
        expect "$1: outside removal in capsule $t" refused "$(res rm -f /disk/jails/$t/f)"
    done
    expect "$1: write to an unrelated file on the same disk (control)" allowed "$(res sh -c 'echo x >> /disk/unrelated')"
    expect "$1: the level is 2" 2 "$(sealtool level 2>>"$LOG")"
}

damage() { # KIND
    case "$1" in
        junk) index-tamper junk /disk/registry zz-junk >>"$LOG" 2>&1 ;;
        truncate) for f in /disk/registry/db/*; do [ -f "$f" ] && truncate -s 7 "$f"; done ;;
        delete) rm -rf /disk/registry/db ;;
        root)
            # A fresh index first (the last boot's was deleted), then app's record lies.
            sealtool registry rebuild >>"$LOG" 2>&1
            mkdir -p /disk/decoy && echo x >/disk/decoy/f
            index-tamper root /disk/registry app /disk/decoy >>"$LOG" 2>&1
            ;;
        held | none) ;;
    esac
    sync
    echo "damage $1 done" >>"$LOG"
}

case "$STEP" in
    setup)
        rm -rf /disk/jails /disk/registry /disk/decoy
        mkdir -p /disk/jails/app /disk/jails/b
        echo app >/disk/jails/app/f
        echo b >/disk/jails/b/f
        for t in app b; do
            out=$(sealtool register /disk/jails/$t --name $t --seal 2>&1)
            echo "$out" >>"$LOG"
            contains "setup: seal $t" "$out" "enforced by fsguard"
        done
        out=$(sealtool level 2 2>&1)
        echo "$out" >>"$LOG"
        contains "setup: level 2" "$out" "registry /disk/registry locked"
        enforced_checks "setup"
        damage junk
        expect "setup: the index holds an undecodable record" "exit 2" "$(sealtool list >>"$LOG" 2>&1; echo "exit $?")"
        ;;
    check)
        was=${2:-}
        next=${3:-none}
        expect "check: nothing is enforced before enforce --boot" absent \
            "$([ -e /sys/fs/bpf/fsguard/link_fsguard_file_open ] && echo present || echo absent)"
        syslogd -n -O /tmp/messages >>"$LOG" 2>&1 &
        if [ "$was" = held ]; then
            # Another process keeps the index open the whole time: enforcement must not wait
            # for it (sled waits for its lock, or a crafted database blocks it for good).
            index-tamper hold /disk/registry >>"$LOG" 2>&1 &
            holder=$!
        fi
        sleep 0.3
        out=$(sealtool enforce --boot 2>&1)
        rc=$?
        echo "$out" >>"$LOG"
        contains "check: enforce --boot enforces both trees" "$out" "2 sealed capsules enforced"
        expect "check: enforce --boot says something is wrong in its exit status" "exit 2" "exit $rc"
        case "$was" in
            junk) why="record \"zz-junk\": record version 255 is not supported" ;;
            truncate) why="the registry index can't be used" ;;
            delete) why="is not in the registry index as sealed" ;;
            root) why="the registry index puts app at /disk/decoy, its sealed manifest at /disk/jails/app" ;;
            held) why="the registry index can't be used" ;;
            *) why="registry index" ;;
        esac
        contains "check ($was): enforce --boot names what is wrong with the index" "$out" "$why"
        sleep 0.3
        contains "check ($was): ... in syslog too" "$(cat /tmp/messages 2>/dev/null)" "$why"
        # ... and in the audit log, wherever the database holding it still opens.
        if [ "$was" = held ]; then
            # Neither waits on the index either: the level and the seal files are enough.
            expect "check (held): level 2 asked again while the index is held" "exit 0" \
                "$(sealtool level 2 >>"$LOG" 2>&1; echo "exit $?")"
            st=$(sealtool status 2>&1; echo "exit $?")
            echo "$st" >>"$LOG"
            contains "check (held): status answers, naming the index" "$st" "(the index)"
            contains "check (held): ... and lists app as enforced" "$st" "enforced"
            kill "$holder"
        fi
        if [ "$was" != truncate ] && [ "$was" != held ]; then
            contains "check ($was): ... and in the audit log" "$(sealtool audit 2>&1)" "$why"
            expect "check ($was): the audit chain holds with it" "exit 0" "$(sealtool audit --check >>"$LOG" 2>&1; echo "exit $?")"
        fi
        enforced_checks "check"
        st=$(sealtool status 2>&1)
        echo "$st" >>"$LOG"
        expect "check: status lists app as enforced" 1 "$(echo "$st" | grep -c '^capsule *app *enforced')"
        expect "check: status lists b as enforced" 1 "$(echo "$st" | grep -c '^capsule *b *enforced')"
        expect "check: status lists app at its sealed root, not where the index says" 1 \
            "$(echo "$st" | grep -c '^capsule *app .* /disk/jails/app$')"
        n=$(echo "$st" | grep -c '^damaged ')
        expect "check ($was): status names the damage ($n lines)" yes "$([ "$n" -ge 1 ] && echo yes || echo no)"
        damage "$next"
        ;;
    crash)
        out=$(sealtool enforce --boot 2>&1)
        echo "$out" >>"$LOG"
        mkdir -p /disk/jails/c && echo c >/disk/jails/c/f
        sealtool register /disk/jails/c --name c >>"$LOG" 2>&1
        sync
        # Up to 1.5 s into the seal (which takes about one second under the emulator).
        delay=$(($(od -An -N2 -tu2 /dev/urandom) % 1500))
        echo "crash: the power goes $delay ms into sealing c"
        sleep 0.5
        sealtool seal c >>"$LOG" 2>&1 &
        usleep $((delay * 1000))
        # reboot(2) at once, no sync (busybox: -f, not through init; -n, no sync): what is in
        # the page cache is lost, as in a power cut. (/proc/sysrq-trigger's `b` would do the
        # same, but the guard refuses it from level 1: its other keys signal every process.)
        reboot -f -n
        sleep 10
        bad "crash: still running after the power was cut"
        ;;
    after-crash)
        out=$(sealtool enforce --boot 2>&1)
        echo "$out" >>"$LOG"
        if ls /disk/registry/manifests/c/*.seal >/dev/null 2>&1; then
            ok "after-crash: c's seal was recorded (the power went after its seal file)"
            expect "after-crash: ... and c is enforced" refused "$(res sh -c 'echo x >> /disk/jails/c/f')"
            expect "after-crash: ... and status says so" 1 "$(sealtool status 2>>"$LOG" | grep -c '^capsule *c *enforced')"
        else
            ok "after-crash: c's seal was not recorded (the power went before its seal file)"
            expect "after-crash: ... and nothing lists c as sealed" 0 "$(sealtool status 2>>"$LOG" | grep -c '^capsule *c ')"
            expect "after-crash: ... and c can still be sealed" "exit 0" "$(sealtool seal c >>"$LOG" 2>&1; echo "exit $?")"
        fi
        expect "after-crash: app stays enforced" refused "$(res sh -c 'echo x >> /disk/jails/app/f')"
        ;;
    disk2)
        grep -q ' /disk2 ext4 ' /proc/mounts || { bad "disk2: /disk2 is not mounted (run with --disk2)"; finish; }
        export CAPSULE_REGISTRY=/disk2/registry
        TREE_DEV=$(awk '$2 == "/disk" { print $1 }' /proc/mounts)
        REG_DEV=$(awk '$2 == "/disk2" { print $1 }' /proc/mounts)
        echo "tree on $TREE_DEV, registry on $REG_DEV" >>"$LOG"
        rm -rf /disk/jails /disk2/registry
        mkdir -p /disk/jails/app && echo app >/disk/jails/app/f
        out=$(sealtool register /disk/jails/app --name app --seal 2>&1)
        echo "$out" >>"$LOG"
        contains "disk2: seal app (registry on a disk of its own)" "$out" "enforced by fsguard"
        expect "disk2: level 1: open the registry's device for writing (control: allowed below 2)" allowed "$(res sh -c "exec 3>>$REG_DEV")"
        out=$(sealtool level 2 2>&1)
        echo "$out" >>"$LOG"
        contains "disk2: level 2 locks the registry" "$out" "registry /disk2/registry locked"
        expect "disk2: level 2: open the registry's device for writing" refused "$(res sh -c "exec 3>>$REG_DEV")"
        expect "disk2: level 2: SG_IO-free query of it (BLKGETSIZE64; control)" allowed "$(bpf-probe blk-ioctl $REG_DEV 80081272 2>>"$LOG")"
        expect "disk2: level 2: BLKZEROOUT on it" refused "$(bpf-probe blk-ioctl $REG_DEV 127f 2>>"$LOG")"
        expect "disk2: level 2: open the tree's device for writing" refused "$(res sh -c "exec 3>>$TREE_DEV")"
        expect "disk2: level 2: read the registry's device (control)" allowed "$(res sh -c "exec 3<$REG_DEV")"
        for f in /disk2/registry/manifests/app/*.seal /disk2/registry/level; do
            expect "disk2: level 2: rewrite ${f##*/}" refused "$(res sh -c "echo x >> $f")"
        done
        # A capsule registered and sealed at level 2: its directory in the registry takes
        # new files until its seal is recorded, then none (a planted second seal would name
        # another inside at the next boot).
        mkdir -p /disk/jails/d && echo d >/disk/jails/d/f
        expect "disk2: level 2: register d" "exit 0" "$(sealtool register /disk/jails/d --name d >>"$LOG" 2>&1; echo "exit $?")"
        expect "disk2: level 2: d's directory in the registry takes a new file before its seal (control)" allowed \
            "$(res sh -c 'echo x > /disk2/registry/manifests/d/.before')"
        expect "disk2: level 2: seal d" "exit 0" "$(sealtool seal d >>"$LOG" 2>&1; echo "exit $?")"
        expect "disk2: level 2: d's directory takes no file once sealed" refused \
            "$(res sh -c 'echo x > /disk2/registry/manifests/d/.after')"
        expect "disk2: level 2: d is enforced" refused "$(res sh -c 'echo x >> /disk/jails/d/f')"
        # Seals whose inside can't be given (sealtool refuses to write them; root plants
        # them where manifests/ takes new capsules): the tree is protected all the same,
        # with nobody inside. rootcg: the kernel refuses the cgroup root; nocg: its cgroup
        # is not in the cgroup2 hierarchy at all.
        for t in rootcg nocg; do
            mkdir -p /disk/jails/$t && echo $t >/disk/jails/$t/f
            sealtool register /disk/jails/$t --name $t >>"$LOG" 2>&1
        done
        expect "disk2: sealing a capsule inside the cgroup root is refused" "exit 2" \
            "$(sealtool seal rootcg --cgroup /sys/fs/cgroup >>"$LOG" 2>&1; echo "exit $?")"
        expect "disk2: an outside write to rootcg's tree, unsealed (control)" allowed "$(res sh -c 'echo x >> /disk/jails/rootcg/f')"
        index-tamper seal /disk2/registry rootcg /sys/fs/cgroup >>"$LOG" 2>&1
        index-tamper seal /disk2/registry nocg /tmp/nocg >>"$LOG" 2>&1
        out=$(sealtool enforce 2>&1; echo "exit $?")
        echo "$out" >>"$LOG"
        contains "disk2: enforce says it failed" "$out" "exit 2"
        expect "disk2: ... rootcg and nocg protected with no inside" 2 "$(echo "$out" | grep -c 'is NOT enforced: .*protected with NO inside')"
        for t in rootcg nocg; do
            expect "disk2: an outside write to $t's tree" refused "$(res sh -c "echo x >> /disk/jails/$t/f")"
        done
        # A registry that is not there (not mounted, renamed) is an error naming it, never
        # "nothing sealed", and enforce does not create one.
        out=$(CAPSULE_REGISTRY=/disk2/gone sealtool enforce 2>&1; echo "exit $?")
        echo "$out" >>"$LOG"
        contains "disk2: enforce with the registry missing fails" "$out" "exit 2"
        contains "disk2: ... naming it" "$out" "no registry at /disk2/gone"
        expect "disk2: ... and creates nothing there" absent "$([ -e /disk2/gone ] && echo present || echo absent)"
        ;;
    overlap-setup)
        . /inside.sh
        rm -rf /disk/jails /disk/registry /tmp/forge /disk/sysbase
        sysbase_setup
        mkdir -p /disk/jails/app /disk/jails/e /disk/jails/evil /disk/jails/t /sys/fs/cgroup/app
        for t in app e evil t; do echo $t >/disk/jails/$t/f; done
        inside_start /sys/fs/cgroup/app
        for t in app e t; do sealtool register /disk/jails/$t --name $t >>"$LOG" 2>&1; done
        expect "overlap-setup: seal t (no inside)" "exit 0" "$(sealtool seal t >>"$LOG" 2>&1; echo "exit $?")"
        expect "overlap-setup: seal app, inside its cgroup" "exit 0" \
            "$(sealtool seal app --cgroup /sys/fs/cgroup/app >>"$LOG" 2>&1; echo "exit $?")"
        expect "overlap-setup: a write from inside app (control)" allowed "$(res inside sh -c 'echo x >> /disk/jails/app/f' </dev/null)"
        for cg in /sys/fs/cgroup/app /sys/fs/cgroup/app/sub /sys/fs/cgroup; do
            expect "overlap-setup: sealing e inside $cg (app's, or holding or in it) is refused" "exit 2" \
                "$(sealtool seal e --cgroup $cg >>"$LOG" 2>&1; echo "exit $?")"
        done
        expect "overlap-setup: ... and nothing of it recorded" 0 "$(ls /disk/registry/manifests/e/ | grep -c 'seal$')"
        expect "overlap-setup: sealing e inside a cgroup of its own (control)" "exit 0" \
            "$(sealtool seal e --cgroup /sys/fs/cgroup/e >>"$LOG" 2>&1; echo "exit $?")"
        contains "overlap-setup: level 2" "$(sealtool level 2 2>&1)" "registry /disk/registry locked"
        # Root at level 2 plants a capsule claiming app's cgroup: its files made in a registry
        # of its own, then added to the real one (its manifests/ takes new capsules).
        CAPSULE_REGISTRY=/tmp/forge sealtool register /disk/jails/evil --name 0evil >>"$LOG" 2>&1
        CAPSULE_REGISTRY=/tmp/forge sealtool seal 0evil --cgroup /sys/fs/cgroup/app >>"$LOG" 2>&1
        expect "overlap-setup: a seal claiming app's cgroup planted at level 2 (the attack's start)" allowed \
            "$(res sh -c 'mkdir /disk/registry/manifests/0evil && cp /tmp/forge/manifests/0evil/* /disk/registry/manifests/0evil/')"
        # ... one claiming t's tree, with an inside of its own (it would come first by name),
        CAPSULE_REGISTRY=/tmp/forge sealtool register /disk/jails/t --name 0twin >>"$LOG" 2>&1
        CAPSULE_REGISTRY=/tmp/forge sealtool seal 0twin --cgroup /sys/fs/cgroup/twin >>"$LOG" 2>&1
        expect "overlap-setup: a seal claiming t's tree planted" allowed \
            "$(res sh -c 'mkdir /disk/registry/manifests/0twin && cp /tmp/forge/manifests/0twin/* /disk/registry/manifests/0twin/')"
        # ... a FIFO as a seal file (a reader that opened it would wait for good), and a
        # capsule directory that is a symlink to a sealed tree (protecting the registry
        # through it would ask for app's root inode and be refused).
        expect "overlap-setup: a FIFO planted as a seal file" allowed \
            "$(res sh -c "mkdir /disk/registry/manifests/00hang && mkfifo /disk/registry/manifests/00hang/$(printf 'ab%.0s' $(seq 32)).seal")"
        expect "overlap-setup: a symlink planted as a capsule directory" allowed "$(res ln -s /disk/jails/app /disk/registry/manifests/zz)"
        # ... and a capsule whose tree will hold a file that takes for ever to read (made 1
        # TiB, sparse, at the next boot before enforcement).
        mkdir -p /disk/jails/huge && echo h >/disk/jails/huge/f
        CAPSULE_REGISTRY=/tmp/forge sealtool register /disk/jails/huge --name huge >>"$LOG" 2>&1
        CAPSULE_REGISTRY=/tmp/forge sealtool seal huge >>"$LOG" 2>&1
        expect "overlap-setup: a capsule with a tree of its own planted" allowed \
            "$(res sh -c 'mkdir /disk/registry/manifests/huge && cp /tmp/forge/manifests/huge/* /disk/registry/manifests/huge/')"
        sync
        ;;
    overlap-boot)
        . /inside.sh
        sysbase_setup
        # An agent in the cgroup the planted 0twin names, then one in app's (the default).
        mkdir -p /sys/fs/cgroup/app /sys/fs/cgroup/twin
        INSIDE_DIR=/tmp/inside-twin
        inside_start /sys/fs/cgroup/twin
        INSIDE_DIR=/tmp/inside-agent
        inside_start /sys/fs/cgroup/app
        # Drift is checked after enforcement, for a bounded time (here 20 s): the huge file
        # must not hold enforcement up.
        truncate -s 1099511627776 /disk/jails/huge/f || bad "overlap-boot: cannot make the huge file"
        out=$(CAPSULE_DRIFT_WAIT_SECS=20 sealtool enforce --boot 2>&1)
        rc=$?
        echo "$out" >>"$LOG"
        expect "overlap-boot: enforce --boot says something is wrong" "exit 2" "exit $rc"
        contains "overlap-boot: ... the drift check of the huge tree ran out of time, after enforcement" "$out" "could not all be checked for drift"
        expect "overlap-boot: an outside write to the huge capsule's tree" refused "$(res sh -c 'echo x > /disk/jails/huge/g')"
        expect "overlap-boot: ... and names the overlap" 1 "$(echo "$out" | grep 'the insides of capsules' | grep 0evil | grep -c 'app (cgroup /sys/fs/cgroup/app)')"
        expect "overlap-boot: from app's cgroup, a write to the planted capsule's tree" refused "$(res inside sh -c 'echo x >> /disk/jails/evil/f' </dev/null)"
        expect "overlap-boot: from app's cgroup, a write to app's tree (no inside: fail closed)" refused "$(res inside sh -c 'echo x >> /disk/jails/app/f' </dev/null)"
        expect "overlap-boot: an outside write to app's tree" refused "$(res sh -c 'echo x >> /disk/jails/app/f')"
        expect "overlap-boot: an outside write to e's tree (its inside is its own)" refused "$(res sh -c 'echo x >> /disk/jails/e/f')"
        expect "overlap-boot: status lists e as enforced" 1 "$(sealtool status 2>>"$LOG" | grep -c '^capsule *e *enforced')"
        contains "overlap-boot: enforce names the trees that share inodes" "$out" "the trees of capsules 0twin and t share inodes"
        INSIDE_DIR=/tmp/inside-twin
        expect "overlap-boot: from the planted 0twin's cgroup, a write to t's tree" refused "$(res inside sh -c 'echo x >> /disk/jails/t/f' </dev/null)"
        expect "overlap-boot: from the planted 0twin's cgroup, a write elsewhere (control)" allowed "$(res inside sh -c 'echo x >> /disk/unrelated' </dev/null)"
        INSIDE_DIR=/tmp/inside-agent
        expect "overlap-boot: an outside write to t's tree" refused "$(res sh -c 'echo x >> /disk/jails/t/f')"
        contains "overlap-boot: the FIFO seal file is named, not waited on" "$out" "00hang"
        contains "overlap-boot: the registry is locked despite the planted symlink" "$out" "registry /disk/registry locked"
        expect "overlap-boot: renaming the registry away" refused "$(res mv /disk/registry /disk/registry.away)"
        ;;
    *)
        echo "usage: registry-suite.sh setup|check WAS NEXT|crash|after-crash|disk2|overlap-setup|overlap-boot" >&2
        exit 2
        ;;
esac
finish
