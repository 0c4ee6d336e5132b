#!/bin/sh
# fsguard-suite.sh SCENARIO: end-to-end checks of the fsguard BPF LSM guard, run as root in the
# test guest (tests/vm/run; busybox sh). Each boot checks one scenario, since the guard's
# level can only be raised:
#
#   level1  on tmpfs, the guard at level 1 (the default): root and an unprivileged user outside
#           the capsule are refused every operation; root and a user inside (in its cgroup)
#           are allowed, except on frozen parts; unrelated paths stay allowed; what inside
#           processes create is refused to outside ones; the same inode reached by another
#           path (bind mount, /proc/PID/root, /proc/self/fd, 200 nested directories, a path
#           longer than PATH_MAX, a hard link outside the tree) is refused; descriptors opened
#           before the seal can't write.
#   level0  the same, the guard first loaded by `sealtool level 0`: root outside allowed, an
#           unprivileged user outside still refused, frozen parts refused to everyone; then
#           `sealtool level 1` takes root's allowance away.
#   ext4    the level1 checks on the ext4 disk (/disk, needs --disk): a real block device,
#           where stat()'s st_dev and the kernel's dev_t differ; plus the reuse of a freed
#           inode number (ext4 recycles them).
#   nolsm   booted without the BPF LSM (lsm=landlock,yama): seal exits 3, says enforcement is
#           NOT active and why, status agrees, the seal is still recorded and final.
#   onelink on the ext4 disk (/disk, needs --disk with room for 70,000 inodes): a directory with
#           more than 65,000 subdirectories, whose link count ext4 then keeps at 1, made
#           inside after the seal; an inside rmdir of it answers ENOTEMPTY, and it must stay
#           protected (its entry is not released on the link count).
#
# Every refusal check is paired with controls that must succeed: the same operation on the
# same paths before the seal, and on an unrelated tree of the same shape after it, so a
# check can't pass because the operation was impossible anyway (permissions, EOPNOTSUPP).
#
# Mutation testing: FSGUARD_SUITE_DETACH="file_open inode_rename ..." detaches those hooks
# of the guard right after the seal (by removing their pinned links); the suite must then
# report failures, which shows its checks depend on those hooks. From level 1 on the guard
# protects its own pins, so run mutations with the level0 scenario.
#
# Output: `PASS: <what>` / `FAIL: <what> (expected X, got Y)` / `NOTE: <what>` lines, then
# `fsguard-suite: N passed, M failed`. Exit 0 when M is 0, 1 otherwise, 2 on a usage error.
# Operations are performed by capsule-probe (tests/src/bin/capsule-probe.rs), which prints
# `allowed`, `refused` (EPERM) or `error: <ERRNO>`; its stderr goes to $LOG, shown on failure.

set -u
scenario=${1:-}
case "$scenario" in
    level1 | level0 | ext4 | nolsm | onelink) ;;
    *)
        echo "usage: fsguard-suite.sh level1|level0|ext4|nolsm|onelink" >&2
        exit 2
        ;;
esac

CG=/sys/fs/cgroup/app
. /inside.sh
LOG=/tmp/fsguard-suite.log
WORK=/tmp/fsguard-suite
: >"$LOG"
mkdir -p "$WORK" && chmod 0777 "$WORK" # the user's probes write their READY files here
pass=0
fail=0

ok() {
    pass=$((pass + 1))
    echo "PASS: $1"
}
bad() {
    fail=$((fail + 1))
    echo "FAIL: $1"
}
note() { echo "NOTE: $*"; }
expect() { # WHAT EXPECTED GOT
    if [ "$2" = "$3" ]; then ok "$1"; else bad "$1 (expected $2, got ${3:-nothing})"; fi
}
expect_rc() { # WHAT EXPECTED_STATUS COMMAND... (output to $LOG)
    what=$1 want=$2
    shift 2
    "$@" >>"$LOG" 2>&1
    expect "$what" "exit $want" "exit $?"
}
count() { # WHAT EXPECTED GOT: expect, for counts read from sealtool status (numbers only)
    case "$2$3" in
        '' | *[!0-9]*) bad "$1 (expected a count $2, got '$3')" ;;
        *) expect "$1" "$2" "$3" ;;
    esac
}
contains() { # WHAT TEXT NEEDLE
    case "$2" in
        *"$3"*) ok "$1" ;;
        *) bad "$1 (expected output containing '$3', got: $(printf '%s' "$2" | tr '\n' '|'))" ;;
    esac
}
finish() {
    if [ "$fail" -gt 0 ]; then
        echo "--- capsule-probe and sealtool diagnostics ($LOG, last 60 lines):"
        tail -n 60 "$LOG"
    fi
    echo "fsguard-suite: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit $?
}
die() {
    bad "setup: $*"
    finish
}

# ----------------------------------------------------------------------------- actors
# root-out / user-out: outside the capsule; root-in / user-in: in its cgroup ($CG). The user is
# `user` (1000:1000), switched to with the guest's `runas` (busybox su). Inside actors run
# through an agent started in the cgroup before the seal (inside.sh): once the capsule is
# sealed, nothing outside may join its cgroup.
as() { # ACTOR COMMAND ARGS...
    actor=$1
    shift
    case "$actor" in
        root-out) "$@" ;;
        user-out) runas user "$@" ;;
        root-in) inside "$@" ;;
        user-in) inside runas user "$@" ;;
        *) echo "error: unknown actor $actor" ;;
    esac 2>>"$LOG"
}
probe() { # ACTOR OP ARGS...: prints allowed, refused or error: ...
    a=$1
    shift
    as "$a" capsule-probe "$@"
}
describe() { # ACTOR -> words
    case "$1" in
        root-out) echo "root outside" ;;
        user-out) echo "user outside" ;;
        root-in) echo "root inside" ;;
        user-in) echo "user inside" ;;
    esac
}

# ----------------------------------------------------------------------------- trees
# One target set per actor: files 0666 and directories 0777 owned by root (so an
# unprivileged user may modify them through ordinary permissions), plus, for users, the
# targets of owner-only operations (chmod, chown, explicit utimes, FS_IOC_*) owned by them.
# Each destructive operation has a target of its own. OUT is the actor's directory outside
# the tree on the same filesystem (for renames and links across the tree's boundary).
FILES="wronly rdwr trunc rotrunc append read truncate utimes xuser xcap xrm unlink ren_within
ren_out replaced exch exch2 exch3 link_src link_out chmod chown utimes_set flags fsx"
OWNED="f.chmod f.chown f.utimes_set f.flags f.fsx d.chmod"
# A path longer than PATH_MAX (4096): 2 x 55 components of 40 bytes (4510 bytes), each half
# short enough for one mkdir -p or cd.
LONGNAME=llllllllllllllllllllllllllllllllllllllll
LONGHALF=$LONGNAME
i=1
while [ $i -lt 55 ]; do
    LONGHALF=$LONGHALF/$LONGNAME
    i=$((i + 1))
done
DEEP=
i=0
while [ $i -lt 200 ]; do
    DEEP=$DEEP/d
    i=$((i + 1))
done
TAB=$(printf '\t')
GRAVE=0

