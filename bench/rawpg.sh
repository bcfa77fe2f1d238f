#!/bin/sh
# SPDX-License-Identifier: MIT
# Run every measurement of bench/rawpg (the pg: engine's design numbers,
# docs/design/PG-ENGINE.md) on two private servers: one as the tests start
# it (fsync off) and one with a real server's durability
# (BF_PGSERVER_DURABLE=1: fsync, full_page_writes, wal_level replica).
#   sh bench/rawpg.sh [RAWPG] [MIB]
# RAWPG: the built program (default ./bench/rawpg); MIB: data per fetch
# and upload run (default 256). Prints the machine's load average with the
# results: on a shared machine the numbers mean little without it.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
rawpg=$(cd "$(dirname "${1:-./bench/rawpg}")" && pwd)/$(basename "${1:-./bench/rawpg}")
mib=${2:-256}
[ -x "$rawpg" ] || { echo "rawpg.sh: $rawpg: not built (configure found no libpq?)" >&2; exit 1; }
echo "# $(date -u +%FT%TZ) $(nproc) CPUs; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
sh "$here/../tests/pg/pgserver.sh" run sh -c '
    r=$1 m=$2
    echo "## server: fsync off (as make check runs it)"
    "$r" "$BF_PGTEST_CONNINFO" fetch --mib "$m"
    "$r" "$BF_PGTEST_CONNINFO" upload --mib "$m"
    "$r" "$BF_PGTEST_CONNINFO" upload --mib "$((m / 4))" --data sparse --runs 3
    "$r" "$BF_PGTEST_CONNINFO" commit
    "$r" "$BF_PGTEST_CONNINFO" notify
    "$r" "$BF_PGTEST_CONNINFO_TCP" notify
' rawpg "$rawpg" "$mib" 2>&1
echo "# load average: $(cut -d' ' -f1-3 /proc/loadavg)"
BF_PGSERVER_DURABLE=1 sh "$here/../tests/pg/pgserver.sh" run sh -c '
    r=$1 m=$2
    echo "## server: fsync on, full_page_writes on, wal_level replica"
    "$r" "$BF_PGTEST_CONNINFO" upload --mib "$m"
    "$r" "$BF_PGTEST_CONNINFO" commit
    "$r" "$BF_PGTEST_CONNINFO_TCP" notify
' rawpg "$rawpg" "$mib" 2>&1
echo "# load average: $(cut -d' ' -f1-3 /proc/loadavg)"
