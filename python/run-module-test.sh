#!/bin/sh
# SPDX-License-Identifier: MIT
# Build-tree test: every function of the bigfilefs Python module (python/)
# against a real bigfilefs mount (python/test_module_mount.py). Skips (77)
# when FUSE cannot be used here or bigfilefs is not built. With
# BF_TEST_INSTALLED=1, tests the module that $PYTHON finds installed.
set -u
src=${BF_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
. "$src/examples/testlib.sh"
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

bf_mount "$BF_TMP/module.db"
"$py" "$src/python/test_module_mount.py" "$BF_MNT" || bf_fail "python/test_module_mount.py failed"
bf_umount
echo "ok: the bigfilefs module on a real mount"