mkset() { # DIR OUT KIND(root|user)
    d=$1 o=$2 kind=$3
    mkdir -p "$d" "$o" || die "mkdir $d $o"
    for f in $FILES; do
        echo data >"$d/f.$f"
    done
    head -c 8192 /dev/zero >"$d/pf"
    mkdir "$d/d.rmdir" "$d/d.ren" "$d/d.chmod"
    ln -s f.read "$d/s.link"
    for f in ren_in replace exch link_src tmp; do
        echo out >"$o/o.$f"
    done
    chmod 0666 "$d"/f.* "$d/pf" "$o"/o.*
    chmod 0777 "$d" "$d"/d.* "$o"
    if [ "$kind" = root ]; then
        capsule-probe setxattr "$d/f.xrm" security.capability >>"$LOG" 2>&1
    else
        (cd "$d" && chown 1000:1000 $OWNED)
        [ "$XCTL" = allowed ] && capsule-probe setxattr "$d/f.xrm" user.test >>"$LOG" 2>&1
    fi
}

# The identity targets of an outside actor: ID/{bind,bindfile,proc,fd,hl}, a file 200
# directories down, and one below a path longer than PATH_MAX.
mkid() { # DIR
    id=$1/id
    mkdir -p "$id$DEEP" || die "mkdir deep"
    for f in bind bindfile proc fd hl; do echo data >"$id/$f"; done
    echo data >"$id$DEEP/leaf"
    (
        cd -P "$id" && mkdir -p "long/$LONGHALF" && cd -P "long/$LONGHALF" &&
            mkdir -p "$LONGHALF" && cd -P "$LONGHALF" &&
            echo data >leaf && chmod 0666 leaf && chmod 0777 .
    ) || die "cannot build the path longer than PATH_MAX under $id"
    chmod 0666 "$id"/bind "$id"/bindfile "$id"/proc "$id"/fd "$id"/hl "$id$DEEP/leaf"
    chmod 0777 "$id" "$id$DEEP"
}

# Runs COMMAND with its working directory at the bottom of DIR/id/long, reached with two
# relative cd's (the full path is longer than PATH_MAX, so no single path reaches it).
in_long() { # DIR COMMAND...
    (
        cd -P "$1/id/long" && cd -P "$LONGHALF" && cd -P "$LONGHALF" || exit 1
        shift
        "$@"
    ) 2>>"$LOG"
}

# The configurations checked: actor and its target directory below the tree (bin/ is frozen).
CONFIGS="root-out:ro user-out:uo root-in:ri user-in:ui root-out:bin/ro root-in:bin/ri user-in:bin/ui"

# Builds the capsule's tree under BASE/app (with the outside directories BASE/out/*) and the
# unrelated twin under BASE/free (BASE/freeout/*).
build() { # BASE TREE OUTDIR
    base=$1 tree=$2 outdir=$3
    # Old trees are moved aside, not removed: busybox rm can't remove paths past PATH_MAX.
    for old in "$tree" "$outdir"; do
        if [ -e "$base/$old" ]; then
            GRAVE=$((GRAVE + 1))
            mkdir -p "$base/.graveyard"
            mv "$base/$old" "$base/.graveyard/$GRAVE" || die "cannot move $base/$old aside"
        fi
    done
    for c in $CONFIGS; do
        a=${c%%:*} sub=${c#*:}
        kind=root
        case "$a" in user-*) kind=user ;; esac
        mkset "$base/$tree/$sub" "$base/$outdir/$sub" $kind
    done
    mkdir -p "$base/$tree/etc"
    echo conf >"$base/$tree/etc/app.conf"
    mkid "$base/$tree/ro"
    mkid "$base/$tree/uo"
    # A hard link OUTSIDE the tree to a file in it, made before the seal (in a directory
    # anybody may write, so that removing and renaming it are judged by the guard alone).
    for s in ro uo; do
        rm -f "$base/$outdir/$s/hl"
        ln "$base/$tree/$s/id/hl" "$base/$outdir/$s/hl"
    done
}

# ----------------------------------------------------------------------------- the matrix
# t LABEL OP ARGS...: one operation by $a, judged by $phase:
#   before  on the capsule's tree, before the seal: must be allowed ($ctl)
#   free    on the unrelated tree, after the seal: must be allowed ($ctl)
#   sealed  on the sealed tree: must be $want
# $ctl is `allowed` except where the filesystem can't do the operation at all (user.*
# xattrs on tmpfs before 6.6), which the LSM hook still precedes.
# The operations are queued in $WORK/ops (label, expected result, operation) and run by
# flush in one capsule-probe batch process per actor: one exec instead of dozens.
ctl=allowed
t() {
    label=$1
    shift
    case "$phase" in
        before) q "$who: $label ($where, before the seal)" "$ctl" "$@" ;;
        free) q "$who: $label (unrelated tree, after the seal)" "$ctl" "$@" ;;
        sealed)
            # Allowed means: as without the guard (the control), e.g. EOPNOTSUPP for user.*
            # xattrs on tmpfs.
            e=$want
            [ "$want" = allowed ] && e=$ctl
            q "$who: $label ($where, sealed)" "$e" "$@"
            ;;
    esac
}
# The same, for an operation that must stay allowed in every phase (reading).
t_read() {
    label=$1
    shift
    q "$who: $label ($where, $phase)" allowed "$@"
}
q() { # LABEL EXPECTED OP ARGS...
    l=$1 e=$2
    shift 2
    printf '%s\t%s\t%s\n' "$l" "$e" "$*" >>"$WORK/ops"
}
flush() { # ACTOR: runs the queued operations as ACTOR and judges them
    [ -s "$WORK/ops" ] || return 0
    cut -f3 "$WORK/ops" >"$WORK/ops.in"
    as "$1" capsule-probe batch <"$WORK/ops.in" >"$WORK/ops.out"
    paste "$WORK/ops" "$WORK/ops.out" >"$WORK/ops.all"
    while IFS=$TAB read -r label want_ _ got; do
        expect "$label" "$want_" "$got"
    done <"$WORK/ops.all"
    : >"$WORK/ops"
}
tc() { # CONTROL_RESULT LABEL OP ARGS...
    ctl=$1
    shift
    t "$@"
    ctl=allowed
}

# Every operation of the brief, by actor $a on directory T with outside directory O.
matrix() { # T O
    T=$1 O=$2
    t "open O_WRONLY" open-wronly "$T/f.wronly"
    t "open O_RDWR" open-rdwr "$T/f.rdwr"
    t "open O_WRONLY|O_TRUNC" open-trunc "$T/f.trunc"
    t "open O_RDONLY|O_TRUNC" open-rdonly-trunc "$T/f.rotrunc"
    t "open O_WRONLY|O_APPEND" open-append "$T/f.append"
    t_read "open O_RDONLY" open-rdonly "$T/f.read"
    t "truncate" truncate "$T/f.truncate"
    t "create a file" create "$T/n.create"
    t "O_TMPFILE in the directory" tmpfile "$T"
    t "O_TMPFILE elsewhere, linkat into the directory" tmpfile-link "$O" "$T/n.tmplink"
    t "mkdir" mkdir "$T/n.mkdir"
    t "mkfifo" mkfifo "$T/n.fifo"
    case "$a" in root-*) t "mknod a char device" mknod-chr "$T/n.chr" ;; esac
    t "symlink" symlink f.read "$T/n.symlink"
    t "hard link within" link "$T/f.link_src" "$T/n.link"
    t "hard link from the tree to outside" link "$T/f.link_out" "$O/n.link_out"
    t "hard link from outside into the tree" link "$O/o.link_src" "$T/n.link_in"
    t "unlink" unlink "$T/f.unlink"
    t "rmdir" rmdir "$T/d.rmdir"
    t "rename within" rename "$T/f.ren_within" "$T/n.renamed"
    t "rename a directory within" rename "$T/d.ren" "$T/n.dren"
    t "rename out of the tree" rename "$T/f.ren_out" "$O/n.ren_out"
    t "rename into the tree" rename "$O/o.ren_in" "$T/n.ren_in"
    t "rename into the tree, replacing" rename "$O/o.replace" "$T/f.replaced"
    t "RENAME_EXCHANGE with outside" exchange "$T/f.exch" "$O/o.exch"
    t "RENAME_EXCHANGE within" exchange "$T/f.exch2" "$T/f.exch3"
    t "utimes now" utimes "$T/f.utimes"
    tc "$XCTL" "setxattr user.*" setxattr "$T/f.xuser" user.test
    case "$a" in
        root-*)
            t "chmod" chmod "$T/f.chmod" 0600
            t "chmod a directory" chmod "$T/d.chmod" 0700
            t "chown" chown "$T/f.chown" 1000 1000
            t "lchown a symlink" lchown "$T/s.link" 1000 1000
            t "utimes explicit" utimes-set "$T/f.utimes_set"
            t "setxattr security.capability" setxattr "$T/f.xcap" security.capability
            t "removexattr security.capability" removexattr "$T/f.xrm" security.capability
            ;;
        *)
            t "chmod (own file)" chmod "$T/f.chmod" 0600
            t "chmod a directory (own)" chmod "$T/d.chmod" 0700
            t "chown (own file, to itself)" chown "$T/f.chown" 1000 1000
            t "utimes explicit (own file)" utimes-set "$T/f.utimes_set"
            tc "$XCTL" "removexattr user.*" removexattr "$T/f.xrm" user.test
            ;;
    esac
    t "FS_IOC_SETFLAGS on an O_RDONLY fd" setflags "$T/f.flags"
    t "FS_IOC_FSSETXATTR on an O_RDONLY fd" fssetxattr "$T/f.fsx"
}

