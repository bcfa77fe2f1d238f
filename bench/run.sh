#!/bin/bash
# SPDX-License-Identifier: MIT
# bench/run.sh — the bigfilefs benchmark driver, run by `make bench`.
#
# Mounts bigfilefs itself (a SQLite database on disk and a mem: database)
# and a private tmpfs, inside a private mount namespace so that nothing
# stays mounted whatever happens, then measures the figures of bench/README:
# every figure with its reference measured in the same run, runs
# interleaved, the median of BENCH_RUNS runs with [min..max], and the ratio
# of the medians. Needs root (mounts, /proc/sys/vm/drop_caches, bdi tuning).
#
# Environment:
#   BIGFILEFS, BIGFILECTL, BFBENCH  the built programs (make bench sets them)
#   ENGINEBENCH, BLOCKD, BF_SRCDIR  figure 10: bench/enginebench, the block server
#                   tests/proto/blockd, the source tree (examples/, python/)
#   RAWPG           figure 9: bench/rawpg, the plain libpq references (unset: not measured)
#   BENCH_QUICK=1   small sizes, for development (the figures are not the issue's)
#   BENCH_ONLY="1 5"  run only these figures (1..12); default all
#   BENCH_RUNS=N    runs per measurement (default 5, quick 3)
#   BENCH_DIR=DIR   where the databases go (default a new dir in /var/tmp;
#                   it must be on a disk, not tmpfs, to mean anything)
#   BENCH_KEEP=1    keep BENCH_DIR and the daemon logs afterwards
set -eu

: "${BIGFILEFS:?set BIGFILEFS to the bigfilefs program (make bench does)}"
: "${BIGFILECTL:?set BIGFILECTL to the bigfilectl program}"
: "${BFBENCH:?set BFBENCH to bench/bfbench}"

if [ "${BENCH_INNER:-}" != 1 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "bench: must run as root (it mounts, and drops the OS caches for figure 1b)" >&2
        exit 1
    fi
    BENCH_INNER=1 exec unshare -m --propagation private bash "$0" "$@"
fi

quick=${BENCH_QUICK:-0}
if [ "$quick" = 1 ]; then
    F1=128M; F1L=1G; F3=512M; F4=64M; TOUCH=200; FOLLOW=50; RUNS=${BENCH_RUNS:-3}
    F11=256M; D11=32M
    F13=1G; CACHE13=64M; D13=128M
else
    F1=1G;   F1L=2G; F3=4G;   F4=256M; TOUCH=1000; FOLLOW=200; RUNS=${BENCH_RUNS:-5}
    F11=2G;   D11=128M
    F13=16G; CACHE13=256M; D13=1G # issue 12's numbers
fi
CACHE11=64M
SPARSE=1T
CACHE5=64M
SWEEP="2M 64K 256K 8M"
ONLY=${BENCH_ONLY:-1 2 3 4 5 6 7 8 9 10 11 12 13}

want() { case " $ONLY " in *" $1 "*) return 0 ;; esac; return 1; }
bytes() { numfmt --from=iec "$1"; }

work=${BENCH_DIR:-}
if [ -z "$work" ]; then work=$(mktemp -d /var/tmp/bfbench.XXXXXX); fi
mkdir -p "$work/res" "$work/tmpfs" "$work/sq" "$work/mem" "$work/sha" "$work/shb" "$work/pg" \
    "$work/pc" "$work/py" "$work/sp" "$work/np" "$work/ex8"
