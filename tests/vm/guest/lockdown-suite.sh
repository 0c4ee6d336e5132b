#!/bin/sh
# lockdown-suite.sh BOOT: the "lock it down" checks (level 1 guard self-protection, level 2)
# across two boots of the test guest on two ext4 disks (tests/vm/run --disk --disk2; busybox
# sh; /disk2 holds nothing sealed but a filesystem image with an external journal).
#
#   boot1  on /disk: register and seal a capsule (its registry on /disk too); at level 1 the
#          guard can't be opened, detached, unpinned or lowered through bpf(2); then
#          `sealtool level 2` and its refusals: mounts over the tree and above it, moving
#          and unmounting them, renaming a directory above the root, writing the block
#          device, rewriting the registry; lockdown raised to integrity; a new capsule can
#          still be added.
#   boot2  a fresh kernel: `sealtool enforce --boot` the way init would, then the same
#          refusals, every outside write refused, verify clean.
#
# Each refusal has a control that must succeed: the same operation at level 1 (for the
# level-2 rules) or on an unrelated path. Output: `PASS:`/`FAIL:` lines, then
# `lockdown-suite: N passed, M failed`; exit 0 when M is 0.
set -u
BOOT=${1:-}
case "$BOOT" in boot1 | boot2) ;; *) echo "usage: lockdown-suite.sh boot1|boot2" >&2; exit 2 ;; esac
export CAPSULE_REGISTRY=/disk/registry
LOG=/tmp/lockdown-suite.log
PINS=/sys/fs/bpf/fsguard
SUITE=lockdown-suite
. /checks.sh
. /inside.sh
grep -q ' /disk ext4 ' /proc/mounts || { bad "setup: /disk is not mounted (run with --disk)"; finish; }
# Two disks: the sealed one (vmdisk, /disk) and one that holds nothing sealed (vmdisk2, /disk2).
DEV=$(findfs LABEL=vmdisk 2>/dev/null)
[ -b "$DEV" ] || { bad "setup: no disk labelled vmdisk (run with --disk and --disk2)"; finish; }

# Refusals that hold from level 1 on: the guard itself.
guard_checks() { # LABEL
    for m in config inodes capsules cgroup_capsules members ancestors devices dir_cache dir_cache_epoch entry_filesystems fs_marks; do
        expect "$1: open the guard's map $m (bpf obj_get)" refused "$(bpf-probe obj-get $PINS/$m ro 2>>"$LOG")"
    done
    expect "$1: open the guard's statistics read-only (control)" allowed "$(bpf-probe obj-get $PINS/stats ro 2>>"$LOG")"
    out=$(bpf-probe open-all-maps 2>>"$LOG")
    refused=$(echo "$out" | sed -n 's/.*refused \([0-9]*\).*/\1/p')
    [ "${refused:-0}" -ge 13 ] && ok "$1: every map id of the guard refuses a descriptor ($out)" ||
        bad "$1: every map id of the guard refuses a descriptor ($out)"
    r=$(bpf-probe link-detach $PINS/link_fsguard_file_open 2>>"$LOG")
    [ "$r" != allowed ] && ok "$1: detaching a guard program's link fails ($r)" || bad "$1: detaching a guard program's link fails ($r)"
    before=$(sealtool level 2>>"$LOG")
    out=$(bpf-probe request-level $PINS 0 2>>"$LOG")
    expect "$1: a raw request to lower the level is rejected (level stays $before)" "level $before" "$(echo "$out" | cut -d' ' -f1,2)"
    # Requests that would take protection away are rejected (the count of rejections grows).
    slot=$(sealtool status 2>>"$LOG" | sed -n 's/^capsule *app .*(slot \([0-9]*\)).*/\1/p')
    r0=$(bpf-probe request-level $PINS "$before" 2>>"$LOG" | cut -d' ' -f4)
    r1=$(bpf-probe request-cgroup $PINS "${slot:-0}" 1 2>>"$LOG" | cut -d' ' -f4)
    expect "$1: a raw request making the root cgroup the inside of capsule app is rejected" "$((r0 + 1))" "$r1"
    r2=$(bpf-probe request-append-only $PINS "${slot:-0}" /disk/jails/app 2>>"$LOG" | cut -d' ' -f4)
    expect "$1: a raw request making the sealed root append-only is rejected" "$((r1 + 1))" "$r2"
    expect "$1: create in the sealed root after that request" refused "$(res touch /disk/jails/app/appended)"
    expect "$1: chattr of a sealed file from a 32-bit caller (FS_IOC32_SETFLAGS, compat)" refused "$(bpf-probe compat-ioctl /disk/jails/app/etc/app.conf 40046602 2>>"$LOG")"
    : >/tmp/compat-control
    expect "$1: the same on a file of no capsule (control)" allowed "$(bpf-probe compat-ioctl /tmp/compat-control 40046602 2>>"$LOG")"
    expect "$1: read /proc/kcore (all memory, capsule processes' included)" refused "$(res head -c 1 /proc/kcore)"
    expect "$1: read /proc/version (control)" allowed "$(res head -c 1 /proc/version)"
    probe_check "$1: make a terminal type (TIOCSTI)" refused blk-ioctl /dev/ptmx 5412
    probe_check "$1: signal a terminal's foreground processes (TIOCSIG)" refused blk-ioctl /dev/ptmx 40045436
    probe_check "$1: paste into a virtual console (TIOCLINUX)" refused blk-ioctl /dev/ptmx 541c
    probe_check "$1: a terminal's window size (TIOCGWINSZ; control)" "the kernel's" blk-ioctl /dev/ptmx 5413
    expect "$1: remove a link pin" refused "$(res rm $PINS/link_fsguard_file_open)"
    expect "$1: unmount the bpffs holding the pins" refused "$(res umount /sys/fs/bpf)"
    expect "$1: lazily unmount /sys, the bpffs below it included" refused "$(res umount -l /sys)"
    [ -e $PINS/link_fsguard_file_open ] && ok "$1: the pins are still there" || bad "$1: the pins are still there"
    expect "$1: the guard still enforces (outside write)" refused "$(res sh -c 'echo x >> /disk/jails/app/etc/app.conf')"
}