# What the sealed tree answers to each configuration.
sealed_want() { # ACTOR SUB
    case "$2" in bin/*) echo refused && return ;; esac # frozen: everybody
    case "$1" in
        root-out) [ "$LEVEL" = 0 ] && echo allowed || echo refused ;;
        user-out) echo refused ;;
        *) echo allowed ;;
    esac
}

run_matrices() { # BASE TREE OUTDIR
    for c in $CONFIGS; do
        a=${c%%:*} sub=${c#*:}
        where="tree $sub"
        case "$sub" in bin/*) where="frozen $sub" ;; esac
        want=$(sealed_want "$a" "$sub")
        who=$(describe "$a")
        matrix "$1/$2/$sub" "$1/$3/$sub"
        flush "$a"
    done
}

# ----------------------------------------------------------------------------- identity
# The same inode by other paths, for outside actor $a on DIR/id (DIR = BASE/app/ro or /uo).
identity() { # DIR OUTDIR SUB
    dir=$1 outdir=$2 sub=$3
    id=$dir/id
    who=$(describe "$a")
    case "$phase" in
        sealed) w=$want ;;
        *) w=allowed ;;
    esac
    tag=$phase-$sub
    mkdir -p "/mnt/bind-$tag" && : >"/mnt/file-$tag"
    if mount --bind "$id" "/mnt/bind-$tag" && mount --bind "$id/bindfile" "/mnt/file-$tag"; then
        expect "$who: write through a bind mount of a directory ($phase)" "$w" \
            "$(probe "$a" open-wronly "/mnt/bind-$tag/bind")"
        expect "$who: create through a bind mount of a directory ($phase)" "$w" \
            "$(probe "$a" create "/mnt/bind-$tag/n.bind")"
        expect "$who: write through a bind mount of the file ($phase)" "$w" \
            "$(probe "$a" open-wronly "/mnt/file-$tag")"
        umount "/mnt/file-$tag" "/mnt/bind-$tag"
    else
        bad "$who: bind mounts of $id ($phase): mount --bind failed"
    fi
    # Another process of the same user (so that its /proc/PID/root may be followed).
    rm -f "$WORK/sleeper.pid"
    as "$a" sh -c 'echo $$ >"$1.tmp" && mv "$1.tmp" "$1" && exec sleep 600' sh \
        "$WORK/sleeper.pid" &
    i=0
    while [ ! -s "$WORK/sleeper.pid" ] && [ $i -lt 100 ]; do
        sleep 0.05
        i=$((i + 1))
    done
    sleeper=$(cat "$WORK/sleeper.pid" 2>/dev/null)
    expect "$who: write through /proc/PID/root ($phase)" "$w" \
        "$(probe "$a" open-wronly "/proc/${sleeper:-none}/root$id/proc")"
    [ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null
    wait
    expect "$who: reopen for write through /proc/self/fd/N ($phase)" "$w" \
        "$(probe "$a" open-wronly /proc/self/fd/5 5<"$id/fd")"
    expect "$who: write 200 directories down ($phase)" "$w" \
        "$(probe "$a" open-wronly "$id$DEEP/leaf")"
    expect "$who: create 200 directories down ($phase)" "$w" \
        "$(probe "$a" create "$id$DEEP/n.deep")"
    expect "$who: write below a path longer than PATH_MAX, reached with cd ($phase)" "$w" \
        "$(in_long "$dir" as "$a" capsule-probe open-wronly leaf)"
    expect "$who: create below a path longer than PATH_MAX ($phase)" "$w" \
        "$(in_long "$dir" as "$a" capsule-probe create n.long)"
    hl=$outdir/$sub/hl
    expect "$who: write through a hard link made outside the tree before the seal ($phase)" \
        "$w" "$(probe "$a" open-wronly "$hl")"
    # Its other name is in a directory of no capsule, on the tree's filesystem: renaming or
    # removing it changes the protected inode (its link count) all the same.
    expect "$who: rename the hard link made outside the tree, within its directory ($phase)" \
        "$w" "$(probe "$a" rename "$hl" "$hl.mv")"
    [ -e "$hl.mv" ] && mv "$hl.mv" "$hl"
    expect "$who: unlink the hard link made outside the tree ($phase)" \
        "$w" "$(probe "$a" unlink "$hl")"
    [ -e "$hl" ] || ln "$id/hl" "$hl"
}

run_identity() { # BASE TREE OUTDIR
    for c in root-out:ro user-out:uo; do
        a=${c%%:*} sub=${c#*:}
        want=$(sealed_want "$a" "$sub")
        identity "$1/$2/$sub" "$1/$3" "$sub"
    done
}

# ----------------------------------------------------------------------------- prefd
# Descriptors opened (and mapped) before the seal, used after it: one capsule-probe prefd per
# configuration, started before the seal and released by $WORK/go.
PREFD_CONFIGS="root-out:ro user-out:uo root-in:ri user-in:ui root-in:bin/ri"
METHODS="write pwrite sendfile copy_file_range splice io_uring ftruncate fallocate mmap mprotect"

prefd_start() { # BASE TREE LABEL
    rm -f "$WORK"/go "$WORK"/ready.* "$WORK"/prefd.*
    n=0
    for c in $PREFD_CONFIGS; do
        a=${c%%:*} sub=${c#*:}
        as "$a" capsule-probe prefd "$1/$2/$sub/pf" "$WORK/ready.$n" "$WORK/go" \
            >"$WORK/prefd.$n" &
        n=$((n + 1))
    done
    i=0
    while [ $i -lt 600 ]; do
        all=1
        k=0
        while [ $k -lt $n ]; do
            [ -e "$WORK/ready.$k" ] || all=
            k=$((k + 1))
        done
        [ -n "$all" ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
    bad "prefd ($3): not every probe got ready: $(cat "$WORK"/prefd.* 2>/dev/null | tr '\n' '|')"
}

prefd_check() { # PHASE_LABEL MODE(before|free|sealed)
    touch "$WORK/go"
    wait
    n=0
    for c in $PREFD_CONFIGS; do
        a=${c%%:*} sub=${c#*:}
        who=$(describe "$a")
        out=$(cat "$WORK/prefd.$n")
        case "$2" in
            sealed) w=$(sealed_want "$a" "$sub") ;;
            *) w=allowed ;;
        esac
        for m in $METHODS; do
            got=$(printf '%s\n' "$out" | sed -n "s/^$m: //p")
            expect "$who: $m through a descriptor opened before the seal ($1, $sub)" "$w" "$got"
        done
        got=$(printf '%s\n' "$out" | sed -n "s/^read: //p")
        expect "$who: read through a descriptor opened before the seal ($1, $sub)" allowed "$got"
        got=$(printf '%s\n' "$out" | sed -n "s/^premapped: //p")
        if [ "$2" = sealed ] && [ "$w" = refused ]; then
            note "$who: store into a writable shared mapping made before the seal ($sub): $got (no LSM hook sees page stores)"
        fi
        n=$((n + 1))
    done
}

# ----------------------------------------------------------------------------- created inside
# What inside processes create after the seal belongs to the capsule: refused to outside ones.
created_inside() { # BASE TREE OUTDIR MODE(free|sealed)
    T=$1/$2/ri O=$1/$3/ri U=$1/$2/ui
    mode=$4
    a=root-in
    mkdir -p "$O/o.dirmv" && echo data >"$O/o.dirmv/child" && echo data >"$O/o.mvin" &&
        echo data >"$O/o.lnin" && chmod 0666 "$O/o.dirmv/child" "$O/o.mvin" "$O/o.lnin"
    for step in "create $T/c.file" "mkdir $T/c.dir" "create $T/c.dir/f" "mkdir $T/c.dir/sub" \
        "mkfifo $T/c.fifo" "symlink f.read $T/c.sym" "tmpfile-link $T $T/c.tmp" \
        "rename $O/o.mvin $T/c.mvin" "link $O/o.lnin $T/c.lnin" \
        "create $T/c.within" "rename $T/c.within $T/c.within2" \
        "create $T/c.across" "rename $T/c.across $T/c.dir/c.across" \
        "create $T/c.mvsrc" "rename $T/c.mvsrc $O/c.mvout" \
        "create $T/c.lnsrc" "link $T/c.lnsrc $O/c.lnout" \
        "create $T/c.xa" "create $O/c.xb" "exchange $T/c.xa $O/c.xb"; do
        # shellcheck disable=SC2086 # word splitting of the step is wanted
        expect "root inside: $step after the seal ($mode)" allowed "$(probe root-in $step)"
    done
    # A directory from outside can't be renamed in (what is below it would not join the
    # capsule): EXDEV, and mv(1) copies it instead.
    if [ "$mode" = sealed ]; then
        expect "root inside: rename a directory from outside into the tree answers EXDEV" \
            "error: EXDEV" "$(probe root-in rename "$O/o.dirmv" "$T/c.dirmv")"
        as root-in mv "$O/o.dirmv" "$T/c.dirmv"
        expect "root inside: mv of a directory from outside into the tree (copies it)" \
            "exit 0" "exit $?"
    else
        expect "root inside: rename a directory from outside into the tree ($mode)" allowed \
            "$(probe root-in rename "$O/o.dirmv" "$T/c.dirmv")"
    fi
    expect "user inside: create $U/c.file after the seal ($mode)" allowed \
        "$(probe user-in create "$U/c.file")"
    expect "user inside: mkdir $U/c.dir after the seal ($mode)" allowed \
        "$(probe user-in mkdir "$U/c.dir")"
    if [ "$mode" = sealed ]; then
        w=$(sealed_want root-out ri)
        wu=refused
    else
        w=allowed
        wu=allowed
    fi
    a=root-out
    # On tmpfs a file made inside has no entry of its own: it is protected through the
    # directory it is named in, and gets an entry when it leaves it (renamed to another
    # directory, in the tree or out of it, or exchanged with a file outside) or gets a second
    # name (linked, here out of the tree).
    for step in "open-wronly $T/c.within2" "truncate $T/c.within2" "utimes $T/c.within2" \
        "open-wronly $T/c.dir/c.across" "open-wronly $O/c.mvout" "chmod $O/c.mvout 0600" \
        "open-wronly $O/c.lnout" "open-wronly $T/c.lnsrc" "link $T/c.file $O/n.lnout" \
        "open-wronly $O/c.xb" "open-wronly $T/c.xa" \
        "open-wronly $T/c.file" "create $T/c.dir/new" "open-wronly $T/c.dir/f" \
        "create $T/c.dir/sub/new" "chmod $T/c.dir 0700" "unlink $T/c.fifo" \
        "lchown $T/c.sym 0 0" "open-wronly $T/c.tmp" "open-wronly $T/c.mvin" \
        "open-wronly $T/c.lnin" "open-wronly $O/o.lnin" "rename $T/c.file $O/n.out" \
        "open-wronly $T/c.dirmv/child"; do
        # shellcheck disable=SC2086
        expect "root outside: $step, created or brought in by an inside process ($mode)" "$w" \
            "$(probe root-out $step)"
    done
    # The user outside is the owner of these (it made them from inside): ownership is no pass.
    expect "user outside: open-wronly its own file made inside ($mode)" "$wu" \
        "$(probe user-out open-wronly "$U/c.file")"
    expect "user outside: create in its own directory made inside ($mode)" "$wu" \
        "$(probe user-out create "$U/c.dir/new")"
    expect "user outside: chmod its own file made inside ($mode)" "$wu" \
        "$(probe user-out chmod "$U/c.file" 0600)"
}

# File handles: open_by_handle_at finds the inode, and on a disk filesystem, once the kernel
# dropped the name from its caches, it makes a dentry without a directory (which is why files
# made inside get an entry of their own there; on tmpfs their directory protects them, and
# tmpfs handles always come back with their name). Unrelated files stay writable.
handles() { # BASE
    T=$1/app/ri F=$1/free/ri
    w=$(sealed_want root-out ri)
    # What the kernel names the file a handle brings back: on ext4, after the caches were
    # dropped, "/" (a dentry without its directory: the checks below run without it).
    name=$(capsule-probe handle-readlink "$T/c.within2" 2>>"$LOG")
    if [ "$scenario" = ext4 ]; then
        expect "ext4: a file handle comes back without the file's directory" / "$name"
    else
        expect "tmpfs: a file handle comes back with the file's name" "$T/c.within2" "$name"
    fi
    expect "root outside: open_by_handle_at(O_WRONLY) of a sealed file" "$w" \
        "$(probe root-out handle-open-wronly "$1/app/ro/f.wronly")"
    expect "root outside: open_by_handle_at(O_WRONLY) of a file made inside" "$w" \
        "$(probe root-out handle-open-wronly "$T/c.within2")"
    expect "root outside: open_by_handle_at(O_WRONLY) of an unrelated file on the capsule's filesystem" \
        allowed "$(probe root-out handle-open-wronly "$F/c.within2")"
    expect "root inside: open_by_handle_at(O_WRONLY) of a file it made" allowed \
        "$(probe root-in handle-open-wronly "$T/c.within2")"
}

# overlayfs opens the real file behind the overlay's path (the kernel's file then has the
# real inode and the overlay's dentry): an overlay with the sealed tree as its upper layer
# must not be a way around the guard, for the files sealed and for those made inside.
overlay() { # BASE
    w=$(sealed_want root-out ri)
    mkdir -p /ovl/lower /ovl/mnt "$1/out/ovl.work"
    if ! mount -t overlay ovl -o "lowerdir=/ovl/lower,upperdir=$1/app/ri,workdir=$1/out/ovl.work" \
        /ovl/mnt 2>>"$LOG"; then
        bad "overlay: cannot mount an overlay with upper layer $1/app/ri (see the log)"
        return
    fi
    for f in f.wronly c.within2; do
        [ -e "/ovl/mnt/$f" ] || bad "overlay: /ovl/mnt/$f is missing"
        expect "root outside: open-wronly $f through an overlay whose upper layer is the tree" \
            "$w" "$(probe root-out open-wronly "/ovl/mnt/$f")"
    done
    expect "root outside: read c.within2 through the overlay" allowed \
        "$(probe root-out open-rdonly /ovl/mnt/c.within2)"
    umount /ovl/mnt
}

# The same, mounted by an unprivileged user outside, in a user namespace of its own (overlayfs
# allows that since 5.11): the real file is opened with the user's credentials, which are
# refused on the sealed tree at every level. The control: the same over the unrelated tree.
overlay_userns() { # BASE
    mkdir -p /ovl/ulower /ovl/umnt
    for tree in free app; do
        work=$1/${tree}out/uo/ovl.work
        [ "$tree" = app ] && work=$1/out/uo/ovl.work
        mkdir -p "$work" && chown 1000:1000 "$work"
        want=refused
        [ "$tree" = free ] && want=allowed
        for f in f.wronly c.file; do
            r=$(runas user unshare -rm sh -c "mount -t overlay ovl -o userxattr,lowerdir=/ovl/ulower,upperdir=$1/$tree/ui,workdir=$work /ovl/umnt && exec capsule-probe open-wronly /ovl/umnt/$f" 2>>"$LOG")
            expect "user outside: open-wronly $tree/ui/$f through an overlay it mounted in a user namespace of its own" \
                "$want" "$r"
        done
    done
}

# ----------------------------------------------------------------------------- sealtool
seal_app() { # TREE_ROOT
    out=$(sealtool seal app --cgroup "$CG" --frozen 'bin/**' 2>&1)
    rc=$?
    echo "$out" >>"$LOG"
    expect "sealtool seal app exits 0" "exit 0" "exit $rc"
    contains "sealtool seal app says it is enforced" "$out" "enforced by fsguard"
}

level_checks() { # LEVEL
    expect "sealtool level prints $1" "$1" "$(sealtool level 2>>"$LOG")"
    out=$(sealtool status 2>&1)
    rc=$?
    echo "$out" >>"$LOG"
    expect "sealtool status exits 0" "exit 0" "exit $rc"
    contains "sealtool status: enforcement active" "$out" "enforcement  active"
    contains "sealtool status: level $1" "$out" "level        $1"
    contains "sealtool status: capsule app enforced" "$out" "enforced (slot"
}

# The guard's count of inodes added by inside creation (sealtool status).
inherited() {
    sealtool status 2>>"$LOG" | sed -n 's/.*inodes added by inside creation \([0-9]*\).*/\1/p'
}

