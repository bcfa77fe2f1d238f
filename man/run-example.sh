#!/bin/sh
# SPDX-License-Identifier: MIT
# Build-tree test: run the example program of ioctl_bigfile(2) (compiled
# from the page by make check) on a real bigfilefs mount, the way the page
# shows, and check that it prints exactly the output the page shows.
# Skips (77) when FUSE cannot be used here or bigfilefs is not built.
set -u
src=${BF_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
. "$src/tests/testlib.sh"
bf_setup "$@"
demo=${BF_BUILDDIR:-.}/man/ioctl_bigfile_demo
[ -x "$demo" ] || bf_fail "$demo is not built"
[ -x "${BIGFILECTL:-}" ] || bf_fail "bigfilectl is not built (BIGFILECTL=${BIGFILECTL:-})"

# The page shows:  $ \fBbigfilectl create --size=4M /mnt/arrays/demo\fP
#                  $ \fB./ioctl_bigfile_demo /mnt/arrays/demo\fP
#                  <output lines up to .EE>
sed -n '/^\$ \\fB\.\/ioctl_bigfile_demo /,/^\.EE/p' "$src/man/ioctl_bigfile.2" | sed '1d;$d' >"$BF_TMP/expected"
[ -s "$BF_TMP/expected" ] || bf_fail "no example output found in ioctl_bigfile.2"

bf_mount "$BF_TMP/example.db"
"$BIGFILECTL" create --size=4M "$BF_MNT/demo" || bf_fail "bigfilectl create failed"
"$demo" "$BF_MNT/demo" >"$BF_TMP/got" || { cat "$BF_TMP/got"; bf_fail "the example program failed"; }
bf_umount
if ! cmp -s "$BF_TMP/expected" "$BF_TMP/got"; then
    echo "--- the page shows:"; cat "$BF_TMP/expected"
    echo "--- the program printed:"; cat "$BF_TMP/got"
    bf_fail "the output of the example differs from ioctl_bigfile(2)"
fi
cat "$BF_TMP/got"
echo "ok: the example of ioctl_bigfile(2) prints what the page shows"