# Refusals of level 2. At level 1 (WANT=allowed) they are the controls: each allowed step is
# undone at once (unmounted, renamed back), so the tree stays as it was.
mount_check() { # LABEL WANT TARGET MOUNT-ARGS...
    label=$1 want=$2 target=$3
    shift 3
    got=$(res mount "$@" "$target")
    [ "$got" = allowed ] && umount "$target" 2>>"$LOG"
    expect "$label" "$want" "$got"
}
# `sealtool level 2` at level 1, refused because of WHILE; its message names WHAT (NEEDLE).
refused_raise() { # WHILE WHAT NEEDLE
    out=$(sealtool level 2 2>&1)
    rc=$?
    echo "$out" >>"$LOG"
    expect "boot1: sealtool level 2 refused while $1" "exit 2" "exit $rc"
    contains "boot1: the refusal names $2" "$out" "$3"
    expect "boot1: the raise refused while $1 left the level at 1" 1 "$(sealtool level 2>>"$LOG")"
}
locked_checks() { # LABEL WANT(refused|allowed)
    w=$2
    mount_check "$1: mount over the sealed tree" "$w" /disk/jails/app -t tmpfs t
    mount_check "$1: mount over a directory inside the tree" "$w" /disk/jails/app/etc -t tmpfs t
    mount_check "$1: bind-mount over the tree's root" "$w" /disk/jails/app --bind /tmp
    mount_check "$1: mount over a directory above the root" "$w" /disk/jails -t tmpfs t
    expect "$1: rename a directory above the root" "$w" "$(res mv /disk/jails /disk/jails.moved)"
    [ -d /disk/jails.moved ] && mv /disk/jails.moved /disk/jails
    mkdir -p /tmp/m1 /tmp/m2 && mount -t tmpfs t /tmp/m1
    got=$(res mount --move /tmp/m1 /tmp/m2)
    umount /tmp/m2 /tmp/m1 2>/dev/null
    expect "$1: mount(2) --move anywhere (the hook can't tell what moves)" "$w" "$got"
    mount_check "$1: mount over an unrelated directory (control)" allowed /tmp/m1 -t tmpfs t
    expect "$1: open the tree's block device for writing" "$w" "$(res sh -c "exec 3>>$DEV")"
    expect "$1: open the tree's block device for reading (control)" allowed "$(res sh -c "exec 3<$DEV")"
    expect "$1: load a kprobe BPF program" "$w" "$(bpf-probe load-kprobe 2>>"$LOG")"
    # Non-tracing programs get the helpers that read memory once their loader has CAP_PERFMON,
    # and a cgroup device program runs as whichever process opens a device.
    expect "$1: load a socket filter that calls bpf_probe_read_user" "$w" "$(bpf-probe load-reader socket 2>>"$LOG")"
    expect "$1: load a cgroup device program that calls bpf_probe_read_user" "$w" "$(bpf-probe load-reader cgroup-device 2>>"$LOG")"
    expect "$1: load a socket filter that calls bpf_ktime_get_ns (control)" allowed "$(bpf-probe load-filter 2>>"$LOG")"
    # No listed helper: a load through a BTF pointer, which only the guard sees.
    expect "$1: load a cgroup skb program that reads a tcp_sock through a BTF pointer" "$w" "$(bpf-probe load-btf-reader 2>>"$LOG")"
    expect "$1: open a perf event" "$w" "$(bpf-probe perf-open 2>>"$LOG")"
    # tracefs probes record any process's registers and user memory, no BPF needed.
    mkdir -p /tmp/tr && { grep -q ' /tmp/tr tracefs ' /proc/mounts || mount -t tracefs nodev /tmp/tr 2>>"$LOG"; }
    got=$(res sh -c 'echo "p:capsule_probe ksys_write" >> /tmp/tr/kprobe_events')
    [ "$got" = allowed ] && echo "-:capsule_probe" >>/tmp/tr/kprobe_events 2>>"$LOG"
    expect "$1: define a kprobe event through tracefs" "$w" "$got"
    expect "$1: read tracefs's kprobe events (control)" allowed "$(res cat /tmp/tr/kprobe_events)"
    # Static events and tracers record what every process does (names, pids, files).
    got=$(res sh -c 'echo sched:sched_process_exec > /tmp/tr/set_event')
    [ "$got" = allowed ] && echo >/tmp/tr/set_event 2>>"$LOG"
    expect "$1: enable a trace event through tracefs (set_event)" "$w" "$got"
    got=$(res sh -c 'echo 1 > /tmp/tr/events/sched/sched_process_exec/enable')
    [ "$got" = allowed ] && echo 0 >/tmp/tr/events/sched/sched_process_exec/enable 2>>"$LOG"
    expect "$1: enable a trace event through its enable file" "$w" "$got"
    got=$(res sh -c 'echo blk > /tmp/tr/current_tracer')
    [ "$got" = allowed ] && echo nop >/tmp/tr/current_tracer 2>>"$LOG"
    expect "$1: set a tracer (current_tracer)" "$w" "$got"
    got=$(res sh -c 'echo do_sys_openat2:stacktrace >> /tmp/tr/set_ftrace_filter')
    [ "$got" = allowed ] && echo '!do_sys_openat2:stacktrace' >>/tmp/tr/set_ftrace_filter 2>>"$LOG"
    expect "$1: set a function probe command (set_ftrace_filter)" "$w" "$got"
    expect "$1: write tracefs's trace_marker (control)" allowed "$(res sh -c 'echo capsule > /tmp/tr/trace_marker')"
    # A frozen filesystem holds every writer there until thawed (thawed at once if allowed).
    got=$(bpf-probe blk-ioctl /disk/jails c0045877 2>>"$LOG")
    [ "$got" = allowed ] && bpf-probe blk-ioctl /disk/jails c0045878 >>"$LOG" 2>&1 # FITHAW
    expect "$1: freeze the sealed tree's filesystem (FIFREEZE)" refused "$got"
    mkdir -p /tmp/fz && { grep -q ' /tmp/fz ' /proc/mounts || mount -t tmpfs t /tmp/fz; }
    expect "$1: freeze a filesystem holding nothing sealed (control: tmpfs can't be frozen)" "error: EOPNOTSUPP" "$(bpf-probe blk-ioctl /tmp/fz c0045877 2>>"$LOG")"
    # An AppArmor profile in complain or audit mode logs what the processes it confines do.
    mkdir -p /sys/kernel/security && { grep -q ' /sys/kernel/security ' /proc/mounts || mount -t securityfs none /sys/kernel/security 2>>"$LOG"; }
    got=$(proc-probe write-file /sys/kernel/security/apparmor/.replace x 2>>"$LOG")
    [ "$got" = refused ] && v=refused || v="not refused"
    expect "$1: replace an AppArmor profile (a garbage one: the kernel's answer below 2, $got)" "$([ "$w" = refused ] && echo refused || echo "not refused")" "$v"
    expect "$1: read AppArmor's profiles (control)" allowed "$(proc-probe read-file /sys/kernel/security/apparmor/profiles 2>>"$LOG")"
    # An audit rule records the system calls of the processes it matches, arguments included.
    got=$(proc-probe audit-rule add 2>>"$LOG")
    [ "$got" = allowed ] && proc-probe audit-rule del >>"$LOG" 2>&1
    expect "$1: add an audit rule (auditctl -a always,exit -S getppid)" "$w" "$got"
    expect "$1: delete an audit rule (control: not refused; there is none)" "error: ENOENT" "$(proc-probe audit-rule del 2>>"$LOG")"
    r=$(bpf-probe sg-io $DEV 2>>"$LOG")
    [ "$w" = refused ] && want_sg=refused || want_sg="not refused"
    [ "$r" = refused ] && got_sg=refused || got_sg="not refused"
    expect "$1: SG_IO on a read-only descriptor of the tree's block device ($r)" "$want_sg" "$got_sg"
    # pivot_root: in the initial namespace only where it is refused (allowed, it would move
    # the whole guest's root); in a private namespace it is not the guard's business.
    mkdir -p /tmp/nr && { grep -q ' /tmp/nr ' /proc/mounts || mount -t tmpfs t /tmp/nr; } && mkdir -p /tmp/nr/old
    if [ "$w" = refused ]; then
        out=$(pivot_root /tmp/nr /tmp/nr/old 2>&1)
        case "$out" in *"not permitted"*) got=refused ;; *) got=allowed ;; esac
        expect "$1: pivot_root in the initial mount namespace ($out)" "$w" "$got"
    fi
    out=$(unshare -m sh -c 'pivot_root /tmp/nr /tmp/nr/old' 2>&1)
    case "$out" in *"not permitted"*) got=refused ;; *) got=allowed ;; esac
    expect "$1: pivot_root in a private mount namespace (control: $out)" allowed "$got"
    [ "$w" = refused ] || return 0
    if [ -n "${HELD_FD:-}" ]; then
        expect "$1: write through a block-device descriptor opened before level 2" refused "$(res sh -c 'printf x >&4')"
    fi
    # The registry (level 2 only: at level 1 these would really happen).
    expect "$1: unmount the filesystem holding the tree" refused "$(res umount /disk)"
    for f in /disk/registry/manifests/app/*.seal /disk/registry/manifests/app/*.manifest /disk/registry/level; do
        [ -f "$f" ] || { bad "$1: registry file $f missing"; continue; }
        n=${f##*/}
        expect "$1: rewrite the registry's $n" refused "$(res sh -c "echo x >> $f")"
        expect "$1: remove the registry's $n" refused "$(res rm -f "$f")"
        expect "$1: replace the registry's $n by a rename" refused "$(res sh -c "echo x > /disk/registry/manifests/app/.fake && mv /disk/registry/manifests/app/.fake $f")"
        rm -f /disk/registry/manifests/app/.fake
    done
    expect "$1: remove the registry's capsule directory" refused "$(res rm -rf /disk/registry/manifests/app)"
    expect "$1: rename the registry directory" refused "$(res mv /disk/registry /disk/registry.moved)"
    [ -d /disk/registry.moved ] && mv /disk/registry.moved /disk/registry
    expect "$1: write the registry's lock file (not protected; control)" allowed "$(res sh -c 'echo >> /disk/registry/lock')"
}

