# SPDX-License-Identifier: MIT
# testlib.sh — shared by the shell tests that mount a real bigfilefs
# (examples/run-*.sh, man/*.sh, python/run-module-test.sh). Source it, then
# call bf_setup "$@" first:
#
#   . "$BF_SRCDIR/tests/testlib.sh"
#   bf_setup "$@"            # skip (77) if FUSE is unusable; re-exec the
#                            # script in a private mount namespace; make
#                            # $BF_TMP (removed at exit) with $BF_MNT in it
#   bf_mount DB [OPTIONS]    # bigfilefs -f [-o OPTIONS] DB $BF_MNT, in the
#                            # background; waits (10 s at most) for the mount
#   bf_umount                # umount; waits (10 s) for the daemon; fails
#                            # unless it exited with status 0
#   bf_fail MESSAGE          # print the daemon's log and exit 1
#   bf_numpy_python SRC      # after bf_setup: set $py to a python with numpy
#                            # ($PYTHON, python3, /usr/bin/python3; none:
#                            # skip, 77), export PYTHONPATH with SRC/python
#                            # (the bigfilefs module) first and
#                            # PYTHONDONTWRITEBYTECODE
#
# The mount namespace means that a crash or a kill of the test leaves no
# mount behind: the namespace dies with its last process. An EXIT trap also
# unmounts and stops the daemon on any failure.
# Environment: BIGFILEFS, BIGFILECTL, BF_SRCDIR, BF_BUILDDIR (set by make check).

BF_FUSE_MAGIC=65735546      # statfs f_type of a FUSE mount, as stat -f %t prints it
BF_DAEMON=""

bf_skip() { echo "SKIP: $*"; exit 77; }

bf_fail() {
    echo "FAIL: $*"
    if [ -n "${BF_TMP:-}" ] && [ -s "$BF_TMP/daemon.log" ]; then
        echo "--- daemon log:"; cat "$BF_TMP/daemon.log"
    fi
    exit 1
}

bf_cleanup() {
    st=$?
    if [ -n "${BF_MNT:-}" ] && grep -q " $BF_MNT " /proc/self/mounts 2>/dev/null; then
        umount "$BF_MNT" 2>/dev/null || umount -l "$BF_MNT" 2>/dev/null
    fi
    if [ -n "$BF_DAEMON" ] && kill -0 "$BF_DAEMON" 2>/dev/null; then
        kill -TERM "$BF_DAEMON" 2>/dev/null
        i=0
        while kill -0 "$BF_DAEMON" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
        kill -KILL "$BF_DAEMON" 2>/dev/null
    fi
    [ -n "${BF_TMP:-}" ] && rm -rf "$BF_TMP"
    exit $st
}

bf_setup() {
    [ -n "${BIGFILEFS:-}" ] && [ -x "$BIGFILEFS" ] || bf_skip "bigfilefs is not built (BIGFILEFS=${BIGFILEFS:-})"
    [ -c /dev/fuse ] && [ -r /dev/fuse ] && [ -w /dev/fuse ] || bf_skip "/dev/fuse is not usable"
    if [ "${BF_IN_MOUNT_NS:-}" != 1 ]; then
        command -v unshare >/dev/null 2>&1 || bf_skip "unshare(1) is missing"
        unshare -m --propagation private true 2>/dev/null || bf_skip "cannot create a mount namespace (not root?)"
        BF_IN_MOUNT_NS=1 exec unshare -m --propagation private sh "$0" "$@"
    fi
    BF_TMP=$(mktemp -d /tmp/bigfilefs-test.XXXXXX) || exit 1
    BF_MNT=$BF_TMP/mnt
    mkdir "$BF_MNT"
    trap bf_cleanup EXIT
    trap 'exit 1' INT TERM HUP
}

# bf_wait_mounted [PID]: wait until $BF_MNT is a FUSE mount; fail after 10 s
# or if PID (the daemon) exits first.
bf_wait_mounted() {
    i=0
    until [ "$(stat -f -c %t "$BF_MNT" 2>/dev/null)" = $BF_FUSE_MAGIC ]; do
        if [ -n "${1:-}" ] && ! kill -0 "$1" 2>/dev/null; then
            bf_fail "bigfilefs exited before mounting"
        fi
        i=$((i + 1))
        [ $i -le 100 ] || bf_fail "the mount did not come up in 10 s"
        sleep 0.1
    done
}

bf_mount() {
    if [ -n "${2:-}" ]; then
        "$BIGFILEFS" -f -o "$2" "$1" "$BF_MNT" >>"$BF_TMP/daemon.log" 2>&1 &
    else
        "$BIGFILEFS" -f "$1" "$BF_MNT" >>"$BF_TMP/daemon.log" 2>&1 &
    fi
    BF_DAEMON=$!
    bf_wait_mounted "$BF_DAEMON"
}

bf_umount() {
    umount "$BF_MNT" || bf_fail "umount $BF_MNT failed"
    [ -n "$BF_DAEMON" ] || return 0
    i=0
    while kill -0 "$BF_DAEMON" 2>/dev/null; do
        i=$((i + 1))
        [ $i -le 100 ] || bf_fail "bigfilefs did not exit within 10 s of the unmount"
        sleep 0.1
    done
    wait "$BF_DAEMON"
    st=$?
    BF_DAEMON=""
    [ $st -eq 0 ] || bf_fail "bigfilefs exited with status $st after a clean unmount"
}

bf_numpy_python() {
    py=""
    for p in "${PYTHON:-}" python3 /usr/bin/python3; do
        [ -n "$p" ] && "$p" -c 'import numpy' 2>/dev/null && { py=$p; break; }
    done
    [ -n "$py" ] || bf_skip "no python3 with numpy"
    PYTHONPATH=$1/python${PYTHONPATH:+:$PYTHONPATH}
    PYTHONDONTWRITEBYTECODE=1 # leave no __pycache__ in the source tree
    export PYTHONPATH PYTHONDONTWRITEBYTECODE
}
