#!/bin/sh
# SPDX-License-Identifier: MIT
# Build-tree test: mount bigfilefs on the block server examples/npy_store.py
# (exec:) keeping a directory of .npy files; run examples/numpy_demo.py
# against it (numpy.memmap, writeout, discard), check that the committed
# blocks are .npy files numpy loads, then remount — a new server on the
# same directory — and check the data is there. Skips (77) when FUSE cannot
# be used here, bigfilefs is not built, or no python has numpy.
set -u
src=${BF_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
. "$src/tests/testlib.sh"
bf_setup "$@"
bf_numpy_python "$src"

store=$BF_TMP/store
spec="exec:exec '$py' '$src/examples/npy_store.py' '$store'"
bf_mount "$spec"
"$py" "$src/examples/numpy_demo.py" "$BF_MNT/array" || bf_fail "numpy_demo.py failed on npy_store"
bf_umount
echo "--- the store:"
ls -R "$store" | head -20
"$py" - "$store" <<'PYEOF' || bf_fail "the committed blocks are not the .npy files numpy_demo committed"
import glob, json, os, sys
import numpy as np
store = sys.argv[1]
cat = json.load(open(os.path.join(store, "catalog.json")))
f = [e for e in cat["files"] if e["name"] == "array"][0]
blocks = {int(b): n for b, n in f["blocks"].items()}
assert blocks and f["size"] == (1 << 20) * 8, f
bs = f["blksize"]
for blk, name in blocks.items():
    a = np.load(os.path.join(store, "blocks", str(f["id"]), name), mmap_mode="r")
    assert a.dtype == np.uint8 and a.shape == (bs,), (a.dtype, a.shape)
    v = a.view("<f8")
    i0 = blk * bs // 8
    want = np.zeros(bs // 8)
    idx = np.arange(i0, i0 + bs // 8)
    want[idx % 1000 == 0] = idx[idx % 1000 == 0] * 0.5
    assert np.array_equal(v, want), blk
assert not os.listdir(os.path.join(store, "tx")), "no writeout is left half done"
print("%d blocks, each a .npy file numpy loads with the committed values" % len(blocks))
PYEOF
echo "--- remounted (a new server on the same directory):"
bf_mount "$spec"
"$py" "$src/examples/numpy_demo.py" --check "$BF_MNT/array" || bf_fail "the data is not there after a remount"
bf_umount
echo "ok: npy_store.py ($py)"