# figure 9's private PostgreSQL server, as the tests start theirs
pgserver=$(cd "$(dirname "$0")/.." && pwd)/tests/pg/pgserver.sh
pgdir=$(mktemp -d /tmp/bfbench-pg.XXXXXX) # traversable by the user postgres
db=$work/bench.db
sdb=$work/shared.db
xdb=$work/excl.db
pdb=$work/spill.db
# each database with its -wal, -shm and -blocks files
ndb=$work/numpy.db
rm -f "$db"* "$sdb"* "$xdb"* "$pdb"* "$ndb"* "$work"/scratch-*.db* "$work"/plain1[13] "$work"/res/*

pids=""
memcg="" # figures 1l-1o: a memory cgroup (memcg_new)
cleanup() {
    set +e
    for m in sq mem sha shb ex8 pg pc py sp np; do umount "$work/$m" 2>/dev/null; done
    umount "$work/tmpfs" 2>/dev/null
    for p in $pids; do wait "$p" 2>/dev/null; done
    sh "$pgserver" stop "$pgdir" 2>/dev/null
    [ -n "${memcg:-}" ] && rmdir "$memcg" 2>/dev/null
    if [ "${BENCH_KEEP:-0}" != 1 ]; then
        rm -rf "$work/res" "$db"* "$sdb"* "$xdb"* "$pdb"* "$ndb"* "$work"/scratch-*.db* \
            "$work"/plain1[13] "$work"/*.log
        rmdir "$work/tmpfs" "$work/sq" "$work/mem" "$work/sha" "$work/shb" "$work/pg" \
            "$work/pc" "$work/py" "$work/sp" "$work/np" "$work/ex8" "$work" 2>/dev/null
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The daemons splice reads of SQLite blocks from the block file when they may
# make pipes of 1 MiB and a page (bigfilefs(8), -o splice): let them, as a
# machine set up for bigfilefs would (BENCH_SPLICE=0: leave the setting).
pmax=/proc/sys/fs/pipe-max-size
pmax_was=$(cat "$pmax" 2>/dev/null || echo 0)
if [ "${BENCH_SPLICE:-1}" = 1 ] && [ "$pmax_was" -lt 2097152 ] && echo 2097152 >"$pmax" 2>/dev/null; then
    trap 'echo "$pmax_was" >"$pmax"; cleanup' EXIT
fi

# Figures 1l-1o read in a memory cgroup of 512 MiB, which keeps a
# bigger file cold by reclaiming its own pages instead of dropping every
# cache (on this kind of VM, page cache allocated after a drop comes back
# from the host at speeds that vary 3x from one run to the next).
# memcg_new: make it under this process's (cgroup v1's memory controller,
# or a cgroup v2 that delegates memory), its directory in $memcg; fails
# when none can be made.
memcg_new() {
    local rel base
    rel=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ { print $3; exit }' /proc/self/cgroup)
    if [ -n "$rel" ] && [ -d "/sys/fs/cgroup/memory$rel" ]; then
        base=/sys/fs/cgroup/memory${rel%/}
        mkdir "$base/bfbench.$$" 2>/dev/null || return 1
        memcg=$base/bfbench.$$
        echo $((512 << 20)) >"$memcg/memory.limit_in_bytes" 2>/dev/null && return 0
    else
        # cgroup v2: a child of the root, the one cgroup that may both hold
        # processes and delegate the memory controller (the bench is root)
        base=/sys/fs/cgroup
        grep -qw memory "$base/cgroup.subtree_control" 2>/dev/null || return 1
        mkdir "$base/bfbench.$$" 2>/dev/null || return 1
        memcg=$base/bfbench.$$
        echo $((512 << 20)) >"$memcg/memory.max" 2>/dev/null && return 0
    fi
    rmdir "$memcg"
    memcg=""
    return 1
}
# memcg_exec CMD...: become CMD, in $memcg (only where exec may replace the
# shell: a background job, a command substitution)
memcg_exec() { exec sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$memcg" "$@"; }

# mount_bf NAME DATABASE [OPTIONS]: mount bigfilefs on $work/NAME, wait until
# it serves; the daemon's pid goes to pid_NAME. With mount_in=memcg_exec the
# daemon runs in $memcg.
mount_in=""
mount_bf() {
    local name=$1 dbspec=$2 opts=${3:-} mnt=$work/$1 i=0
    if [ -n "$opts" ]; then
        $mount_in "$BIGFILEFS" -f -o "$opts" "$dbspec" "$mnt" 2>>"$work/$name.log" &
    else
        $mount_in "$BIGFILEFS" -f "$dbspec" "$mnt" 2>>"$work/$name.log" &
    fi
    local pid=$!
    pids="$pids $pid"
    eval "pid_$name=$pid"
    until [ "$(stat -f -c %t "$mnt" 2>/dev/null)" = 65735546 ]; do
        i=$((i + 1))
        if [ $i -gt 100 ] || ! kill -0 "$pid" 2>/dev/null; then
            echo "bench: bigfilefs did not mount $mnt:" >&2
            cat "$work/$name.log" >&2
            exit 1
        fi
        sleep 0.1
    done
}

umount_bf() {
    local name=$1 pid
    eval "pid=\$pid_$name"
    umount "$work/$name"
    wait "$pid" || true
}

# run KEY CMD...: run one measurement, append its first number to res/KEY
# (further numbers, e.g. p99, go to res/KEY.2, res/KEY.3).
run() {
    local key=$1 out
    shift
    if ! out=$("$@"); then
        echo "bench: failed: $*" >&2
        exit 1
    fi
    set -- $out
    local k=1
    for v in "$@"; do
        if [ $k = 1 ]; then echo "$v" >>"$work/res/$key"; else echo "$v" >>"$work/res/$key.$k"; fi
        k=$((k + 1))
    done
}

# med KEY: "median min max" of the values in res/KEY
med() {
    sort -g "$work/res/$1" | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "nan nan nan"; exit }
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%g %g %g\n", m, v[1], v[NR] }'
}

# line ID "WHAT" UNIT KEY "REFERENCE" REFKEY ["TARGET" "CHECK"]: one figure
# line, the ratio being median(KEY) / median(REFKEY). CHECK is an awk
# condition on r (the ratio) and v (the median): the line ends with
# "met" or "MISSED" after TARGET.
line() {
    local id=$1 what=$2 unit=$3 key=$4 ref=$5 refkey=$6 target=${7:-} check=${8:-}
    local a b verdict=""
    a=($(med "$key")); b=($(med "$refkey"))
    if [ -n "$check" ]; then
        verdict=$(awk -v m="${a[0]}" -v rm="${b[0]}" "BEGIN { v = m; r = (rm > 0 ? m / rm : 0);
                  print (($check) ? \"met\" : \"MISSED\") }")
    fi
    awk -v id="$id" -v what="$what" -v unit="$unit" -v ref="$ref" -v target="$target" \
        -v verdict="$verdict" \
        -v m="${a[0]}" -v lo="${a[1]}" -v hi="${a[2]}" \
        -v rm="${b[0]}" -v rlo="${b[1]}" -v rhi="${b[2]}" 'BEGIN {
        printf "%-4s %-46s %9.3f %-4s [%.3f..%.3f] | %-26s %9.3f [%.3f..%.3f] | ratio %6.3f %s%s\n",
            id, what, m, unit, lo, hi, ref, rm, rlo, rhi, (rm > 0 ? m / rm : 0), target,
            (verdict != "" ? ": " verdict : "") }'
}

# line1 ID "WHAT" UNIT KEY "TARGET" "CHECK": a figure line without a
# reference; CHECK is an awk condition on v (the median).
line1() {
    local id=$1 what=$2 unit=$3 key=$4 target=$5 check=$6 a verdict
    a=($(med "$key"))
    verdict=$(awk -v v="${a[0]}" "BEGIN { print (($check) ? \"met\" : \"MISSED\") }")
    awk -v id="$id" -v what="$what" -v unit="$unit" -v target="$target" -v verdict="$verdict" \
        -v m="${a[0]}" -v lo="${a[1]}" -v hi="${a[2]}" 'BEGIN {
        printf "%-4s %-46s %9.3f %-4s [%.3f..%.3f] | %s: %s\n", id, what, m, unit, lo, hi,
            target, verdict }'
}

# busy_ns NAME: CPU time (ns) every thread of daemon NAME used so far
busy_ns() {
    local pid
    eval "pid=\$pid_$1"
    cat /proc/"$pid"/task/*/schedstat | awk '{ s += $1 } END { printf "%d\n", s }'
}

