#!/bin/sh
# SPDX-License-Identifier: MIT
# Set up and run the bigfilefs demo: build, mount a demo database, and show a
# bigfile created, mapped, changed, inspected, written out, changed again,
# discarded, and found intact after a remount.
#   scripts/demo.sh [DATABASE]      (default: build/demo.db, kept afterwards)
# Runs in a private mount namespace, so nothing stays mounted if it is killed.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
if [ "${BF_DEMO_INNER:-}" != 1 ]; then
    sh "$top/scripts/deps.sh"
    cd "$top"
    [ -x configure ] || autoreconf -fi >/dev/null
    mkdir -p build/plain
    ( cd build/plain && { [ -f Makefile ] || "$top/configure" -q; } && make -s -j"$(nproc)" )
    db=${1:-$top/build/demo.db}
    case $db in /*) ;; *) db="$PWD/$db" ;; esac
    BF_DEMO_INNER=1 BF_DEMO_DB=$db exec unshare -m --propagation private sh "$0"
fi

bin=$top/build/plain
db=$BF_DEMO_DB
mnt=$(mktemp -d /tmp/bigfilefs-demo.XXXXXX)
daemon=""
mount_db() {
    "$bin/bigfilefs" -f "$db" "$mnt" 2>>"$mnt.log" &
    daemon=$!
    i=0
    until [ "$(stat -f -c %t "$mnt" 2>/dev/null)" = 65735546 ]; do
        i=$((i + 1)); [ $i -lt 100 ] || { echo "demo: mount did not come up"; cat "$mnt.log"; exit 1; }
        kill -0 "$daemon" 2>/dev/null || { echo "demo: bigfilefs exited:"; cat "$mnt.log"; exit 1; }
        sleep 0.1
    done
}
unmount_db() {
    umount "$mnt" 2>/dev/null || true
    [ -z "$daemon" ] || wait "$daemon" 2>/dev/null || true
    daemon=""
}
cleanup() { unmount_db; rmdir "$mnt" 2>/dev/null; rm -f "$mnt.log"; }
trap cleanup EXIT INT TERM

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "$*"; "$@"; }

echo "bigfilefs demo: database $db, mounted on $mnt"
mount_db
f=$mnt/array
[ -e "$f" ] && "$bin/bigfilectl" discard "$f" >/dev/null && rm -f "$f"
run "$bin/bigfilectl" create --blksize=2M --size=1G "$f"
run ls -ls "$mnt"

say "python3: map the 1 GiB file, write 3 values far apart (no msync)"
python3 - "$f" <<'PY'
import mmap, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, 0)
print("  mapped %d bytes; byte at 512 MiB reads %d (an absent block is zeros)" % (len(m), m[512 << 20]))
for off, val in ((0, 42), (300 << 20, 43), ((1 << 30) - 8, 44)):
    m[off:off + 8] = struct.pack("<q", val)
    print("  wrote %d at offset %d" % (val, off))
m.close(); os.close(fd)
PY
run "$bin/bigfilectl" stat "$f"
run "$bin/bigfilectl" writeout "$f"

say "python3: change offset 0 again, then throw the change away"
python3 - "$f" <<'PY'
import mmap, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, 0)
m[0:8] = struct.pack("<q", 999)
print("  offset 0 now reads", struct.unpack("<q", m[0:8])[0])
m.close(); os.close(fd)
PY
run "$bin/bigfilectl" discard "$f"
say "remount, then read back what was committed"
unmount_db
mount_db
python3 - "$f" <<'PY'
import mmap, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
m = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
vals = [struct.unpack("<q", m[o:o + 8])[0] for o in (0, 300 << 20, (1 << 30) - 8)]
print("  values after remount:", vals)
assert vals == [42, 43, 44], vals
m.close(); os.close(fd)
print("  ok: the written-out values survived, the discarded change did not")
PY
run "$bin/bigfilectl" stat "$f"
run sqlite3 "$db" "SELECT name, blksize, size FROM files"