# The guard's count of entries released (by a last unlink; rmdir releases none; sealtool status).
released() {
    sealtool status 2>>"$LOG" | sed -n 's/.*, released \([0-9]*\).*/\1/p'
}

# rmdir inside releases no directory's entry: the filesystem says ENOTEMPTY only after the
# hook (and on one counting one link per directory, releasing on the link count let an
# inside rmdir strip a non-empty directory of its protection, see the onelink scenario);
# a file unlinked in an empty directory while still open keeps it as its directory.
dir_release() { # BASE
    for tree in free app; do
        T=$1/$tree/ri
        w=$(sealed_want root-out ri)
        mode=sealed
        [ "$tree" = free ] && w=allowed mode=free
        probe root-in mkdir "$T/c.rmfull" >/dev/null
        probe root-in create "$T/c.rmfull/f" >/dev/null
        before=$(released)
        expect "root inside: rmdir of a non-empty directory it made answers ENOTEMPTY ($mode)" \
            "error: ENOTEMPTY" "$(probe root-in rmdir "$T/c.rmfull")"
        count "the failed rmdir releases no entry ($mode)" "$before" "$(released)"
        expect "root outside: create in a directory after an inside rmdir of it failed ($mode)" \
            "$w" "$(probe root-out create "$T/c.rmfull/n.after")"
        expect "root outside: write a file in a directory after an inside rmdir of it failed ($mode)" \
            "$w" "$(probe root-out open-wronly "$T/c.rmfull/f")"
        # A file made inside, held open from outside (reading is allowed) while it is
        # unlinked and its directory removed: still the capsule's, reopened through
        # /proc/PID/fd.
        probe root-in mkdir "$T/c.rmheld" >/dev/null
        probe root-in create "$T/c.rmheld/f" >/dev/null
        sleep 600 <"$T/c.rmheld/f" &
        holder=$!
        i=0
        while [ "$(readlink "/proc/$holder/fd/0")" != "$T/c.rmheld/f" ] && [ $i -lt 200 ]; do
            sleep 0.05
            i=$((i + 1))
        done
        expect "root inside: unlink a file held open from outside ($mode)" allowed \
            "$(probe root-in unlink "$T/c.rmheld/f")"
        before=$(released)
        expect "root inside: rmdir of the emptied directory ($mode)" allowed \
            "$(probe root-in rmdir "$T/c.rmheld")"
        count "the rmdir of an empty directory releases no entry ($mode)" "$before" "$(released)"
        expect "root outside: reopen for writing the unlinked file of a removed directory it holds ($mode)" \
            "$w" "$(probe root-out open-wronly "/proc/$holder/fd/0")"
        kill "$holder"
        wait "$holder" 2>/dev/null
    done
}