# dd_gbs: the GB/s of dd's report (on stdin)
dd_gbs() { awk '/copied/ { printf "%.3f\n", $1 / $(NF - 3) / 1e9 }'; }

# dd_read FILE: drop the OS caches, read FILE with dd (1 MiB blocks): GB/s
dd_read() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
    dd if="$1" of=/dev/null bs=1M 2>&1 | dd_gbs
}

# dd_write FILE SIZE: write SIZE bytes to a new FILE with dd conv=fdatasync
# (1 MiB blocks, from /dev/zero), remove it: GB/s
dd_write() {
    sync
    dd if=/dev/zero of="$1" bs=1M count=$(($(bytes "$2") / 1048576)) conv=fdatasync 2>&1 | dd_gbs
    rm -f "$1"
}

# dd_memcg FILE: read FILE with dd (1 MiB blocks) in $memcg, whose limit
# keeps it cold without dropping caches: GB/s
dd_memcg() {
    local v
    v=$( (memcg_exec dd if="$1" of=/dev/null bs=1M) 2>&1 | dd_gbs)
    [ -n "$v" ] || { echo "bench: dd of $1 in $memcg failed" >&2; return 1; }
    echo "$v"
}

# uncache FILE: drop FILE's pages from the OS cache (whoever they are
# charged to), and nothing else
uncache() { dd if="$1" iflag=nocache count=0 status=none; }

# pair A B: A / B (a ratio of two measurements taken back to back, which a
# disk whose speed changes from minute to minute affects alike)
pair() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", (b > 0 ? a / b : 0) }'; }

# value KEY: the median alone
value() { med "$1" | awk '{ print $1 }'; }

ctl() { "$BIGFILECTL" "$@" >/dev/null; }

# cpu_ticks NAME: user+system clock ticks used so far by daemon NAME
cpu_ticks() {
    local pid
    eval "pid=\$pid_$1"
    awk '{ print $14 + $15 }' "/proc/$pid/stat"
}

# cpu_per_gib NAME TICKS0 SIZE: CPU seconds daemon NAME used since TICKS0, per GiB of SIZE
cpu_per_gib() {
    local t1
    t1=$(cpu_ticks "$1")
    awk -v d=$((t1 - $2)) -v hz="$(getconf CLK_TCK)" -v b="$(bytes "$3")" \
        'BEGIN { printf "%.3f\n", d / hz / (b / 1073741824) }'
}

# --- header --------------------------------------------------------------
echo "bigfilefs benchmarks — $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)," \
     "$(awk '/MemTotal/ { printf "%.1f GiB RAM", $2 / 1048576 }' /proc/meminfo); kernel $(uname -r)"
echo "database: $db ($(df -P "$work" | awk 'NR == 2 { print $1 }')), SQLite sync ${BF_SQLITE_SYNC:-full};" \
     "sizes: fig1 $F1, fig3/5 $F3, fig4 $F4, fig11 $F11 (dirty=$D11); $RUNS runs each, median [min..max]$( [ "$quick" = 1 ] && echo '; QUICK sizes')"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "GB/s = 10^9 bytes/s. cold = RECLAIM (the file's pages dropped from the daemon and the page cache; database file in the OS cache)"

mount -t tmpfs -o size=$(( $(bytes $F1) / 1048576 + 64 ))m bfbench "$work/tmpfs"
mount_bf sq "$db"
mount_bf mem mem:
bdi=/sys/class/bdi/$(mountpoint -d "$work/sq")
echo "bigfilefs mount: bdi read_ahead_kb=$(cat "$bdi/read_ahead_kb" 2>/dev/null || echo '?')" \
     "max_ratio=$(cat "$bdi/max_ratio" 2>/dev/null || echo '?'); daemon: $("$BIGFILEFS" --version 2>&1 | head -1)"
echo "fs.pipe-max-size: $(cat "$pmax" 2>/dev/null || echo '?') (SQLite reads spliced by default when >= 2097152)"
echo

tfile=$work/tmpfs/seq

