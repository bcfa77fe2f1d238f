#!/bin/sh
# SPDX-License-Identifier: MIT
# Build-tree test: run examples/numpy_demo.py (numpy.memmap and the
# bigfilefs Python module from python/) against a real bigfilefs mount, then
# remount and check that what it committed is there. Skips (77) when FUSE
# cannot be used here, bigfilefs is not built, or no python has numpy.
set -u
src=${BF_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
. "$src/tests/testlib.sh"
bf_setup "$@"
bf_numpy_python "$src"

db=$BF_TMP/demo.db
bf_mount "$db"
"$py" "$src/examples/numpy_demo.py" "$BF_MNT/array" || bf_fail "numpy_demo.py failed"
bf_umount
echo "--- remounted:"
bf_mount "$db"
"$py" "$src/examples/numpy_demo.py" --check "$BF_MNT/array" || bf_fail "numpy_demo.py --check failed after a remount"
bf_umount
echo "ok: numpy_demo.py ($py)"
