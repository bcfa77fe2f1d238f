#!/bin/sh
# SPDX-License-Identifier: MIT
# Build-tree test: mount bigfilefs on the block server
# examples/computed_array.py (exec:, read-only), then map its two files with
# numpy.memmap from another process and check them (computed_array.py
# --check). Skips (77) when FUSE cannot be used here, bigfilefs is not
# built, or no python has numpy.
set -u
src=${BF_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
. "$src/tests/testlib.sh"
bf_setup "$@"
bf_numpy_python "$src"

bf_mount "exec:exec '$py' '$src/examples/computed_array.py' --size 64M --seed 11" ro
"$py" "$src/examples/computed_array.py" --check "$BF_MNT" || bf_fail "computed_array.py --check failed"
grep -q 'block server "computed_array" started' "$BF_TMP/daemon.log" ||
    bf_fail "the daemon did not log the server's start"
[ "$(stat -c %s "$BF_MNT/words.u64")" = 67108864 ] || bf_fail "words.u64 is not 64 MiB"
bf_umount
echo "ok: computed_array.py ($py)"