# --- figures 1, 4 and 7: per block size ------------------------------------
for bs in $SWEEP; do
    if [ "$bs" != 2M ] && ! want 7; then continue; fi
    if [ "$bs" = 2M ] && ! want 1 && ! want 4 && ! want 2 && ! want 6 && ! want 7; then continue; fi
    if want 1 || want 2 || want 6 || want 7; then
        for m in sq mem; do
            ctl create --blksize="$bs" --size="$F1" "$work/$m/seq-$bs"
            run "fill_${m}_$bs" "$BFBENCH" fill "$work/$m/seq-$bs" --length "$F1" --seed 7 --writeout-every 256M
        done
        if [ "$bs" = 2M ]; then
            run fill_tmpfs "$BFBENCH" fill "$tfile" --length "$F1" --seed 7
        fi
        for r in $(seq "$RUNS"); do
            for m in sq mem; do
                "$BFBENCH" cold "$work/$m/seq-$bs" --cold reclaim
                c0=$(cpu_ticks $m)
                run "r1_${m}_$bs" "$BFBENCH" seqread "$work/$m/seq-$bs" --seed 7
                cpu_per_gib $m "$c0" "$F1" >>"$work/res/r1cpu_${m}_$bs"
            done
            run "r1_raw_$bs" "$BFBENCH" sqlread "$db" --name "seq-$bs" --seed 7
            if [ "$bs" = 2M ]; then
                run r1_tmpfs "$BFBENCH" seqread "$tfile" --seed 7
                run r1_rawfresh "$BFBENCH" sqlread "$db" --name "seq-$bs" --seed 7 --fresh-buffers
            fi
        done
        if [ "$bs" = 2M ] && want 1; then
            line 1a "cold seq read mmap, sqlite, $bs blocks" GB/s r1_sq_2M "memory backend" r1_mem_2M "target ratio >= 0.85 and >= 1 GB/s" 'r >= 0.85 && v >= 1'
            line 1b "  same" GB/s r1_sq_2M "raw SQLite C loop" r1_raw_2M ""
            line 1c "  same" GB/s r1_sq_2M "tmpfs mmap" r1_tmpfs ""
            line 1g "  same" GB/s r1_sq_2M "raw SQLite, new buffer/block" r1_rawfresh ""
        fi
        # figures 2 and 6 before 1d, which drops the OS caches
        if [ "$bs" = 2M ] && want 2; then
            for r in $(seq "$RUNS"); do
                run r2_sq "$BFBENCH" seqread "$work/sq/seq-2M" --seed 7 --warm
                run r2_tmpfs "$BFBENCH" seqread "$tfile" --seed 7 --warm
            done
            line 2 "warm seq read mmap (pages cached), sqlite" GB/s r2_sq "tmpfs mmap, warm" r2_tmpfs "target >= 0.95" 'r >= 0.95'
            line 2f "  page faults per MiB of that pass" "" r2_sq.2 "tmpfs" r2_tmpfs.2 "(16 = fault-around works)"
        fi

        if [ "$bs" = 2M ] && want 6; then
            for r in $(seq "$RUNS"); do
                run r6_one "$BFBENCH" par "$work/sq/seq-2M" --procs 1 --seed 7 --cold reclaim
                run r6_two "$BFBENCH" par "$work/sq/seq-2M" --procs 2 --seed 7 --cold reclaim
            done
            line 6 "2 processes, halves at once, aggregate" GB/s r6_two "1 process, whole file" r6_one ""
        fi
        if [ "$bs" = 2M ] && want 1; then
            for r in $(seq "$RUNS"); do
                run r1d_sq "$BFBENCH" seqread "$work/sq/seq-2M" --seed 7 --cold drop
                run r1d_raw "$BFBENCH" sqlread "$db" --name seq-2M --seed 7 --cold drop
                run r1d_dd dd_read "$db-blocks" # where the blocks are
                ctl reclaim "$work/sq/seq-2M"
                run r1i_sq dd_read "$work/sq/seq-2M"
                pair "$(tail -n 1 "$work/res/r1i_sq")" "$(tail -n 1 "$work/res/r1d_dd")" >>"$work/res/r1i_pair"
            done
            line 1d "cold seq read, db dropped from OS cache too" GB/s r1d_sq "raw SQLite, db dropped" r1d_raw ""
            line 1h "  same" GB/s r1d_sq "dd of the db's block file" r1d_dd ""
            line 1i "cold seq read(2), dd of the bigfile, db dropped" GB/s r1i_sq "dd of the db's block file" r1d_dd "target >= 0.8" 'r >= 0.8'
            line1 1k "  1i's ratio run by run (each with its own dd)" "" r1i_pair "target >= 0.8" 'v >= 0.8'
            # the same read copied by the daemon (its cache) instead of spliced
            umount_bf sq
            mount_bf sq "$db" splice=off
            for r in $(seq "$RUNS"); do
                run r1j_dd dd_read "$db-blocks"
                ctl reclaim "$work/sq/seq-2M"
                run r1j_sq dd_read "$work/sq/seq-2M"
            done
            umount_bf sq
            mount_bf sq "$db"
            line 1j "  same, -o splice=off" GB/s r1j_sq "dd of the db's block file" r1j_dd ""
            # the same read, of a file twice the cgroup's memory, kept cold by
            # the cgroup: with reads around the OS cache (dio=auto) and through it
            if memcg_new; then
                ctl create --blksize=2M --size="$F1L" "$work/sq/cold-2M"
                run fill_cold "$BFBENCH" fill "$work/sq/cold-2M" --length "$F1L" --seed 7 --writeout-every 256M
                umount_bf sq
                mount_in=memcg_exec
                for dio in auto off; do
                    mount_bf sq "$db" "cache=64M,dio=$dio"
                    for r in $(seq "$RUNS"); do
                        uncache "$db-blocks"
                        run "r1l_dd_$dio" dd_memcg "$db-blocks"
                        uncache "$db-blocks"
                        ctl reclaim "$work/sq/cold-2M"
                        c0=$(cpu_ticks sq)
                        run "r1l_sq_$dio" dd_memcg "$work/sq/cold-2M"
                        cpu_per_gib sq "$c0" "$F1L" >>"$work/res/r1lcpu_$dio"
                        pair "$(tail -n 1 "$work/res/r1l_sq_$dio")" "$(tail -n 1 "$work/res/r1l_dd_$dio")" \
                            >>"$work/res/r1l_pair_$dio"
                    done
                    umount_bf sq
                done
                mount_in=""
                mount_bf sq "$db"
                rm -f "$work/sq/cold-2M"
                line 1l "cold seq read(2) of $F1L in 512M memcg, dd" GB/s r1l_sq_auto "dd of the block file, memcg" r1l_dd_auto "target >= 0.8" 'r >= 0.8'
                line1 1m "  1l's ratio run by run" "" r1l_pair_auto "target >= 0.8" 'v >= 0.8'
                line 1n "  same, -o dio=off" GB/s r1l_sq_off "dd of the block file, memcg" r1l_dd_off ""
                line 1o "  daemon CPU seconds per GiB of 1l" s r1lcpu_auto "same, -o dio=off (1n)" r1lcpu_off ""
            else
                echo "1l   (no memory cgroup could be made here: 1l-1o left out)"
            fi
            line 1e "  same" GB/s r1d_sq "memory backend (1a)" r1_mem_2M ""
            line 1f "daemon CPU seconds per GiB of 1a, sqlite" s r1cpu_sq_2M "memory backend" r1cpu_mem_2M ""
        fi
    fi

    if want 4 && [ "$bs" = 2M ] || want 7; then
        ctl create --blksize="$bs" --size="$F4" "$work/sq/wo-$bs"
        for r in $(seq "$RUNS"); do
            run "r4_sq_$bs" "$BFBENCH" dirty "$work/sq/wo-$bs" --length "$F4" --seed $((100 + r))
            run "r4_raw_$bs" "$BFBENCH" sqlwrite "$work/scratch-$bs.db" --schema-from "$db" \
                --blksize "$bs" --length "$F4" --seed $((100 + r))
            if [ "$bs" = 2M ] && want 4; then
                run r4_dd dd_write "$work/scratch-dd" "$F4"
            fi
        done
        if [ "$bs" = 2M ] && want 4; then
            line 4 "writeout of $F4 dirtied via mmap, $bs" GB/s r4_sq_2M "raw SQLite, 1 transaction" r4_raw_2M "target >= 0.8" 'r >= 0.8'
            line 4b "  same" GB/s r4_sq_2M "dd conv=fdatasync, same fs" r4_dd "target >= 0.7" 'r >= 0.7'
        fi
        rm -f "$work/scratch-$bs.db" "$work/scratch-$bs.db-wal" "$work/scratch-$bs.db-shm"
    fi
    # the memory backend keeps its blocks in the daemon: give them back
    rm -f "$work/mem/seq-$bs"