# ----------------------------------------------------------------------------- full map
# The guard's inode map full: what inside processes create in, move or link into their tree
# could not be protected, so it is refused (ENOSPC, rule "full") instead of being made open
# to outside processes. Controls: the same operations in the unrelated tree, and after one
# entry is freed.
full_map() { # BASE
    T=$1/app/ri O=$1/out/ri F=$1/free/ri
    for f in o.full.mv o.full.ln; do echo data >"$O/$f" && chmod 0666 "$O/$f"; done
    # The scenario's guard was loaded with CAPSULE_FSGUARD_INODES=65536 (vm_fsguard.rs).
    out=$(fsguard-loadbench 65536 2>&1)
    echo "$out" >>"$LOG"
    contains "fsguard-loadbench fills the inodes map (the guard rejects what does not fit)" \
        "$out" "or its inode map was full"
    sleep 1 # a new second of refusal records (they are rate-limited per CPU)
    a=root-in
    # On tmpfs a file made inside needs no entry of its own (its directory protects it): made
    # as usual, and protected from outside all the same. Elsewhere it needs one.
    want_file=allowed
    [ "$scenario" = ext4 ] && want_file="error: ENOSPC"
    for step in "create $T/n.nf.file" "mkfifo $T/n.nf.fifo" "symlink f.read $T/n.nf.sym"; do
        # shellcheck disable=SC2086 # word splitting of the step is wanted
        expect "root inside, inode map full: $step ($scenario)" "$want_file" \
            "$(probe root-in $step)"
    done
    # What needs an entry answers ENOSPC: a directory, an inode from outside, an O_TMPFILE,
    # and (tmpfs) a file made inside that leaves its directory or gets a second name.
    enospc() { # STEP...
        for step in "$@"; do
            # shellcheck disable=SC2086 # word splitting of the step is wanted
            expect "root inside, inode map full: $step answers ENOSPC" "error: ENOSPC" \
                "$(probe root-in $step)"
        done
    }
    enospc "mkdir $T/n.full.dir" "rename $O/o.full.mv $T/n.full.mv" "link $O/o.full.ln $T/n.full.ln"
    not_made="n.full.dir n.full.tmp n.full.mv n.full.ln"
    if [ "$scenario" = ext4 ]; then
        not_made="$not_made n.nf.file n.nf.fifo n.nf.sym"
    else
        expect "root outside, inode map full: write a file made inside meanwhile" refused \
            "$(probe root-out open-wronly "$T/n.nf.file")"
        expect "root outside, inode map full: unlink a fifo made inside meanwhile" refused \
            "$(probe root-out unlink "$T/n.nf.fifo")"
        enospc "rename $T/n.nf.file $T/c.dir/n.full.across" "link $T/n.nf.file $T/n.full.ln2"
        not_made="$not_made n.full.ln2 c.dir/n.full.across"
    fi
    expect "root inside, inode map full: O_TMPFILE in the tree answers ENOSPC" \
        "error: setup O_TMPFILE: ENOSPC" "$(probe root-in tmpfile-link "$T" "$T/n.full.tmp")"
    for f in $not_made; do
        if [ -e "$T/$f" ] || [ -L "$T/$f" ]; then bad "inode map full: $T/$f was made"; else ok "inode map full: $T/$f was not made"; fi
    done
    [ -e "$O/o.full.mv" ] && ok "inode map full: the refused rename left $O/o.full.mv in place" ||
        bad "inode map full: the refused rename moved $O/o.full.mv"
    if [ "$scenario" != ext4 ]; then
        [ -e "$T/n.nf.file" ] && ok "inode map full: the refused rename left $T/n.nf.file in place" ||
            bad "inode map full: the refused rename moved $T/n.nf.file"
        expect "root outside, inode map full: write the file whose move was refused" refused \
            "$(probe root-out open-wronly "$T/n.nf.file")"
    fi
    expect "user inside, inode map full: mkdir in the tree answers ENOSPC" "error: ENOSPC" \
        "$(probe user-in mkdir "$1/app/ui/n.full.dir")"
    expect "root inside, inode map full: create in the unrelated tree" allowed \
        "$(probe root-in create "$F/n.full")"
    expect "root inside, inode map full: rename into the unrelated tree" allowed \
        "$(probe root-in rename "$O/o.full.mv" "$F/n.full.mv")"
    expect "root outside, inode map full: create in the unrelated tree" allowed \
        "$(probe root-out create "$F/n.full.out")"
    expect "root inside, inode map full: write a file it made" allowed \
        "$(probe root-in open-wronly "$T/c.dir/f")"
    expect "root outside, inode map full: write still refused" refused \
        "$(probe root-out open-wronly "$T/c.dir/f")"
    # Unlinking a file with an entry of its own (one moved in) frees it: room for one again.
    expect "root inside, inode map full: unlink a file it moved in" allowed \
        "$(probe root-in unlink "$T/c.mvin")"
    expect "root inside, one entry freed: mkdir in the tree" allowed \
        "$(probe root-in mkdir "$T/n.room")"
    expect "root outside: create in the directory made in the freed room" refused \
        "$(probe root-out create "$T/n.room/f")"
    expect "root inside, map full again: mkdir in the tree answers ENOSPC" "error: ENOSPC" \
        "$(probe root-in mkdir "$T/n.full2")"
    # The refusal's record (the collector that the seal started writes it).
    i=0 line=
    while [ "$i" -lt 40 ]; do
        line=$(sealtool audit --json 2>>"$LOG" | grep '"rule":"full"' | head -n 1)
        [ -n "$line" ] && break
        sleep 0.5
        i=$((i + 1))
    done
    echo "$line" >>"$LOG"
    contains "inode map full: the refusal is recorded for capsule app" "$line" '"capsule":"app"'
    contains "inode map full: the record names the operation" "$line" '"op":"create"'
    contains "inode map full: the record names the directory" "$line" "\"path\":\"$T\""
}