# Block devices built over others (device-mapper, md, bcache), storage targets exporting one
# (LIO, nvmet) and commands passed to a disk past the block layer (SCSI generic, NVMe): the
# kernel opens or writes the disk itself there, unhooked, so level 2 refuses building or
# enabling them, whatever the device. storage_setup makes what the checks use: an md array
# without members, a LIO backstore and an nvmet namespace not enabled, a SCSI generic
# device (scsi_debug).
CFG=/sys/kernel/config
LIO=$CFG/target/core/iblock_0/t
NS=$CFG/nvmet/subsystems/s/namespaces/1
storage_setup() {
    load_storage_modules || return 0
    grep -q " $CFG configfs " /proc/mounts || mount -t configfs none $CFG
    [ -e /sys/block/md_t ] || echo md_t >/sys/module/md_mod/parameters/new_array
    mkdir -p $LIO $NS 2>>"$LOG"
    # scsi_debug's disk and its SCSI generic device appear asynchronously (up to 5 s).
    i=0
    while [ "$i" -lt 50 ]; do
        SG=$(ls /dev/sg* 2>/dev/null | head -n 1)
        SD=/dev/$(ls /sys/class/scsi_generic/${SG##*/}/device/block/ 2>/dev/null | head -n 1)
        [ -n "$SG" ] && [ -b "$SD" ] && break
        sleep 0.1
        i=$((i + 1))
    done
    [ -n "$SG" ] || bad "setup: no SCSI generic device after loading scsi_debug and sg"
    [ -b "$SD" ] || bad "setup: no block device for $SG (scsi_debug's disk)"
}
judged() { # a bpf-probe answer: refused (EPERM), or the kernel's (anything else)
    case "$1" in refused) echo refused ;; *) echo "the kernel's" ;; esac
}
probe_check() { # WHAT WANT PROBE-ARGS...: bpf-probe's answer, judged (with it in the label)
    what=$1 want=$2
    shift 2
    r=$(bpf-probe "$@" 2>>"$LOG")
    expect "$what: $r" "$want" "$(judged "$r")"
}
storage_checks() { # LABEL WANT (allowed below 2, refused from 2)
    k="the kernel's"
    [ "$2" = refused ] && k=refused
    probe_check "$1: a device-mapper table load (DM_TABLE_LOAD)" "$k" blk-ioctl /dev/mapper/control c138fd09
    probe_check "$1: a device-mapper query (DM_LIST_DEVICES; control)" "the kernel's" blk-ioctl /dev/mapper/control c138fd02
    probe_check "$1: adding a disk to an md array (ADD_NEW_DISK)" "$k" blk-ioctl /dev/md_t 40140921
    probe_check "$1: an md query (GET_ARRAY_INFO; control)" "the kernel's" blk-ioctl /dev/md_t 80480911
    expect "$1: open md's new_dev for writing" "$2" "$(res sh -c 'exec 3>>/sys/block/md_t/md/new_dev')"
    expect "$1: open bcache's register for writing" "$2" "$(res sh -c 'exec 3>>/sys/fs/bcache/register')"
    expect "$1: open a LIO backstore's enable for writing" "$2" "$(res sh -c "exec 3>>$LIO/enable")"
    expect "$1: open an nvmet namespace's enable for writing" "$2" "$(res sh -c "exec 3>>$NS/enable")"
    expect "$1: open an nvmet namespace's device_path for writing (control)" allowed "$(res sh -c "exec 3>>$NS/device_path")"
    probe_check "$1: a device-mapper table load from a 32-bit caller (compat)" "$k" compat-ioctl /dev/mapper/control c138fd09
    probe_check "$1: a device-mapper resume (DM_DEV_SUSPEND, swaps in a table loaded before)" "$k" blk-ioctl /dev/mapper/control c138fd06
    probe_check "$1: binding a loop device (LOOP_SET_FD)" "$k" blk-ioctl /dev/loop7 4c00
    probe_check "$1: tracing a device's I/O (BLKTRACESETUP)" "$k" blk-ioctl /dev/loop7 c0481273
    got=$(res sh -c 'echo 1 > /sys/block/vda/trace/enable')
    [ "$got" = allowed ] && echo 0 >/sys/block/vda/trace/enable 2>>"$LOG"
    [ "$2" = refused ] && want=refused || want=allowed
    expect "$1: switch a device's I/O tracing on through sysfs (trace/enable)" "$want" "$got"
    probe_check "$1: a loop device's status (LOOP_GET_STATUS64; control)" "the kernel's" blk-ioctl /dev/loop7 4c05
    probe_check "$1: SG_IO on a SCSI generic device" "$k" sg-io "${SG:-/dev/sg0}"
    probe_check "$1: SG_IO on another disk's block device (absolute sectors)" "$k" sg-io "${SD:-/dev/sda}"
    probe_check "$1: SG_IO from a 32-bit caller (compat)" "$k" compat-ioctl "${SG:-/dev/sg0}" 2285
    expect "$1: open a SCSI generic device for writing (its write(2) takes commands)" "$2" "$(res sh -c "exec 3>>${SG:-/dev/sg0}")"
    expect "$1: open it for reading (control)" allowed "$(res sh -c "exec 3<${SG:-/dev/sg0}")"
    mkdir -p /mnt/sd
    out=$(mount -t ext4 "${SD:-/dev/sda}" /mnt/sd 2>&1) && umount /mnt/sd
    case "$out" in *"not permitted"* | *"permission denied"*) r=refused ;; *) r="${out:-mounted}" ;; esac
    expect "$1: mount a disk's filesystem anew (it could be a sealed one's alias; $r)" "$k" "$(judged "$r")"
    out=$(mount -t tmpfs t /mnt/sd 2>&1) && umount /mnt/sd
    case "$out" in *"not permitted"*) r=refused ;; *) r=allowed ;; esac
    expect "$1: mount a filesystem without a device (control)" allowed "$r"
    probe_check "$1: adding a device to a btrfs (BTRFS_IOC_ADD_DEV)" "$k" blk-ioctl /dev/null 5000940a
    probe_check "$1: kexec_file_load of a kernel to boot into" "$k" kexec-file /bin/busybox
    probe_check "$1: an NVMe command (NVME_IOCTL_ADMIN_CMD) on a character device" "$k" blk-ioctl /dev/null c0484e41
    probe_check "$1: NVME_IOCTL_ID on a character device (control)" "the kernel's" blk-ioctl /dev/null 4e40
}

