#!/bin/sh
# SPDX-License-Identifier: MIT
# Test of what bigfilefs(8) documents for mount(8) and /etc/fstab: mount
# through fuse3's mount helper (`mount -t fuse.bigfilefs DB MNT -o OPTS`,
# which runs `bigfilefs` found in PATH), check that the options reach the
# daemon, commit data; then mount the same database read-only from an fstab
# line (`mount --fstab FILE MNT`) and check the data and the read-only-ness.
# The fstab line has the shape that bigfilefs(8) shows. Last, an fstab line
# for a block server (exec: tests/proto/blockd on the same database, spaces
# written \040, -o timeout): read, write, writeout through it.
# Runs in a private mount namespace; skips (77) if FUSE is unusable here.
set -u
. "${BF_SRCDIR:-$(dirname "$0")/..}/tests/testlib.sh"
bf_setup "$@"
[ -x "${BIGFILECTL:-}" ] || bf_fail "bigfilectl is not built (BIGFILECTL=${BIGFILECTL:-})"
command -v mount.fuse3 >/dev/null 2>&1 || [ -x /sbin/mount.fuse3 ] || bf_skip "mount.fuse3 is not installed"
# mount(8) runs its helpers with no PATH in the environment, so mount.fuse3's
# "/bin/sh -c bigfilefs ..." finds the program only in the shell's default
# PATH (/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin), as an
# installed bigfilefs is. Put the built one first there: bind a directory
# holding a link to it over /usr/local/sbin — in this private mount
# namespace only, gone when the test ends.
# With BF_TEST_INSTALLED=1 (scripts/test-packages.sh), $BIGFILEFS is the
# installed one, which mount must find there by itself.
if [ "${BF_TEST_INSTALLED:-}" = 1 ]; then
    found=$(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; command -v bigfilefs)
    [ "$found" = "$BIGFILEFS" ] || bf_fail "mount would run '$found', not the installed $BIGFILEFS"
else
    [ -d /usr/local/sbin ] || bf_skip "/usr/local/sbin does not exist: cannot put the built bigfilefs in mount's PATH"
    mkdir "$BF_TMP/sbin" && ln -s "$BIGFILEFS" "$BF_TMP/sbin/bigfilefs" &&
        mount --bind "$BF_TMP/sbin" /usr/local/sbin || bf_fail "cannot bind $BF_TMP/sbin over /usr/local/sbin"
fi

# The pid of the daemon serving $BF_MNT (it detached: not our child).
daemon_pid() {
    for d in /proc/[0-9]*; do
        case $( { tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null) in
            *bigfilefs*" $BF_MNT"*) echo "${d#/proc/}"; return 0 ;;
        esac
    done
    return 1
}
# Unmount and wait (10 s at most) for the detached daemon to exit.
umount_detached() {
    pid=$(daemon_pid) || bf_fail "no bigfilefs process serves $BF_MNT"
    umount "$BF_MNT" || bf_fail "umount failed"
    i=0
    while kill -0 "$pid" 2>/dev/null; do
        i=$((i + 1)); [ $i -le 100 ] || bf_fail "bigfilefs did not exit after umount"
        sleep 0.1
    done
}

db=$BF_TMP/fstab.db
f=$BF_MNT/data

echo "--- mount -t fuse.bigfilefs $db $BF_MNT -o blksize=64K,cache=16M"
timeout 20 mount -t fuse.bigfilefs "$db" "$BF_MNT" -o blksize=64K,cache=16M ||
    bf_fail "mount -t fuse.bigfilefs failed"
bf_wait_mounted
type=$(findmnt -n -o FSTYPE "$BF_MNT")
[ "$type" = fuse.bigfilefs ] || bf_fail "mounted with type '$type', expected fuse.bigfilefs"
"$BIGFILECTL" create --size=256K "$f" || bf_fail "bigfilectl create failed"
bs=$(stat -c %o "$f")
[ "$bs" = 65536 ] || bf_fail "block size of a new file is $bs: blksize=64K did not reach the daemon"
printf 'committed through mount.fuse3' | dd of="$f" conv=notrunc status=none || bf_fail "write failed"
"$BIGFILECTL" writeout "$f" || bf_fail "bigfilectl writeout failed"
umount_detached
echo "ok: mount -t fuse.bigfilefs with options"

echo "--- mount --fstab FILE $BF_MNT, line: $db $BF_MNT fuse.bigfilefs defaults,nofail,ro 0 0"
printf '# bigfilefs test fstab\n%s %s fuse.bigfilefs defaults,nofail,ro 0 0\n' "$db" "$BF_MNT" >"$BF_TMP/fstab"
timeout 20 mount --fstab "$BF_TMP/fstab" "$BF_MNT" || bf_fail "mount from the fstab line failed"
bf_wait_mounted
findmnt -n -o OPTIONS "$BF_MNT" | grep -q '^ro\|,ro\b' || bf_fail "the fstab mount is not read-only: $(findmnt -n -o OPTIONS "$BF_MNT")"
got=$(head -c 29 "$f")
[ "$got" = "committed through mount.fuse3" ] || bf_fail "read '$got' from the fstab mount"
[ "$(stat -c %s "$f")" = 262144 ] || bf_fail "size $(stat -c %s "$f"), expected 262144"
if printf x 2>/dev/null >>"$f"; then bf_fail "writing to a file of an ro mount succeeded"; fi
if "$BIGFILECTL" writeout "$f" 2>/dev/null; then bf_fail "writeout on an ro mount succeeded"; fi
umount_detached
echo "ok: fstab line, read-only"

# The command is relative: the server starts again in the detached daemon
# (which changed to /), in the directory mount was run from.
if [ -x "${BF_BUILDDIR:-.}/tests/proto/blockd" ]; then
    echo "--- in $BF_BUILDDIR: mount --fstab FILE $BF_MNT, line: exec:exec\\040tests/proto/blockd\\040$db $BF_MNT fuse.bigfilefs timeout=60 0 0"
    printf 'exec:exec\\040tests/proto/blockd\\040%s %s fuse.bigfilefs timeout=60 0 0\n' "$db" "$BF_MNT" >"$BF_TMP/fstab"
    (cd "${BF_BUILDDIR:-.}" && timeout 20 mount --fstab "$BF_TMP/fstab" "$BF_MNT") ||
        bf_fail "mount of a block server from an fstab line failed"
    bf_wait_mounted
    got=$(head -c 29 "$f")
    [ "$got" = "committed through mount.fuse3" ] || bf_fail "read '$got' through the block server"
    printf 'committed through blockd' | dd of="$f" conv=notrunc status=none || bf_fail "write failed"
    "$BIGFILECTL" writeout "$f" || bf_fail "bigfilectl writeout through the block server failed"
    umount_detached
    echo "ok: fstab line, exec: block server"
else
    echo "skipped: the exec: fstab line (no tests/proto/blockd in BF_BUILDDIR)"
fi
