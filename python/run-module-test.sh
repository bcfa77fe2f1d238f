#!/bin/sh
# SPDX-License-Identifier: MIT
# Build-tree test: every function of the bigfilefs Python module (python/)
# against two real bigfilefs mounts of one database (-o shared;
# python/test_module_mount.py). Skips (77)
# when FUSE cannot be used here or bigfilefs is not built. With
# BF_TEST_INSTALLED=1, tests the module that $PYTHON finds installed.
set -u
src=${BF_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
. "$src/tests/testlib.sh"
bf_setup "$@"
py=${PYTHON:-python3}
if [ "${BF_TEST_INSTALLED:-}" = 1 ]; then
    # The installed module (scripts/test-packages.sh): keep python/ out of
    # sys.path, even as the test script's directory.
    PYTHONSAFEPATH=1; export PYTHONSAFEPATH
else
    PYTHONPATH=$src/python${PYTHONPATH:+:$PYTHONPATH}; export PYTHONPATH
fi
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE

# Two daemons on one database, each its own mount: the second one for
# sync, conflicts and ConflictError.
bf_mount "$BF_TMP/module.db" shared
MNT2=$BF_TMP/mnt2
mkdir "$MNT2"
"$BIGFILEFS" -f -o shared "$BF_TMP/module.db" "$MNT2" >>"$BF_TMP/daemon2.log" 2>&1 &
D2=$!
stop2() {
    st=$?
    if grep -q " $MNT2 " /proc/self/mounts 2>/dev/null; then umount -l "$MNT2"; fi
    kill -TERM "$D2" 2>/dev/null
    (exit $st)
    bf_cleanup
}
trap stop2 EXIT
i=0
until [ "$(stat -f -c %t "$MNT2" 2>/dev/null)" = $BF_FUSE_MAGIC ]; do
    kill -0 "$D2" 2>/dev/null || { cat "$BF_TMP/daemon2.log"; bf_fail "the second bigfilefs exited"; }
    i=$((i + 1))
    [ $i -le 100 ] || bf_fail "the second mount did not come up in 10 s"
    sleep 0.1
done
"$py" "$src/python/test_module_mount.py" "$BF_MNT" "$MNT2" ||
    { cat "$BF_TMP/daemon2.log"; bf_fail "python/test_module_mount.py failed"; }
umount "$MNT2" || bf_fail "umount $MNT2 failed"
wait "$D2" || { cat "$BF_TMP/daemon2.log"; bf_fail "the second bigfilefs exited with status $?"; }
bf_umount
echo "ok: the bigfilefs module on two mounts of one database"