# A filesystem with an external journal (tests/vm/lib/make-ext-journal; its two images on
# /disk/ej) on loop devices, mounted at /ej: the filesystem writes its journal device too.
# Its superblock is given the journal loop device's number (s_journal_dev) first.
ej_attach() {
    got=$(bpf-probe loop-over /disk2/ej/journal.img 2>>"$LOG")
    EJ_J=${got#allowed }
    [ "${got%% *}" = allowed ] || { bad "setup: a loop device for the external journal ($got)"; return 1; }
    n=$(cat /sys/block/$EJ_J/dev)
    v=$((${n%:*} * 256 + ${n#*:}))
    printf "\\$(printf %03o $((v & 255)))\\$(printf %03o $((v >> 8)))\\000\\000" |
        dd of=/disk2/ej/fs.img bs=1 seek=1252 conv=notrunc 2>>"$LOG"
    got=$(bpf-probe loop-over /disk2/ej/fs.img 2>>"$LOG")
    EJ_F=${got#allowed }
    [ "${got%% *}" = allowed ] || { bad "setup: a loop device for the filesystem ($got)"; return 1; }
    mkdir -p /ej
    mount -t ext4 /dev/$EJ_F /ej 2>>"$LOG" || { bad "setup: mount the filesystem with an external journal"; return 1; }
}

if [ "$BOOT" = boot1 ]; then
    rm -rf /disk/jails /disk/registry /disk/sysbase
    sysbase_setup
    mkdir -p /disk/jails/app/etc /disk/jails/app/bin
    echo "listen = 80" >/disk/jails/app/etc/app.conf
    printf '#!/bin/sh\necho hi\n' >/disk/jails/app/bin/server
    out=$(sealtool register /disk/jails/app --name app --seal 2>&1)
    echo "$out" >>"$LOG"
    contains "boot1: seal app" "$out" "enforced by fsguard"
    expect "boot1: the level is 1" 1 "$(sealtool level 2>>"$LOG")"
    guard_checks "level 1"
    locked_checks "level 1" allowed
    # A partition over the sealed filesystem's sectors, added below level 2: an alias of the
    # device that level 2 must protect as the device itself.
    expect "level 1: add a partition over the sealed filesystem (BLKPG; allowed below 2)" allowed "$(bpf-probe blkpg-add $DEV 1 0 2048 2>>"$LOG")"
    i=0
    while [ "$i" -lt 50 ] && [ ! -b ${DEV}1 ]; do sleep 0.1; i=$((i + 1)); done
    expect "level 1: open that partition for writing (allowed below 2)" allowed "$(res sh -c "exec 3>>${DEV}1")"
    # Block-device commands other than queries (none of these can do anything here: virtio
    # has no SCSI, and zeroing needs a descriptor opened for writing).
    # Device controls in sysfs that would probe the disk again (under a new device number):
    # opened for writing, never written.
    for f in /sys/bus/virtio/drivers/virtio_blk/unbind /sys/bus/virtio/drivers/virtio_blk/bind; do
        expect "level 1: open $f for writing (allowed below 2)" allowed "$(res sh -c "exec 3>>$f")"
    done
    for c in 1 127f; do
        got=$(bpf-probe blk-ioctl $DEV $c 2>>"$LOG")
        [ "$got" = refused ] && v=refused || v="the kernel's answer"
        expect "level 1: block ioctl $c on the tree's disk is the kernel's to answer below 2 ($got)" "the kernel's answer" "$v"
    done
    storage_setup
    storage_checks "level 1" allowed
    mkdir -p /tmp/ovl/l /tmp/ovl/u /tmp/ovl/w /tmp/ovl/m && echo o >/tmp/ovl/l/f
    mount -t overlay ovl -o lowerdir=/tmp/ovl/l,upperdir=/tmp/ovl/u,workdir=/tmp/ovl/w /tmp/ovl/m 2>>"$LOG"
    out=$(CAPSULE_REGISTRY=/tmp/ovl/registry sealtool register /tmp/ovl/m --name ovl --seal 2>&1)
    rc=$?
    echo "$out" >>"$LOG"
    expect "level 1: sealing a tree on overlayfs is refused (its layers stay writable)" "exit 2" "exit $rc"
    contains "level 1: the refusal says why" "$out" "a tree on overlayfs can't be protected"
    umount /tmp/ovl/m
    if ej_attach; then
        mkdir -p /ej/tree && echo ej >/ej/tree/f
        out=$(sealtool register /ej/tree --name ej --seal 2>&1)
        echo "$out" >>"$LOG"
        contains "level 1: seal a tree on a filesystem with an external journal" "$out" "enforced by fsguard"
        expect "level 1: open its journal device /dev/$EJ_J for writing (allowed below 2)" allowed "$(res sh -c "exec 3>>/dev/$EJ_J")"
    fi
    # Devices over the sealed filesystem's sectors made below level 2 that sysfs doesn't link
    # to its disk: a loop device over the disk, and a device-mapper target over that loop
    # (the disk itself is claimed by its filesystem). Level 2 protects them as the disk.
    got=$(bpf-probe loop-over $DEV 2>>"$LOG")
    LOOP=${got#allowed }
    expect "level 1: a loop device over the sealed filesystem's disk (allowed below 2)" allowed "${got%% *}"
    got=$(bpf-probe dm-linear over /dev/$LOOP 2>>"$LOG")
    DM=${got#allowed }
    expect "level 1: a device-mapper target over that loop device (allowed below 2)" allowed "${got%% *}"
    head -c 1048576 /dev/zero >/tmp/plain.img
    got=$(bpf-probe loop-over /tmp/plain.img 2>>"$LOG")
    PLAIN=${got#allowed }
    expect "level 1: a loop device over a plain file (control)" allowed "${got%% *}"
    head -c 1048576 /dev/zero >/disk/onfs.img
    got=$(bpf-probe loop-over /disk/onfs.img 2>>"$LOG")
    ONFS=${got#allowed }
    expect "level 1: a loop device over a file on the sealed filesystem (allowed below 2)" allowed "${got%% *}"
    for d in $LOOP $DM $ONFS; do
        expect "level 1: open /dev/$d for writing (allowed below 2)" allowed "$(res sh -c "exec 3>>/dev/$d")"
    done
    # A tree on a filesystem in an image file, mounted through a loop device (a jail's image):
    # writing the image rewrites the tree, so from level 2 on the image is locked as the
    # loop device is, but for the loop's own kernel thread, which writes what the capsule
    # writes (checked at level 2 below).
    head -c 4194304 /dev/zero >/tmp/jail.img
    got=$(bpf-probe loop-over /tmp/jail.img 2>>"$LOG")
    IMG=${got#allowed }
    mkdir -p /mnt/jail && mke2fs -q /dev/$IMG 2>>"$LOG" && mount /dev/$IMG /mnt/jail 2>>"$LOG"
    mkdir -p /mnt/jail/app /sys/fs/cgroup/imgapp && echo img >/mnt/jail/app/f
    # An inside process, started before the seal, that writes once told to.
    (
        echo 0 >/sys/fs/cgroup/imgapp/cgroup.procs || exit 1
        while [ ! -e /tmp/img.go ]; do sleep 0.1; done
        echo inside-wrote-this >/mnt/jail/app/f 2>>"$LOG"
        sync
        touch /tmp/img.done
    ) &
    out=$(CAPSULE_REGISTRY=/tmp/imgreg sealtool register /mnt/jail/app --name img --seal --cgroup /sys/fs/cgroup/imgapp 2>&1)
    echo "$out" >>"$LOG"
    contains "level 1: seal a tree on a filesystem in an image file (/dev/$IMG over /tmp/jail.img)" "$out" "enforced by fsguard"
    # Below 2 the image is written as its loop device is (its last block: unused).
    expect "level 1: write to the image file under a sealed tree (allowed below 2)" allowed "$(res dd if=/dev/zero of=/tmp/jail.img bs=4096 count=1 seek=1023 conv=notrunc)"
    # A device control file opened for writing below 2 and kept: written at level 2 below.
    command exec 5>>/sys/block/md_t/md/new_dev 2>>"$LOG" && HELD_CONTROL=1
    out=$(sh -c 'echo 1:2 >/sys/block/md_t/md/new_dev' 2>&1)
    case "$out" in *"not permitted"*) got=refused ;; *) got="the kernel's" ;; esac
    expect "level 1: write md's new_dev (the kernel's answer below 2: $out)" "the kernel's" "$got"
    # An nvmet namespace over the disk, enabled below 2: nothing refuses its writes at level
    # 2 (the kernel opened the disk itself), so the raise is refused while it is enabled.
    printf %s $DEV >$NS/device_path 2>>"$LOG" && echo 1 >$NS/enable 2>>"$LOG"
    expect "level 1: enable an nvmet namespace over the sealed filesystem's disk" 1 "$(cat $NS/enable 2>>"$LOG")"
    refused_raise "that namespace is enabled" "the namespace" "namespaces/1 ($DEV)"
    echo 0 >$NS/enable
    # Devices over an alias of the sealed disk and a device of root's, built below 2: the
    # kernel copies one over the other (an md array's resync or recovery, a mirror's), past
    # every hook, so the raise is refused while one exists. The alias is the primary leg and
    # nothing is synced here (the array is never started; the mirror has nosync).
    got=$(bpf-probe loop-over $DEV 2>>"$LOG")
    ALIAS2=${got#allowed }
    head -c 1048576 /dev/zero >/tmp/member.img
    got=$(bpf-probe loop-over /tmp/member.img 2>>"$LOG")
    MEMBER=${got#allowed }
    echo md_c >/sys/module/md_mod/parameters/new_array 2>>"$LOG"
    for d in $ALIAS2 $MEMBER; do cat /sys/block/$d/dev >/sys/block/md_c/md/new_dev 2>>"$LOG"; done
    expect "level 1: an md array over /dev/$ALIAS2 (an alias of the sealed disk) and /dev/$MEMBER" 2 "$(ls /sys/block/md_c/slaves 2>>"$LOG" | wc -l)"
    refused_raise "an md array is built over an alias" "the array" "/dev/md_c (an md array over"
    echo clear >/sys/block/md_c/md/array_state 2>>"$LOG"
    expect "level 1: the md array's members released" 0 "$(ls /sys/block/md_c/slaves 2>>"$LOG" | wc -l)"
    a=$(cat /sys/block/$ALIAS2/dev) m=$(cat /sys/block/$MEMBER/dev)
    got=$(bpf-probe dm-table mirror_c 2048 mirror "core 2 1024 nosync 2 $a 0 $m 0" 2>>"$LOG")
    expect "level 1: a device-mapper mirror over the alias and /dev/$MEMBER" allowed "${got%% *}"
    refused_raise "a device-mapper mirror is built over an alias" "the mirror" "a device-mapper mirror target over"
    expect "level 1: remove the mirror" allowed "$(bpf-probe dm-remove mirror_c 2>>"$LOG")"
    # The control, kept through the raise below: a striped table over the same two devices
    # writes each only with what is written to it.
    got=$(bpf-probe dm-table striped_c 2048 striped "2 8 $a 0 $m 0" 2>>"$LOG")
    expect "level 1: a device-mapper striped table over the alias and /dev/$MEMBER (control: kept through the raise)" allowed "${got%% *}"
    # A program level 2 would refuse, loaded below 2 and kept: the raise is refused while it
    # is loaded (attached later, or put in a program array, it would run at level 2).
    bpf-probe hold-reader >/tmp/reader.out 2>>"$LOG" &
    holder=$!
    for _ in $(seq 60); do [ -s /tmp/reader.out ] && break; sleep 1; done
    rid=$(sed -n 's/^allowed \([0-9]*\)$/\1/p' /tmp/reader.out)
    expect "level 1: load and keep a socket filter that calls bpf_probe_read_user" yes "$([ -n "$rid" ] && echo yes || cat /tmp/reader.out)"
    refused_raise "that program is loaded" "the program and the helper" "BPF program $rid calls bpf_probe_read_user"
    kill $holder 2>>"$LOG"
    wait $holder 2>/dev/null
    # Tracing made below 2 that level 2 refuses to make: a perf event held, a tracefs probe.
    bpf-probe hold-perf >/tmp/perf.out 2>>"$LOG" &
    perf_holder=$!
    for _ in $(seq 60); do [ -s /tmp/perf.out ] && break; sleep 1; done
    expect "level 1: open and keep a perf event" allowed "$(cat /tmp/perf.out)"
    echo "p:capsule_probe ksys_write" >>/tmp/tr/kprobe_events 2>>"$LOG"
    refused_raise "a perf event is held and a tracefs probe is defined" "the perf event's holder" "process $perf_holder (bpf-probe) holds a perf event"
    contains "boot1: ... and the probe" "$out" "tracefs probe \`p:kprobes/capsule_probe ksys_write\` is defined"
    kill $perf_holder 2>>"$LOG"
    wait $perf_holder 2>/dev/null
    echo "-:capsule_probe" >>/tmp/tr/kprobe_events 2>>"$LOG"
    # An audit rule loaded below 2.
    expect "level 1: add an audit rule" allowed "$(proc-probe audit-rule add 2>>"$LOG")"
    refused_raise "an audit rule is loaded" "the rule" "1 audit rule(s) are loaded"
    expect "level 1: delete the audit rule" allowed "$(proc-probe audit-rule del 2>>"$LOG")"
    # A static event enabled in an instance of its own, a tracer set (blk: cheap under TCG).
    mkdir -p /tmp/tr/instances/capsule && echo sched:sched_process_exec >/tmp/tr/instances/capsule/set_event 2>>"$LOG"
    echo blk >/tmp/tr/current_tracer 2>>"$LOG"
    # Hidden from the usual path (a tmpfs over the mount point): the raise looks at a tracefs
    # mount of its own.
    mkdir -p /tmp/trhide && mount -t tracefs nodev /tmp/trhide 2>>"$LOG" && mount -t tmpfs none /tmp/trhide 2>>"$LOG"
    refused_raise "a trace event is enabled and a tracer set" "the event" "the trace event \`sched:sched_process_exec\` is enabled in instance capsule"
    contains "boot1: ... and the tracer" "$out" "the tracer \`blk\` is set ("
    umount /tmp/trhide 2>>"$LOG"
    umount /tmp/trhide 2>>"$LOG"
    echo >/tmp/tr/instances/capsule/set_event 2>>"$LOG"
    echo nop >/tmp/tr/current_tracer 2>>"$LOG"
    rmdir /tmp/tr/instances/capsule 2>>"$LOG"
    # Swap: what a capsule process swapped out comes back as the swap area holds it. Swap
    # areas on a loop device over a file and on a loop over another loop device (BASE, over
    # a file), switched on now; one made for a swapon after the raise; a loop over a plain
    # file as the control (level 2 binds no loop device).
    for f in swap1 swap2 base noswap; do dd if=/dev/zero of=/tmp/$f.img bs=1M count=8 2>>"$LOG"; done
    lo() { r=$(bpf-probe loop-over "$1" 2>>"$LOG") && echo "${r#allowed }"; }
    SWAP1=$(lo /tmp/swap1.img) SWAP2=$(lo /tmp/swap2.img) BASE=$(lo /tmp/base.img) NOSWAP=$(lo /tmp/noswap.img)
    SWAPL=$(lo /dev/$BASE)
    for d in $SWAP1 $SWAP2 $SWAPL; do mkswap /dev/$d >>"$LOG" 2>&1; done
    swapon /dev/$SWAP1 2>>"$LOG" && swapon /dev/$SWAPL 2>>"$LOG"
    expect "level 1: swap areas on /dev/$SWAP1 and /dev/$SWAPL (over /dev/$BASE) are switched on" 2 "$(grep -c -e "^/dev/$SWAP1 " -e "^/dev/$SWAPL " /proc/swaps)"
    command exec 4<>$DEV 2>>"$LOG" && HELD_FD=1 # command: a refusal is no exit
    # Traced as vm_integrity's raise that loads a reader half way, loading nothing: the control.
    out=$(guard-attack during-raise 2 none -- sealtool level 2 2>&1)
    rc=$?
    echo "$out" >>"$LOG"
    contains "boot1: sealtool level 2" "$out" "level 2"
    expect "boot1: ... traced to its first request, nothing made: whole (control)" "exit 0 nothing made" \
        "exit $rc $(echo "$out" | grep -x 'nothing made')"
    contains "boot1: level 2 locks the registry" "$out" "registry /disk/registry locked"
    contains "boot1: level 2 protects what reaches the swap area" "$out" "swap: "
    expect "boot1: lockdown is integrity" integrity "$(sed -n 's/.*\[\(.*\)\].*/\1/p' /sys/kernel/security/lockdown)"
    expect "boot1: lowering the level is refused" "exit 2" "$(sealtool level 1 >>"$LOG" 2>&1; echo "exit $?")"
    guard_checks "level 2"
    locked_checks "level 2" refused
    storage_checks "level 2" refused
    if [ -n "${EJ_J:-}" ]; then
        expect "level 2: open the external journal of a sealed filesystem for writing" refused "$(res sh -c "exec 3>>/dev/$EJ_J")"
        expect "level 2: open it for reading (control)" allowed "$(res sh -c "exec 3</dev/$EJ_J")"
    fi
    zap() { dd if=/dev/zero of="$1" bs=4096 count=1 seek=1 conv=notrunc 2>>"$LOG"; }
    # The swap device's own writes the kernel refuses (ETXTBSY); what lies beneath, which
    # the loop writes with no hook, sealtool's lock protected: a backing file (frozen), a
    # backing device and its own backing file.
    expect "level 2: write to the backing file of the loop device holding an active swap area" refused "$(res zap /tmp/swap1.img)"
    expect "level 2: write to the loop device beneath another swap area's loop" refused "$(res zap /dev/$BASE)"
    expect "level 2: write to that loop device's backing file" refused "$(res zap /tmp/base.img)"
    expect "level 2: write to the backing file of a loop device that holds no swap (control)" allowed "$(res zap /tmp/noswap.img)"
    expect "level 2: write to a loop device that holds no swap (control)" allowed "$(res zap /dev/$NOSWAP)"
    expect "level 2: switch on another swap area" refused "$(res swapon /dev/$SWAP2)"
    expect "level 2: write to the image file under a sealed tree" refused "$(res zap /tmp/jail.img)"
    expect "level 2: truncate the image file" refused "$(res truncate -s 1M /tmp/jail.img)"
    expect "level 2: open the image's loop device /dev/$IMG for writing" refused "$(res sh -c "exec 3>>/dev/$IMG")"
    probe_check "level 2: swap the image's loop device onto another file (LOOP_CHANGE_FD)" refused blk-ioctl /dev/$IMG 4c06
    expect "level 2: read the image file (control)" allowed "$(res sh -c 'head -c 1 /tmp/jail.img >/dev/null')"
    expect "level 2: write a file beside the image (control)" allowed "$(res sh -c 'echo x >/tmp/jail.other')"
    touch /tmp/img.go
    for _ in $(seq 100); do [ -e /tmp/img.done ] && break; sleep 0.1; done
    # The loop's own writes reached the image (searched in the file, read from outside).
    expect "level 2: the capsule's write went through the loop device into the image file" 1 "$(grep -c inside-wrote-this /tmp/jail.img 2>>"$LOG")"
    # The swap areas keep working: pages pushed out of a cgroup go through the loop devices
    # into their (frozen) backing files, written by the loops' own kernel threads.
    echo +memory >/sys/fs/cgroup/cgroup.subtree_control 2>>"$LOG"
    mkdir -p /sys/fs/cgroup/swapper
    sh -c 'echo $$ >/sys/fs/cgroup/swapper/cgroup.procs; x=$(head -c 6000000 /dev/zero | tr "\0" a); echo >/tmp/swapper.ready; sleep 600' &
    swapper=$!
    for _ in $(seq 100); do [ -e /tmp/swapper.ready ] && break; sleep 0.1; done
    echo 8M >/sys/fs/cgroup/swapper/memory.reclaim 2>>"$LOG"
    used=$(awk -v a=/dev/$SWAP1 -v b=/dev/$SWAPL '$1 == a || $1 == b { u += $4 } END { print u + 0 }' /proc/swaps)
    expect "level 2: pages were written to the swap areas on loop devices (KiB used: $used)" yes "$([ "$used" -gt 0 ] && echo yes || echo no)"
    expect "level 2: ... with no write error" 0 "$(dmesg | grep -c -i -e 'write-error on swap' -e 'I/O error, dev loop')"
    echo 1 >/sys/fs/cgroup/swapper/cgroup.kill 2>>"$LOG"
    wait $swapper 2>/dev/null
    for d in $LOOP $DM $ONFS; do
        expect "level 2: open /dev/$d (over the sealed filesystem's disk) for writing" refused "$(res sh -c "exec 3>>/dev/$d")"
        expect "level 2: open /dev/$d for reading (control)" allowed "$(res sh -c "exec 3</dev/$d")"
    done
    if [ -n "${HELD_CONTROL:-}" ]; then
        out=$(sh -c 'echo 1:2 >&5' 2>&1)
        case "$out" in *"not permitted"*) got=refused ;; *) got="the kernel's" ;; esac
        expect "level 2: write md's new_dev through a descriptor opened at level 1 ($out)" refused "$got"
    else
        bad "level 2: no descriptor of md's new_dev was kept from level 1"
    fi
    exec 5>&-
    got=$(bpf-probe loop-over /tmp/plain.img 2>>"$LOG")
    expect "level 2: a new loop device over a plain file (LOOP_SET_FD)" refused "${got%% *}"
    if [ -n "${HELD_FD:-}" ]; then
        expect "level 2: make a read-only shared mapping of the disk writable (mprotect, descriptor from level 1)" refused "$(bpf-probe mprotect-write 4 2>>"$LOG")"
        head -c 8192 /dev/zero >/tmp/mp-control
        exec 6<>/tmp/mp-control
        expect "level 2: the same on a file of no capsule (control)" allowed "$(bpf-probe mprotect-write 6 2>>"$LOG")"
        exec 6>&-
    fi
    expect "level 2: open /dev/$PLAIN (a loop over a plain file) for writing (control)" allowed "$(res sh -c "exec 3>>/dev/$PLAIN")"
    expect "level 2: add another partition over the sealed filesystem (BLKPG)" refused "$(bpf-probe blkpg-add $DEV 2 2048 2048 2>>"$LOG")"
    expect "level 2: re-read the disk's partition table (BLKRRPART)" refused "$(bpf-probe blkrrpart $DEV 2>>"$LOG")"
    expect "level 2: open the partition added at level 1 for writing" refused "$(res sh -c "exec 3>>${DEV}1")"
    expect "level 2: open it for reading (control)" allowed "$(res sh -c "exec 3<${DEV}1")"
    expect "level 2: SCSI_IOCTL_SEND_COMMAND on the tree's disk" refused "$(bpf-probe blk-ioctl $DEV 1 2>>"$LOG")"
    expect "level 2: BLKZEROOUT on the tree's disk" refused "$(bpf-probe blk-ioctl $DEV 127f 2>>"$LOG")"
    expect "level 2: an ioctl nobody knows on the tree's disk" refused "$(bpf-probe blk-ioctl $DEV 4242 2>>"$LOG")"
    for f in /sys/bus/virtio/drivers/virtio_blk/unbind /sys/bus/virtio/drivers/virtio_blk/bind; do
        expect "level 2: open $f for writing (the disk would come back under a new number)" refused "$(res sh -c "exec 3>>$f")"
    done
    expect "level 2: open another sysfs attribute for writing (control)" allowed "$(res sh -c 'exec 3>>/sys/block/vda/queue/read_ahead_kb')"
    expect "level 2: BLKGETSIZE64 on the tree's disk (a query; control)" allowed "$(bpf-probe blk-ioctl $DEV 80081272 2>>"$LOG")"
    # Adding a capsule is still possible; its registry files are frozen at once.
    mkdir -p /disk/jails/b && echo b >/disk/jails/b/f
    out=$(sealtool register /disk/jails/b --name b --seal 2>&1)
    echo "$out" >>"$LOG"
    contains "level 2: a new capsule can still be sealed" "$out" "enforced by fsguard"
    expect "level 2: the new capsule's seal file is frozen at once" refused "$(res rm -f /disk/registry/manifests/b/*.seal)"
    expect "level 2: outside write to the new capsule" refused "$(res sh -c 'echo x >> /disk/jails/b/f')"
    expect "boot1: verify is clean" "exit 0" "$(sealtool verify >>"$LOG" 2>&1; echo "exit $?")"
    # What root at level 2 can still do to the registry, to test that boot 2 copes: a new
    # capsule directory with a junk seal (manifests/ is append-only), a damaged sled index.
    # A second seal in a sealed capsule's directory is refused.
    Z=0000000000000000000000000000000000000000000000000000000000000000
    expect "level 2: plant a second seal in sealed capsule app's directory" refused \
        "$(res sh -c "echo junk > /disk/registry/manifests/app/$Z.seal")"
    expect "level 2: plant a junk seal for a new capsule (allowed: capsules can be added)" allowed \
        "$(res sh -c "mkdir /disk/registry/manifests/junk && echo junk > /disk/registry/manifests/junk/$Z.seal")"
    for f in /disk/registry/db/*; do [ -f "$f" ] && echo garbage >"$f"; done
    expect "level 2: the sled index can be damaged (it is derived data)" "exit 2" "$(sealtool list >>"$LOG" 2>&1; echo "exit $?")"
    sync
else
    [ -d /disk/registry ] || { bad "boot2: no registry on /disk (boot1 did not run?)"; finish; }
    expect "boot2: nothing enforced before enforce --boot" absent "$([ -e $PINS/link_fsguard_file_open ] && echo present || echo absent)"
    # As a real boot would: every filesystem mounted before enforcement.
    load_storage_modules && ej_attach
    command exec 4<>$DEV 2>>"$LOG" && HELD_FD=1 # command: a refusal is no exit
    # Loop devices bound earlier in boot: one to a sealed file would keep writing it past
    # every check (no hook of its own), so enforcement names it; one over a free file is the
    # control.
    dd if=/dev/zero of=/disk/free.img bs=4096 count=4 2>>"$LOG"
    got=$(bpf-probe loop-over /disk/jails/app/etc/app.conf 2>>"$LOG")
    got2=$(bpf-probe loop-over /disk/free.img 2>>"$LOG")
    expect "boot2: setup: loop devices over a sealed file and over a free one" "allowed allowed" "${got%% *} ${got2%% *}"
    LOOP_SEALED=${got#* } LOOP_FREE=${got2#* }
    # A trace event enabled earlier in boot: level 2 would refuse it, and boot enforcement
    # names it only once every tree is enforced (the checks below).
    mkdir -p /tmp/tr && mount -t tracefs nodev /tmp/tr 2>>"$LOG"
    echo sched:sched_process_exec >/tmp/tr/set_event 2>>"$LOG"
    out=$(sealtool enforce --boot 2>&1)
    rc=$?
    echo "$out" >>"$LOG"
    contains "boot2: enforce --boot names the trace event enabled before it" "$out" "the trace event \`sched:sched_process_exec\` is enabled"
    contains "boot2: enforce --boot names the loop device bound to a sealed file before it" "$out" "loop device $LOOP_SEALED is bound to a file the guard protects"
    expect "boot2: ... and not the one over a free file (control)" 0 "$(printf '%s\n' "$out" | grep -c "loop device $LOOP_FREE ")"
    expect "boot2: the loop device over the sealed file can be detached at level 2" allowed "$(losetup -d "/dev/$LOOP_SEALED" 2>>"$LOG" && echo allowed || echo refused)"
    losetup -d "/dev/$LOOP_FREE" 2>>"$LOG"
    expect "boot2: sealtool enforce --boot exits 2 (a seal file is unusable)" "exit 2" "exit $rc"
    contains "boot2: enforce --boot names the junk seal" "$out" "manifests/junk/"
    contains "boot2: enforce --boot goes on without the damaged index" "$out" "was enforced from the seal files alone"
    contains "boot2: enforce --boot enforces the three real capsules and the guest's programs' bases" "$out" "$((3 + $(ls /disk/sysbase | wc -l))) sealed capsules enforced"
    contains "boot2: enforce --boot locks the registry" "$out" "registry /disk/registry locked"
    expect "boot2: enforce --boot raised the level to 2" 2 "$(sealtool level 2>>"$LOG")"
    expect "boot2: the registry index is rebuilt from the seal and manifest files" "exit 2" \
        "$(sealtool registry rebuild >>"$LOG" 2>&1; echo "exit $?")"
    expect "boot2: lockdown is integrity" integrity "$(sed -n 's/.*\[\(.*\)\].*/\1/p' /sys/kernel/security/lockdown)"
    for f in etc/app.conf bin/server; do
        expect "boot2: outside write to $f" refused "$(res sh -c "echo x >> /disk/jails/app/$f")"
        expect "boot2: outside removal of $f" refused "$(res rm -f /disk/jails/app/$f)"
        expect "boot2: outside chmod of $f" refused "$(res chmod 0777 /disk/jails/app/$f)"
    done
    expect "boot2: outside create in the tree" refused "$(res touch /disk/jails/app/new)"
    expect "boot2: outside rename in the tree" refused "$(res mv /disk/jails/app/etc /disk/jails/app/etc2)"
    expect "boot2: outside write to capsule b" refused "$(res sh -c 'echo x >> /disk/jails/b/f')"
    expect "boot2: write to an unrelated file on the same disk (control)" allowed "$(res sh -c 'echo x >> /disk/unrelated')"
    guard_checks "boot2"
    locked_checks "boot2" refused
    if [ -n "${EJ_J:-}" ]; then
        expect "boot2: open the external journal of a sealed filesystem for writing" refused "$(res sh -c "exec 3>>/dev/$EJ_J")"
        expect "boot2: outside write to the tree on it" refused "$(res sh -c 'echo x >> /ej/tree/f')"
    fi
    storage_setup
    storage_checks "boot2" refused
    expect "boot2: verify is clean" "exit 0" "$(sealtool verify app b >>"$LOG" 2>&1; echo "exit $?")"
fi
finish