# ----------------------------------------------------------------------------- scenarios
setup_fs() {
    case "$scenario" in
        ext4 | onelink)
            grep -q ' /disk ext4 ' /proc/mounts || die "/disk is not mounted (run with --disk)"
            BASE=/disk/base
            rm -rf "$BASE"
            mkdir -p "$BASE"
            ;;
        *)
            mkdir -p /jails
            mount -t tmpfs -o mode=0755 tmpfs /jails || die "cannot mount tmpfs on /jails"
            BASE=/jails
            ;;
    esac
    mkdir -p "$CG" || die "cannot create $CG"
    # level0: after `sealtool level 0` has loaded the guard (scenario_enforced).
    if [ "$scenario" != level0 ]; then
        sysbase_setup || die "cannot seal the guest's programs as bases"
    fi
    inside_start "$CG" || die "cannot start the inside agent in $CG"
    # user.* xattrs: tmpfs has them only from Linux 6.6; the LSM hook runs before the fs.
    echo data >"$BASE/.xattr-test"
    XCTL=$(capsule-probe setxattr "$BASE/.xattr-test" user.test 2>>"$LOG")
    rm -f "$BASE/.xattr-test"
    [ "$XCTL" = allowed ] ||
        note "user.* xattrs on $BASE: $XCTL without the guard; the sealed tree must answer refused"
}

# The dev_t check: on a block device stat()'s st_dev and the kernel's s_dev differ.
ext4_identity() {
    majmin=$(stat -c '%t:%T' /dev/vda 2>/dev/null)
    dev=$(stat -c '%d' "$BASE")
    major=$((dev >> 8 & 0xfff))
    if [ "$major" -gt 0 ]; then
        ok "ext4: $BASE is on a block device (st_dev $dev, major $major, /dev/vda $majmin): st_dev differs from the kernel's dev_t"
    else
        bad "ext4: $BASE has major 0 (st_dev $dev): the dev_t conversion is not exercised"
    fi
}

# A freed inode number that comes back for an unrelated file must not stay protected. ext4
# hands out the lowest free inode of the group, so the next file made in the same flex group
# gets the number just freed.
inode_reuse() { # BASE
    other=$1/other
    mkdir -p "$other" && chmod 0777 "$other"
    for kind in dir file renamed; do
        rm -rf "$1/app/ri/r.$kind" "$1/app/ri/r.victim" "$1/out/ri/r.src"
        case "$kind" in
            dir)
                probe root-in mkdir "$1/app/ri/r.dir" >/dev/null
                gone=$(stat -c %i "$1/app/ri/r.dir")
                r=$(probe root-in rmdir "$1/app/ri/r.dir")
                ;;
            file)
                probe root-in create "$1/app/ri/r.file" >/dev/null
                gone=$(stat -c %i "$1/app/ri/r.file")
                r=$(probe root-in unlink "$1/app/ri/r.file")
                ;;
            renamed)
                probe root-in create "$1/app/ri/r.victim" >/dev/null
                gone=$(stat -c %i "$1/app/ri/r.victim")
                echo data >"$1/out/ri/r.src"
                r=$(probe root-in rename "$1/out/ri/r.src" "$1/app/ri/r.victim")
                ;;
        esac
        [ "$r" = allowed ] || {
            bad "inode reuse ($kind): removing the inside inode: $r"
            continue
        }
        found=
        i=0
        while [ $i -lt 64 ]; do
            echo data >"$other/f.$kind.$i"
            if [ "$(stat -c %i "$other/f.$kind.$i")" = "$gone" ]; then
                found=$other/f.$kind.$i
                break
            fi
            i=$((i + 1))
        done
        if [ -z "$found" ]; then
            note "inode reuse ($kind): inode $gone did not come back within 64 files; not checked"
            continue
        fi
        expect "root outside: write a new unrelated file that got the inode number of a $kind removed inside (ino $gone)" \
            allowed "$(probe root-out open-wronly "$found")"
    done
}