done

# --- figure 3: cold random 4 KiB faults ------------------------------------
if want 3 || want 5; then
    for m in sq mem; do
        if [ $m = mem ] && ! want 3; then continue; fi
        ctl create --blksize=2M --size="$F3" "$work/$m/rnd"
        run "fill3_$m" "$BFBENCH" fill "$work/$m/rnd" --length "$F3" --seed 9 --writeout-every 512M
    done
fi
if want 3; then
    nblk=$(( $(bytes $F3) / 2097152 ))
    count=$(( nblk / 2 < 1000 ? nblk / 2 : 1000 ))
    for r in $(seq "$RUNS"); do
        run r3_sq "$BFBENCH" randfault "$work/sq/rnd" --count $count --seed 9 --rng $((r * 1000)) --cold reclaim
        run r3_mem "$BFBENCH" randfault "$work/mem/rnd" --count $count --seed 9 --rng $((r * 1000)) --cold reclaim
        run r3r_sq "$BFBENCH" randfault "$work/sq/rnd" --count $count --seed 9 --rng $((r * 1000 + 1)) --cold reclaim --madvise random
        run r3r_mem "$BFBENCH" randfault "$work/mem/rnd" --count $count --seed 9 --rng $((r * 1000 + 1)) --cold reclaim --madvise random
    done
    line 3a "cold random 4K faults over $F3, p50, sqlite" us r3_sq "memory backend p50" r3_mem ""
    line 3b "  p99, sqlite" us r3_sq.2 "memory backend p99" r3_mem.2 ""
    line 3c "  with MADV_RANDOM: p50, sqlite" us r3r_sq "memory backend p50" r3r_mem ""
    line 3d "  with MADV_RANDOM: p99, sqlite" us r3r_sq.2 "memory backend p99" r3r_mem.2 ""
    # the default advice on a mount whose readahead is 128K (-o readahead):
    # the window a fault reads around its page, for every file of the mount
    umount_bf sq
    mount_bf sq "$db" readahead=128K
    for r in $(seq "$RUNS"); do
        run r3k_sq "$BFBENCH" randfault "$work/sq/rnd" --count $count --seed 9 --rng $((r * 1000 + 2)) --cold reclaim
    done
    umount_bf sq
    mount_bf sq "$db"
    line1 3e "  -o readahead=128K: p50, sqlite" us r3k_sq "target <= 300" 'v <= 300'
    line1 3f "  -o readahead=128K: p99, sqlite" us r3k_sq.2 "target <= 3000" 'v <= 3000'
    rm -f "$work/mem/rnd"
