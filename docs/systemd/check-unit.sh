#!/bin/sh
# SPDX-License-Identifier: MIT
# Test of the systemd mount unit docs/systemd/mnt-arrays.mount (see
# docs/SYSTEMD.md) with an installed bigfilefs; scripts/test-packages.sh runs
# it after installing the packages:
#   - `systemd-analyze verify` accepts the unit, with the manual pages its
#     Documentation= names (bigfilefs(8) must be installed);
#   - and refuses a copy named for another mount point: verify does check
#     units here, it is no empty pass;
#   - mounted as systemd mounts it (`mount What Where -t Type -o Options`),
#     with What= and Where= moved into a scratch directory, mount.fuse3
#     starts $BIGFILEFS, the options reach it (the block size of a new file),
#     a change is committed, and the unmount stops the daemon.
# Environment: BIGFILEFS, BIGFILECTL (the installed programs), BF_SRCDIR.
# Runs in a private mount namespace; skips (77) without FUSE or systemd-analyze.
set -u
src=${BF_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$src/examples/testlib.sh"
bf_setup "$@"
unit=$src/docs/systemd/mnt-arrays.mount
[ -x "${BIGFILECTL:-}" ] || bf_fail "bigfilectl is not installed (BIGFILECTL=${BIGFILECTL:-})"
command -v systemd-analyze >/dev/null 2>&1 || bf_skip "systemd-analyze is not installed"

# The value of KEY= in the unit (the last one, as systemd takes it).
unit_value() { sed -n "s/^$1=//p" "$unit" | tail -n 1; }

echo "--- systemd-analyze verify $unit"
man=--man=yes
man -w systemd.mount >/dev/null 2>&1 || { man=--man=no; echo "(systemd's manual pages are not installed: --man=no)"; }
systemd-analyze verify "$man" "$unit" || bf_fail "systemd-analyze verify refuses the unit"
out=$(systemd-analyze verify "$man" "$unit" 2>&1)
[ -z "$out" ] || bf_fail "systemd-analyze verify warns: $out"
echo "ok: systemd-analyze verify $man"
cp "$unit" "$BF_TMP/mnt-elsewhere.mount"
if systemd-analyze verify --man=no "$BF_TMP/mnt-elsewhere.mount" >/dev/null 2>&1; then
    bf_fail "systemd-analyze verify accepts a unit whose name does not match Where=: it checks nothing here"
fi
echo "ok: systemd-analyze verify refuses a unit named for another mount point"

what=$(unit_value What); where=$(unit_value Where); type=$(unit_value Type); opts=$(unit_value Options)
[ "$(systemd-escape -p --suffix=mount "$where")" = "$(basename "$unit")" ] ||
    bf_fail "the unit's file name is not the escaped Where= ($where)"
[ "$type" = fuse.bigfilefs ] || bf_fail "Type=$type, expected fuse.bigfilefs"
case $what in /*.db) ;; *) bf_fail "What=$what is not the path of a database file" ;; esac
blksize=$(echo "$opts" | tr ',' '\n' | sed -n 's/^blksize=//p')
case $blksize in
    *K) want=$((${blksize%K} << 10)) ;;
    *M) want=$((${blksize%M} << 20)) ;;
    "") want=$((2 << 20)) ;;
    *) want=$blksize ;;
esac

echo "--- mount $BF_TMP/$(basename "$what") $BF_MNT -t $type -o $opts"
# mount(8) runs mount.fuse3, which runs "bigfilefs" from /bin/sh's default PATH.
found=$(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; command -v bigfilefs)
[ "$found" = "$BIGFILEFS" ] || bf_fail "mount would run '$found', not $BIGFILEFS"
timeout 20 mount "$BF_TMP/$(basename "$what")" "$BF_MNT" -t "$type" -o "$opts" || bf_fail "mount failed"
bf_wait_mounted
[ "$(findmnt -n -o FSTYPE "$BF_MNT")" = "$type" ] || bf_fail "mounted with type $(findmnt -n -o FSTYPE "$BF_MNT")"
case ,$opts, in
    *,allow_other,*) findmnt -n -o OPTIONS "$BF_MNT" | grep -q 'allow_other' ||
        bf_fail "allow_other did not reach the mount: $(findmnt -n -o OPTIONS "$BF_MNT")" ;;
esac
pid=""
for d in /proc/[0-9]*; do
    case $( { tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null) in
        *bigfilefs*" $BF_MNT"*) pid=${d#/proc/}; break ;;
    esac
done
[ -n "$pid" ] || bf_fail "no bigfilefs process serves $BF_MNT"
[ "$(readlink "/proc/$pid/exe")" = "$(readlink -f "$BIGFILEFS")" ] ||
    bf_fail "the daemon is $(readlink "/proc/$pid/exe"), not $BIGFILEFS"
f=$BF_MNT/x
"$BIGFILECTL" create --size=8M "$f" || bf_fail "bigfilectl create failed"
[ "$(stat -c %o "$f")" = "$want" ] || bf_fail "block size $(stat -c %o "$f"), expected $want (Options=$opts)"
printf 'mounted as systemd does' | dd of="$f" conv=notrunc status=none || bf_fail "write failed"
"$BIGFILECTL" writeout "$f" || bf_fail "bigfilectl writeout failed"
umount "$BF_MNT" || bf_fail "umount failed"
i=0
while kill -0 "$pid" 2>/dev/null; do
    i=$((i + 1)); [ $i -le 100 ] || bf_fail "bigfilefs did not exit after umount"
    sleep 0.1
done
echo "ok: mounted with the unit's Type= and Options=, committed, unmounted"