scenario_enforced() {
    setup_fs
    base=$BASE
    [ "$scenario" = ext4 ] && ext4_identity
    LEVEL=1
    if [ "$scenario" = level0 ]; then
        LEVEL=0
        out=$(sealtool level 0 2>&1)
        rc=$?
        echo "$out" >>"$LOG"
        expect "sealtool level 0 loads the guard at level 0" "exit 0" "exit $rc"
        sysbase_setup || die "cannot seal the guest's programs as bases"
    fi

    # 1. Before the seal: every operation works on the tree's paths.
    build "$base" app out
    phase=before
    run_matrices "$base" app out
    run_identity "$base" app out
    prefd_start "$base" app before
    prefd_check "before the seal" before

    # 2. Fresh trees: the capsule's and an unrelated twin; register, hold descriptors, seal.
    build "$base" app out
    build "$base" free freeout
    expect_rc "sealtool register $base/app" 0 sealtool register "$base/app"
    prefd_start "$base" app sealed
    seal_app
    for h in ${FSGUARD_SUITE_DETACH:-}; do
        if rm "/sys/fs/bpf/fsguard/link_fsguard_$h"; then
            note "mutation: hook $h detached"
        else
            bad "mutation: hook $h could not be detached (use the level0 scenario)"
        fi
    done
    level_checks $LEVEL

    # 3. After the seal.
    prefd_check "sealed" sealed
    phase=free
    run_matrices "$base" free freeout
    run_identity "$base" free freeout
    phase=sealed
    run_matrices "$base" app out
    run_identity "$base" app out
    t_read_after() { expect "root outside: read $1 (sealed)" allowed "$(probe root-out open-rdonly "$1")"; }
    t_read_after "$base/app/etc/app.conf"
    created_inside "$base" free freeout free
    created_inside "$base" app out sealed
    handles "$base"
    overlay "$base"
    overlay_userns "$base"
    dir_release "$base"
    # A file made inside moving to another directory of the tree gets an entry of its own
    # there on tmpfs (its new directory would protect it too, so count it); on ext4 it had
    # one already.
    probe root-in create "$base/app/ri/c.across2" >/dev/null
    before=$(inherited)
    expect "root inside: rename a file it made to another directory of its tree" allowed \
        "$(probe root-in rename "$base/app/ri/c.across2" "$base/app/ri/c.dir/c.across2")"
    added=1
    [ "$scenario" = ext4 ] && added=0
    expect "the move gives the file an entry of its own ($scenario: $added)" \
        $((before + added)) "$(inherited)"
    [ "$scenario" = ext4 ] && inode_reuse "$base"

    # A refused O_TMPFILE leaves no entry in the guard's map (the new inode is judged before
    # it would be added to the capsule): the count of inodes added by inside creation stays.
    if [ "$LEVEL" = 1 ]; then
        before=$(inherited)
        for i in 1 2 3; do
            expect "root outside: O_TMPFILE in a sealed directory, try $i" refused \
                "$(probe root-out tmpfile "$base/app/ro")"
        done
        expect "root outside: refused O_TMPFILEs add no inode to the guard" "$before" "$(inherited)"
        expect "root inside: O_TMPFILE in its tree" allowed "$(probe root-in tmpfile "$base/app/ri")"
        expect "root inside: its O_TMPFILE adds an inode to the guard" $((before + 1)) "$(inherited)"
    fi

    # 4. Levels: lowering is refused; in level0, raising to 1 takes root's allowance away.
    if [ "$LEVEL" = 0 ]; then
        # A downgrade in place and back: another build's guard (as far as the maps can
        # tell: a config of another version, an entry written straight into `inodes`, with
        # neither its filesystem in `entry_filesystems` nor its number under a mark) may
        # have added entries this build's shortcuts don't know of. Loaded again, the guard
        # must trust neither shortcut: the file is on a filesystem that had no entry, and
        # numbered above its mark. (Before the upgrade below, which leaves neither shortcut
        # in use.)
        mkdir -p /mnt/downgrade
        mount -t tmpfs -o mode=0777 tmpfs /mnt/downgrade
        echo data >/mnt/downgrade/added && echo data >/mnt/downgrade/other
        chmod 666 /mnt/downgrade/added /mnt/downgrade/other
        expect "user outside: write a file on a filesystem without entries (control)" allowed \
            "$(probe user-out open-wronly /mnt/downgrade/added)"
        # What makes the mark part of this check mean something: the file is numbered above
        # its filesystem's trusted mark (a slot shared with an unmounted filesystem that had
        # entries could hold a higher one).
        fm=$(bpf-probe fs-mark /sys/fs/bpf/fsguard /mnt/downgrade/added 2>>"$LOG")
        if echo "$fm" | awk '$1 == "ino" && $6 == 1 && $4 + 0 < $2 + 0 { ok = 1 } END { exit !ok }'; then
            ok "the file is numbered above its filesystem's trusted mark ($fm)"
        else
            bad "the file is numbered above its filesystem's trusted mark ($fm)"
        fi
        slot=$(sealtool status 2>>"$LOG" | sed -n 's/^capsule *app .*(slot \([0-9]*\)).*/\1/p')
        [ -n "$slot" ] || bad "setup: capsule app's slot, from sealtool status"
        rm -f /sys/fs/bpf/fsguard/link_*
        expect_rc "another build's guard: its config's version" 0 \
            bpf-probe config-version /sys/fs/bpf/fsguard 3
        expect_rc "another build's guard: an entry of capsule app (slot ${slot:-none}) it added" 0 \
            bpf-probe insert-inode /sys/fs/bpf/fsguard /mnt/downgrade/added "${slot:-0}"
        expect_rc "the guard loads again after the downgrade, at level 0" 0 fsguard-loadbench 0 0
        expect "sealtool level prints 0 after the downgrade and back" 0 "$(sealtool level 2>>"$LOG")"
        expect "after the downgrade and back: the file's filesystem has the highest mark" \
            "mark 18446744073709551615 valid 1" \
            "$(bpf-probe fs-mark /sys/fs/bpf/fsguard /mnt/downgrade/added 2>>"$LOG" | cut -d' ' -f3-)"
        expect "user outside, after the downgrade and back: write the file the other guard added" \
            refused "$(probe user-out open-wronly /mnt/downgrade/added)"
        expect "user outside, after the downgrade and back: write its neighbour (control)" \
            allowed "$(probe user-out open-wronly /mnt/downgrade/other)"

        # An in-place upgrade at level 0 from a guard that had neither `entry_filesystems`
        # nor `fs_marks`: the links go, the other maps stay, and the new guard loads over
        # them (the config stays this ABI's: the loader's other-ABI path is the downgrade's
        # above; this is its path for maps new to a reused `inodes`, taken whatever the
        # config). Its new maps never saw the entries in `inodes`, so it must neither count
        # the tree's filesystem as free of them nor trust an inode-number mark below them
        # (the outside hard link's unlink below would then go unexamined). fsguard-loadbench
        # loads it without enforcing the registry's capsules again (which would fill the
        # map), as for capsules an upgrade's enforce skips or has not reached.
        rm -f /sys/fs/bpf/fsguard/link_* /sys/fs/bpf/fsguard/entry_filesystems \
            /sys/fs/bpf/fsguard/fs_marks
        expect_rc "the guard loads again over its pinned maps" 0 fsguard-loadbench 0
        expect "root outside at level 0: create after the seal" allowed \
            "$(probe root-out create "$base/app/ro/n.level0")"
        # Users outside are refused at level 0 too.
        expect "user outside at level 0, after the in-place upgrade: write the hard link made outside the tree" \
            refused "$(probe user-out open-wronly "$base/out/uo/hl")"
        expect_rc "sealtool level 1 raises the level" 0 sealtool level 1
        expect "root outside at level 1, after the in-place upgrade: unlink the hard link made outside the tree" \
            refused "$(probe root-out unlink "$base/out/ro/hl")"
        expect "user outside at level 1, after the in-place upgrade: rename the hard link made outside the tree" \
            refused "$(probe user-out rename "$base/out/uo/hl" "$base/out/uo/hl.mv")"
        expect "sealtool level prints 1 after raising" 1 "$(sealtool level 2>>"$LOG")"
        expect "root outside at level 1: write" refused \
            "$(probe root-out open-wronly "$base/app/ro/f.wronly")"
        expect "root outside at level 1: create" refused \
            "$(probe root-out create "$base/app/ro/n.level1")"
        expect "root inside at level 1: create" allowed \
            "$(probe root-in create "$base/app/ri/n.level1")"
    fi
    expect_rc "sealtool level 0 (lowering) is refused" 2 sealtool level 0
    expect "the level is unchanged after a refused lowering" 1 "$(sealtool level 2>>"$LOG")"

    # 5. The guard's own pins, from level 1 on: removing a link pin would detach a program.
    for pin in link_fsguard_file_open link_fsguard_inode_unlink inodes config; do
        expect "root outside at level 1: remove the guard's pin $pin" refused \
            "$(probe root-out unlink "/sys/fs/bpf/fsguard/$pin")"
        if [ -e "/sys/fs/bpf/fsguard/$pin" ]; then
            ok "the pin $pin is still there"
        else
            bad "the pin $pin is gone"
        fi
    done
    expect "root outside at level 1: write still refused after the pin attempts" refused \
        "$(probe root-out open-wronly "$base/app/ro/f.wronly")"
    out=$(sealtool status 2>&1)
    refusals=$(printf '%s\n' "$out" | sed -n 's/^refusals *\([0-9]*\).*/\1/p')
    if [ "${refusals:-0}" -gt 0 ]; then
        ok "sealtool status counts the refusals ($refusals)"
    else
        bad "sealtool status counts the refusals (expected > 0, got ${refusals:-nothing})"
    fi
    # 6. Last (it fills the guard's map for good): a full inode map fails closed.
    case "$scenario" in level1 | ext4) full_map "$base" ;; esac
}