fi

# --- figure 5: daemon memory -------------------------------------------------
if want 5; then
    umount_bf sq
    mount_bf sq "$db" "cache=$CACHE5"
    budget=$(( $(bytes $CACHE5) / 1048576 + 16 ))
    echo "$budget" >"$work/res/budget5"
    rss() { awk '/^VmRSS/ { printf "%.1f\n", $2 / 1024 }' "/proc/$pid_sq/status"; }
    ctl create --blksize=2M --size="$SPARSE" "$work/sq/sparse"
    for r in $(seq "$RUNS"); do
        run r5_readtime "$BFBENCH" seqread "$work/sq/rnd" --seed 9 --cold reclaim
        rss >>"$work/res/r5_read"
        run r5_touch "$BFBENCH" touch "$work/sq/sparse" --count $TOUCH --rng $((r * 77))
        rss >>"$work/res/r5_sparse"
    done
    line 5a "daemon RSS after $F3 seq read, cache=$CACHE5" MiB r5_read "budget + 16 MiB" budget5 "target <= 1" 'r <= 1'
    line 5b "daemon RSS, $TOUCH blocks read in $SPARSE sparse" MiB r5_sparse "budget + 16 MiB" budget5 "target <= 1" 'r <= 1'
fi

# --- figure 7: the block size sweep of figures 1 and 4 ----------------------
if want 7; then
    for bs in 64K 256K 2M 8M; do
        line 7r "cold seq read mmap, sqlite, $bs blocks" GB/s "r1_sq_$bs" "memory backend" "r1_mem_$bs" "half-target >= 0.425, 0.5 GB/s" 'r >= 0.425 && v >= 0.5'
        line "  " "  same, $bs" GB/s "r1_sq_$bs" "raw SQLite C loop" "r1_raw_$bs" ""
        line 7w "writeout of $F4 via mmap, $bs blocks" GB/s "r4_sq_$bs" "raw SQLite, 1 transaction" "r4_raw_$bs" "half-target >= 0.4" 'r >= 0.4'
    done
fi

# --- figure 8: several mounts of one database --------------------------------
# 8e compares one writeout on the shared mount and on an exclusive one with
# the same history: each on a new database holding only that file, the two
# in turn (which goes first alternates), before the commits of 8a-8c —
# which would otherwise leave the shared database's WAL up to
# BF_SQLITE_WAL_LIMIT full for the next writeout's checkpoint to copy, and
# old versions for its housekeeping to delete, costs the exclusive one
# would not pay.
if want 8; then
    mount_bf sha "$sdb" shared
    mount_bf shb "$sdb" shared
    mount_bf ex8 "$xdb"
    ctl create --blksize=2M --size=64M "$work/sha/follow"
    ctl create --blksize=2M --size="$F4" "$work/sha/wo"
    ctl create --blksize=2M --size="$F4" "$work/ex8/wo"
    for r in $(seq "$RUNS"); do
        for m in $((r % 2)) $(((r + 1) % 2)); do
            if [ $m = 1 ]; then
                run r8w_sh "$BFBENCH" dirty "$work/sha/wo" --length "$F4" --seed $((200 + r))
            else
                run r8w_ex "$BFBENCH" dirty "$work/ex8/wo" --length "$F4" --seed $((200 + r))
            fi
        done
    done
    umount_bf ex8
    for r in $(seq "$RUNS"); do
        run r8 "$BFBENCH" follow "$work/sha/follow" "$work/shb/follow" --count "$FOLLOW" --seed $((r * 1000))
    done
    # an idle watcher: mount B, nothing committed for 10 s
    for r in $(seq "$RUNS"); do
        b0=$(busy_ns shb)
        sleep 10
        b1=$(busy_ns shb)
        awk -v d=$((b1 - b0)) 'BEGIN { printf "%.4f\n", d / 1e9 / 10 * 100 }' >>"$work/res/r8idle"
    done
    line1 8a "commit on A seen in a mapping on B, p50" ms r8 "target <= 20 ms" 'v <= 20'
    line1 8b "  p99" ms r8.2 "target <= 100 ms" 'v <= 100'
    line1 8c "  max" ms r8.3 "(no target)" '1'
    line1 8d "idle watcher's CPU over 10 s, mount B" "%" r8idle "target < 0.5% of a core" 'v < 0.5'
    line 8e "writeout of $F4 via mmap, shared (B watching)" GB/s r8w_sh "the same, exclusive mount" r8w_ex "target >= 0.95" 'r >= 0.95'
    umount_bf shb
    umount_bf sha
fi

