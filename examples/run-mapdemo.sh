#!/bin/sh
# SPDX-License-Identifier: MIT
# Build-tree test: run examples/mapdemo against a real bigfilefs mount on a
# SQLite database, then remount and check that what it committed is there.
# Skips (77) when FUSE cannot be used here or bigfilefs is not built.
set -u
. "${BF_SRCDIR:-$(dirname "$0")/..}/tests/testlib.sh"
bf_setup "$@"
demo=${BF_BUILDDIR:-.}/examples/mapdemo
[ -x "$demo" ] || bf_fail "$demo is not built"

db=$BF_TMP/demo.db
bf_mount "$db"
"$demo" "$BF_MNT/demo" || bf_fail "mapdemo failed"
bf_umount
echo "--- remounted:"
bf_mount "$db"
"$demo" --check "$BF_MNT/demo" || bf_fail "mapdemo --check failed after a remount"
bf_umount
echo "ok: mapdemo"