scenario_nolsm() {
    setup_fs
    lsm=$(cat /sys/kernel/security/lsm)
    case ",$lsm," in
        *,bpf,*) bad "nolsm: the guest was booted with the bpf LSM ($lsm); boot with VM_APPEND=lsm=landlock,yama" ;;
        *) ok "nolsm: the bpf LSM is not active ($lsm)" ;;
    esac
    mkdir -p /jails/app/bin
    echo tool >/jails/app/bin/tool
    echo data >/jails/app/data
    chmod 0666 /jails/app/data
    expect_rc "sealtool register /jails/app" 0 sealtool register /jails/app
    out=$(sealtool seal app --cgroup "$CG" --frozen 'bin/**' 2>&1)
    rc=$?
    echo "$out" >>"$LOG"
    expect "sealtool seal without the bpf LSM exits 3 (sealed, not enforced)" "exit 3" "exit $rc"
    contains "seal says the seal is made" "$out" "sealed app"
    contains "seal says enforcement is NOT active" "$out" "enforcement is NOT active"
    why=$(printf '%s\n' "$out" | sed -n 's/.*enforcement is NOT active: *//p' | head -n 1)
    if [ -n "$why" ]; then ok "seal says why enforcement is not active: $why"; else bad "seal says why enforcement is not active (no reason after the colon)"; fi
    contains "the reason names the BPF LSM" "$out" "BPF LSM"
    out=$(sealtool status 2>&1)
    rc=$?
    echo "$out" >>"$LOG"
    expect "sealtool status exits 3" "exit 3" "exit $rc"
    contains "sealtool status says NOT active" "$out" "enforcement  NOT active"
    contains "sealtool status lists app as NOT enforced" "$out" "NOT enforced"
    out=$(sealtool list 2>&1)
    echo "$out" >>"$LOG"
    line=$(printf '%s\n' "$out" | grep '^app ')
    contains "sealtool list shows app sealed" "$line" "sealed"
    out=$(sealtool register /jails/app 2>&1)
    rc=$?
    echo "$out" >>"$LOG"
    expect "re-registering the sealed capsule is refused" "exit 2" "exit $rc"
    contains "the refusal says it is sealed" "$out" "sealed"
    expect_rc "sealing again is refused" 2 sealtool seal app
    expect_rc "sealtool enforce exits 3" 3 sealtool enforce
    expect_rc "sealtool level 1 exits 3" 3 sealtool level 1
    # Honest: nothing refuses writes, as status said.
    expect "root outside: write (nothing enforces it)" allowed \
        "$(probe root-out open-wronly /jails/app/data)"
    expect "user outside: write (nothing enforces it)" allowed \
        "$(probe user-out open-wronly /jails/app/data)"
}

# A directory whose filesystem counts one link for it (ext4 past 65,000 subdirectories):
# its link count says nothing about being empty, so an inside rmdir of it, refused by ext4
# with ENOTEMPTY after the hook, must not have released its entry.
scenario_onelink() {
    setup_fs
    mkdir -p "$BASE/app/big" && echo data >"$BASE/app/f" || die "cannot make the tree"
    out=$(sealtool register "$BASE/app" --name app --seal --cgroup "$CG" 2>&1)
    rc=$?
    echo "$out" >>"$LOG"
    expect "sealtool register --seal exits 0" "exit 0" "exit $rc"
    contains "the seal is enforced" "$out" "enforced by fsguard"
    # 65,001 subdirectories made inside (each gets an entry, as anything made inside on ext4).
    (cd "$BASE/app/big" && seq 1 65001 | inside xargs mkdir) >>"$LOG" 2>&1
    expect "root inside: 65,001 mkdirs in the sealed tree" 65001 \
        "$(find "$BASE/app/big" -mindepth 1 -maxdepth 1 -type d | wc -l)"
    expect "ext4 counts one link for a directory with 65,001 subdirectories" 1 \
        "$(stat -c %h "$BASE/app/big")"
    before=$(released)
    expect "root inside: rmdir of the one-link directory answers ENOTEMPTY" "error: ENOTEMPTY" \
        "$(probe root-in rmdir "$BASE/app/big")"
    count "the failed rmdir of the one-link directory releases no entry" "$before" "$(released)"
    expect "root outside: create in the one-link directory after the failed rmdir" refused \
        "$(probe root-out create "$BASE/app/big/n.after")"
    echo data >"$BASE/n.src"
    expect "root outside: rename a file into the one-link directory after the failed rmdir" \
        refused "$(probe root-out rename "$BASE/n.src" "$BASE/app/big/n.moved")"
    expect "root inside: create in the one-link directory" allowed \
        "$(probe root-in create "$BASE/app/big/n.inside")"
    expect "root outside: create in an unrelated directory of the disk" allowed \
        "$(probe root-out create "$BASE/n.free")"
}

case "$scenario" in
    nolsm) scenario_nolsm ;;
    onelink) scenario_onelink ;;
    *) scenario_enforced ;;
esac
finish