# --- figure 9: PostgreSQL against SQLite --------------------------------------
# A private server (tests/pg/pgserver.sh, with a real server's durability:
# fsync on), mounted over its unix socket; the same work on the SQLite mount
# in the same run.
if want 9; then
    if ! BF_PGSERVER_DURABLE=1 sh "$pgserver" start "$pgdir" >/dev/null; then
        echo "bench: figure 9: no PostgreSQL server could be started (see above)" >&2
    else
        eval "$(sh "$pgserver" env "$pgdir")"
        mount_bf pg "pg:$BF_PGTEST_CONNINFO"
        for m in pg sq; do
            ctl create --blksize=2M --size="$F1" "$work/$m/seq9"
            run "fill9_$m" "$BFBENCH" fill "$work/$m/seq9" --length "$F1" --seed 9 --writeout-every 256M
            ctl create --blksize=2M --size="$F4" "$work/$m/wo9"
        done
        for r in $(seq "$RUNS"); do
            for m in pg sq; do
                "$BFBENCH" cold "$work/$m/seq9" --cold reclaim
                run "r9_$m" "$BFBENCH" seqread "$work/$m/seq9" --seed 9
                run "r9w_$m" "$BFBENCH" dirty "$work/$m/wo9" --length "$F4" --seed $((900 + r))
            done
            # The references: plain libpq loops on the same server
            # (bench/rawpg, its scratch tables rawpg_*): the engine's
            # versioned load on 4 connections (the engine's readers), and
            # its uploads (autocommit, then one synchronous commit). MiB/s
            # to GB/s.
            if [ -x "${RAWPG:-}" ]; then
                "$RAWPG" "$BF_PGTEST_CONNINFO" fetch --mib $(($(bytes "$F1") / 1048576)) --runs 1 |
                    awk '/^fetch versioned load/ && /external conns=4/ { printf "%.6f\n", $(NF - 2) * 1.048576 / 1000 }' \
                        >>"$work/res/r9raw_fetch"
                "$RAWPG" "$BF_PGTEST_CONNINFO" upload --mib $(($(bytes "$F4") / 1048576)) --runs 1 |
                    awk '/^upload a transaction per block, async/ && / external / { printf "%.6f\n", $(NF - 2) * 1.048576 / 1000 }' \
                        >>"$work/res/r9raw_upload"
            fi
        done
        line 9a "cold seq read mmap, pg: (unix socket), 2M blocks" GB/s r9_pg "the same, sqlite" r9_sq ""
        line 9b "writeout of $F4 via mmap, pg:" GB/s r9w_pg "the same, sqlite" r9w_sq ""
        if [ -s "$work/res/r9raw_fetch" ] && [ -s "$work/res/r9raw_upload" ]; then
            line 9c "cold seq read mmap, pg:" GB/s r9_pg "plain libpq loop, 4 connections" r9raw_fetch "target >= 0.8" 'r >= 0.8'
            line 9d "writeout of $F4 via mmap, pg:" GB/s r9w_pg "plain libpq uploads + sync commit" r9raw_upload "target >= 0.8" 'r >= 0.8'
        else
            echo "9c   (no bench/rawpg: built without libpq, the libpq references are not measured)"
        fi
        umount_bf pg
        sh "$pgserver" stop "$pgdir"
    fi
fi

# --- figure 10: block servers (bigfilefs-protocol(7)) -------------------------
# The same cold sequential read (1a) from a mount on an exec: block server:
# blockd computing the pattern in C, and the Python example computed_array.py
# computing it with numpy; then the engine alone (bench/enginebench, no
# daemon, 2 loading threads), against the memory engine.
if want 10; then
    : "${BLOCKD:?set BLOCKD to tests/proto/blockd (make bench does)}"
    : "${ENGINEBENCH:?set ENGINEBENCH to bench/enginebench (make bench does)}"
    pcspec="exec:exec '$BLOCKD' --pattern $(bytes $F1):2097152:7"
    pyserver=""
    for p in "${PYTHON:-}" python3 /usr/bin/python3; do
        [ -n "$p" ] && "$p" -c 'import numpy' 2>/dev/null && { pyserver=$p; break; }
    done
    pyspec="exec:PYTHONPATH='${BF_SRCDIR:?}/python' exec '$pyserver' '$BF_SRCDIR/examples/computed_array.py' --size $F1 --seed 7"
    mount_bf pc "$pcspec" ro
    [ -z "$pyserver" ] || mount_bf py "$pyspec" ro
    ctl create --blksize=2M --size="$F1" "$work/mem/seq10"
    run fill10_mem "$BFBENCH" fill "$work/mem/seq10" --length "$F1" --seed 7 --writeout-every 256M
    for r in $(seq "$RUNS"); do
        for m in mem pc py; do
            case $m in
            mem) f=$work/mem/seq10 ;;
            pc) f=$work/pc/pattern ;;
            py) [ -n "$pyserver" ] || continue; f=$work/py/words.u64 ;;
            esac
            "$BFBENCH" cold "$f" --cold reclaim
            run "r10_$m" "$BFBENCH" seqread "$f" --seed 7
        done
        run r10e_mem "$ENGINEBENCH" mem: seq --length "$F1" --fill 2M --threads 2
        run r10e_pc "$ENGINEBENCH" "$pcspec" pattern --length "$F1" --threads 2
        [ -z "$pyserver" ] || run r10e_py "$ENGINEBENCH" "$pyspec" words.u64 --length "$F1" --threads 2
    done
    line 10a "cold seq read mmap, exec: server in C" GB/s r10_pc "memory backend" r10_mem "target >= 0.8" 'r >= 0.8'
    if [ -n "$pyserver" ]; then
        line 10b "  same, Python example computed_array.py" GB/s r10_py "memory backend" r10_mem "target >= 0.5" 'r >= 0.5'
    else
        echo "10b  (no python3 with numpy: the Python example is not measured)"
    fi
    line 10c "engine loads (no daemon), exec: server in C" GB/s r10e_pc "memory engine" r10e_mem ""
    [ -z "$pyserver" ] || line 10d "  same, Python example" GB/s r10e_py "memory engine" r10e_mem ""
    rm -f "$work/mem/seq10"
    umount_bf pc
    [ -z "$pyserver" ] || umount_bf py
fi

