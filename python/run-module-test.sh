#!/bin/sh
# SPDX-License-Identifier: MIT
# Build-tree test: every function of the bigfilefs Python module (python/)
# against a real bigfilefs mount (python/test_module_mount.py). Skips (77)
# when FUSE cannot be used here or bigfilefs is not built.
set -u
src=${BF_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
. "$src/examples/testlib.sh"
bf_setup "$@"
py=${PYTHON:-python3}
PYTHONPATH=$src/python${PYTHONPATH:+:$PYTHONPATH}
PYTHONDONTWRITEBYTECODE=1
export PYTHONPATH PYTHONDONTWRITEBYTECODE

bf_mount "$BF_TMP/module.db"
"$py" "$src/python/test_module_mount.py" "$BF_MNT" || bf_fail "python/test_module_mount.py failed"
bf_umount
echo "ok: the bigfilefs module on a real mount"