# --- figure 11: uncommitted changes far bigger than the dirty budget ----------
if want 11; then
    mount_bf sp "$pdb" "cache=$CACHE11,dirty=$D11"
    ctl create --blksize=2M --size="$F11" "$work/sp/big"
    ctl create --blksize=2M --size="$F11" "$work/sq/big11"
    for r in $(seq "$RUNS"); do
        run r11_sp "$BFBENCH" dirty "$work/sp/big" --length "$F11" --seed $((300 + r))
        run r11_sq "$BFBENCH" dirty "$work/sq/big11" --length "$F11" --seed $((300 + r))
        rm -f "$work/plain11"
        : >"$work/plain11"
        run r11_plain "$BFBENCH" dirty "$work/plain11" --length "$F11" --seed $((300 + r))
    done
    awk '/^VmHWM/ { printf "%.1f\n", $2 / 1024 }' "/proc/$pid_sp/status" >"$work/res/r11_hwm"
    echo $(( $(bytes $CACHE11) / 1048576 + $(bytes $D11) / 1048576 + 128 )) >"$work/res/budget11"
    rm -f "$work/plain11" "$work/sq/big11"
    line 11a "dirty $F11 via mmap + writeout, dirty=$D11" GB/s r11_sp.4 "the same, default dirty budget" r11_sq.4 ""
    line 11b "  same" GB/s r11_sp.4 "plain file, same disk, + fsync" r11_plain.4 "target >= 0.5" 'r >= 0.5'
    line 11c "  its writeout alone" GB/s r11_sp "default dirty budget" r11_sq ""
    line 11d "  daemon peak RSS, cache=$CACHE11" MiB r11_hwm "cache + dirty + 128 MiB" budget11 "target <= 1" 'r <= 1'
    umount_bf sp
fi

# --- figure 12: point-in-time views ---------------------------------------------
# @SERIAL/NAME is an older version of the file (every block rewritten since):
# read cold (RECLAIM) and warm, against the current file, runs interleaved.
if want 12; then
    ctl create --blksize=2M --size="$F1" "$work/sq/hist"
    run fill12_v1 "$BFBENCH" fill "$work/sq/hist" --length "$F1" --seed 12 --writeout-every 256M
    s12=$("$BIGFILECTL" sync "$work/sq/hist" | awk '/^serial:/ { print $2 }')
    run fill12_v2 "$BFBENCH" fill "$work/sq/hist" --length "$F1" --seed 13 --writeout-every 256M
    v12=$work/sq/@$s12/hist
    for r in $(seq "$RUNS"); do
        "$BFBENCH" cold "$v12" --cold reclaim
        run r12_view "$BFBENCH" seqread "$v12" --seed 12
        "$BFBENCH" cold "$work/sq/hist" --cold reclaim
        run r12_cur "$BFBENCH" seqread "$work/sq/hist" --seed 13
    done
    for r in $(seq "$RUNS"); do
        run r12w_view "$BFBENCH" seqread "$v12" --seed 12 --warm
        run r12w_cur "$BFBENCH" seqread "$work/sq/hist" --seed 13 --warm
    done
    line 12a "cold seq read mmap of @$s12/hist (older version)" GB/s r12_view "the current file" r12_cur "target >= 0.9" 'r >= 0.9'
    line 12b "warm seq read mmap of @$s12/hist" GB/s r12w_view "the current file, warm" r12w_cur "target >= 0.9" 'r >= 0.9'
    rm -f "$work/sq/hist"
fi

# --- figure 13: a result bigger than the budgets, written with numpy ---------
# bench/npwrite.py fills an array through numpy.memmap and commits it (a
# writeout; the plain file: fsync), on a mount with cache=$CACHE13,dirty=$D13;
# the data is checked after a remount; one round (16 GiB at full size).
if want 13; then
    nppy=""
    for p in "${PYTHON:-}" python3 /usr/bin/python3; do
        [ -n "$p" ] && "$p" -c 'import numpy' 2>/dev/null && { nppy=$p; break; }
    done
    if [ -z "$nppy" ]; then
        echo "13   skipped: no python with numpy"
    else
        np13() { PYTHONPATH="$BF_SRCDIR/python" "$nppy" "$BF_SRCDIR/bench/npwrite.py" "$@"; }
        mount_bf np "$ndb" "cache=$CACHE13,dirty=$D13"
        ctl create --blksize=2M --size="$F13" "$work/np/arr"
        run r13_bf np13 "$work/np/arr" "$(bytes $F13)" 13
        awk '/^VmHWM/ { printf "%.1f\n", $2 / 1024 }' "/proc/$pid_np/status" >"$work/res/r13_hwm"
        umount_bf np
        mount_bf np "$ndb"
        run r13_check "$BFBENCH" seqread "$work/np/arr" --length "$F13" --seed 13
        umount_bf np
        rm -f "$ndb"*
        truncate -s "$F13" "$work/plain13"
        run r13_plain np13 "$work/plain13" "$(bytes $F13)" 13
        rm -f "$work/plain13"
        echo 1536 >"$work/res/budget13"
        line 13a "numpy.memmap $F13 + writeout, time" s r13_bf "plain file + fsync, same disk" r13_plain "target <= 2" 'r <= 2'
        line 13b "  daemon peak RSS, cache=$CACHE13,dirty=$D13" MiB r13_hwm "1.5 GiB" budget13 "target <= 1" 'r <= 1'
        line1 13c "  read back after a remount" GB/s r13_check "every word checked" 'v > 0'
    fi
fi

echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
