#!/bin/sh
# SPDX-License-Identifier: MIT
# A private PostgreSQL server for the tests and benchmarks of the pg: engine.
#
#   pgserver.sh start DIR     initdb into DIR/data (DIR absent or empty; made),
#                             start the server, print its parameters (as `env`)
#   pgserver.sh env DIR       print the parameters as shell assignments:
#                             BF_PGTEST_CONNINFO (unix socket in DIR),
#                             BF_PGTEST_CONNINFO_TCP (127.0.0.1, as a remote
#                             machine talks to it), BF_PGTEST_DIR,
#                             BF_PGTEST_PORT, BF_PGTEST_BINDIR, BF_PGSERVER
#   pgserver.sh restart DIR [MODE]
#                             stop (MODE fast, the default, or immediate: every
#                             backend ends at once, as in a crash, and the
#                             start recovers) and start again on the same
#                             port: for tests of reconnects
#   pgserver.sh stop DIR      stop (fast; immediate, then SIGKILL as
#                             fallbacks) and remove DIR. Safe to repeat, and
#                             safe on a DIR that holds no server.
#   pgserver.sh run CMD [ARG...]
#                             start a server in a new /tmp/bfpg-XXXXXX, run
#                             CMD with the parameters exported, stop the
#                             server whatever happens, exit with CMD's status
#   pgserver.sh test TEST [ARG...]
#                             make check's LOG_COMPILER: `run TEST` if TEST is
#                             one of $BF_PG_TESTS (paths relative to the build
#                             directory) and BF_PGTEST_CONNINFO is unset (set:
#                             the tests use that server), else just TEST.
#                             With no server installed, a test of
#                             BF_PG_TESTS is skipped (exit 77), unless
#                             BF_PGTEST_REQUIRED=1 (scripts/test-all.sh):
#                             then it fails.
#
# The server: trust authentication, role and database `postgres`, fsync off
# and wal_level minimal (tests need not survive power cuts), synchronous_commit
# on, and small settings for a 2-core test machine. BF_PGSERVER_DURABLE=1
# starts it with a real server's durability instead (fsync, full_page_writes,
# wal_level replica), for measurements. Its log is DIR/server.log.
#
# Always stopped: `run` stops the server when CMD ends and on SIGINT, SIGTERM
# and SIGHUP (forwarding the signal to CMD first); if `run` itself is
# SIGKILLed, a watchdog (in a session of its own, so that the process-group
# kill of `timeout` does not reach it) stops the server once neither `run`
# nor anything it started holds the watch pipe (fd 9) any more. The server
# never holds fd 9: pg_ctl starts it in a session of its own with fd 9
# closed.
#
# As root, initdb and the server run as the user `postgres` (initdb refuses
# root; the postgresql package creates the user). As another user, they run
# as that user. The server binaries are the newest
# /usr/lib/postgresql/*/bin, or $BF_PG_BINDIR.
set -eu

me=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")

die() {
    echo "pgserver: $*" >&2
    exit 1
}

bindir() {
    if [ -n "${BF_PG_BINDIR:-}" ]; then
        [ -x "$BF_PG_BINDIR/initdb" ] && [ -x "$BF_PG_BINDIR/pg_ctl" ] ||
            die "BF_PG_BINDIR=$BF_PG_BINDIR: no initdb and pg_ctl there"
        echo "$BF_PG_BINDIR"
        return
    fi
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do
        [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && b=$d
    done
    [ -n "${b:-}" ] || die "no PostgreSQL server found (/usr/lib/postgresql/*/bin; install the package postgresql, or set BF_PG_BINDIR)"
    echo "$b"
}

# Run "$@" as the server's user, with fd 9 closed (see above).
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@" 9>&-
    else
        "$@" 9>&-
    fi
}

free_port() {
    # A random port in [20000, 60000); a taken one makes the start fail and
    # the caller try another.
    echo $((20000 + $(od -An -N2 -tu2 /dev/urandom) % 40000))
}

configure_server() { # DIR PORT
    fsync=off wal=minimal
    [ "${BF_PGSERVER_DURABLE:-0}" = 0 ] || fsync=on wal=replica
    cat >>"$1/data/postgresql.conf" <<EOF
# bigfilefs tests (tests/pg/pgserver.sh)
port = $2
listen_addresses = '127.0.0.1'
unix_socket_directories = '$1'
fsync = $fsync
full_page_writes = $fsync
synchronous_commit = on
wal_level = $wal
max_wal_senders = 0
max_wal_size = 1GB
checkpoint_timeout = 30min
shared_buffers = 128MB
max_connections = 100
max_worker_processes = 2
max_parallel_workers = 0
max_parallel_workers_per_gather = 0
max_parallel_maintenance_workers = 0
dynamic_shared_memory_type = posix
autovacuum_naptime = 10s
log_min_messages = warning
log_line_prefix = '%m [%p] '
EOF
}

write_env() { # DIR PORT BINDIR
    cat >"$1/env" <<EOF
BF_PGTEST_CONNINFO='host=$1 port=$2 user=postgres dbname=postgres'
BF_PGTEST_CONNINFO_TCP='host=127.0.0.1 port=$2 user=postgres dbname=postgres'
BF_PGTEST_DIR='$1'
BF_PGTEST_PORT='$2'
BF_PGTEST_BINDIR='$3'
BF_PGSERVER='$me'
EOF
}

cmd_start() { # DIR
    dir=$1
    case $dir in /*) ;; *) dir=$(pwd)/$dir ;; esac
    # The socket path DIR/.s.PGSQL.PORT must fit in sun_path (108 bytes).
    [ ${#dir} -le 80 ] || die "$dir: too long a path for the server's socket (80 characters at most)"
    if [ -e "$dir" ]; then
        if ! [ -d "$dir" ] || [ -n "$(ls -A "$dir")" ]; then
            die "$dir: exists and is not an empty directory"
        fi
    else
        mkdir -p "$dir"
    fi
    : >"$dir/.bf-pgserver" # marks the directory as ours for `stop`
    b=$(bindir)
    chmod 0755 "$dir"
    if [ "$(id -u)" -eq 0 ]; then
        id -u postgres >/dev/null 2>&1 || die "no user 'postgres' to run the server as (install the package postgresql)"
        chown postgres "$dir"
    fi
    as_pg "$b/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C -N \
        >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        die "initdb failed"
    }
    cp "$dir/data/postgresql.conf" "$dir/postgresql.conf.orig"
    tries=0
    while :; do
        port=$(free_port)
        cp "$dir/postgresql.conf.orig" "$dir/data/postgresql.conf"
        configure_server "$dir" "$port"
        if as_pg "$b/pg_ctl" start -w -t 60 -s -D "$dir/data" -l "$dir/server.log" >/dev/null 2>&1; then
            break
        fi
        tries=$((tries + 1))
        if ! grep -q 'could not bind\|could not create listen socket\|already in use' "$dir/server.log" 2>/dev/null ||
            [ $tries -ge 20 ]; then
            cat "$dir/server.log" >&2 2>/dev/null || true
            cmd_stop "$dir"
            die "the server did not start"
        fi
    done
    write_env "$dir" "$port" "$b"
    cat "$dir/env"
}

cmd_env() { # DIR
    [ -f "$1/env" ] || die "$1: no server started there"
    cat "$1/env"
}

cmd_restart() { # DIR [MODE]
    [ -f "$1/env" ] || die "$1: no server started there"
    mode=${2:-fast}
    case $mode in fast | immediate) ;; *) die "restart: mode fast or immediate, not $mode" ;; esac
    b=$(bindir)
    as_pg "$b/pg_ctl" restart -w -t 60 -s -m "$mode" -D "$1/data" -l "$1/server.log" >/dev/null ||
        die "the server did not restart (see $1/server.log)"
}

cmd_stop() { # DIR
    dir=$1
    [ -d "$dir" ] || return 0
    rmdir "$dir" 2>/dev/null && return 0 # empty: start failed early
    [ -e "$dir/.bf-pgserver" ] || die "$dir: not a directory of pgserver.sh; not touched"
    pidfile=$dir/data/postmaster.pid
    if [ -f "$pidfile" ]; then
        b=$(bindir)
        pid=$(head -n 1 "$pidfile" 2>/dev/null || true)
        as_pg "$b/pg_ctl" stop -w -t 20 -s -m fast -D "$dir/data" >/dev/null 2>&1 ||
            as_pg "$b/pg_ctl" stop -w -t 10 -s -m immediate -D "$dir/data" >/dev/null 2>&1 ||
            if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
                # The postmaster's children exit when it dies.
                kill -KILL "$pid" 2>/dev/null || true
                echo "pgserver: $dir: killed the server (pid $pid)" >&2
            fi
    fi
    rm -rf "$dir"
}

cmd_run() { # CMD [ARG...]
    [ $# -ge 1 ] || die "run: no command"
    command -v setsid >/dev/null || die "run: setsid (util-linux) is needed for the watchdog"
    dir=$(mktemp -d /tmp/bfpg-XXXXXX)
    child=
    # A trapped signal interrupts `wait` (not a foreground command), hence
    # the child in the background below.
    for sig in INT TERM HUP; do
        # shellcheck disable=SC2064
        trap "on_signal $sig" "$sig"
    done
    (cmd_start "$dir") >/dev/null || {
        cmd_stop "$dir"
        exit 1
    }
    set -a
    . "$dir/env"
    set +a
    # The watchdog: stops the server when every holder of fd 9 is gone.
    mkfifo "$dir/watch"
    setsid sh -c 'cat "$1" >/dev/null; exec sh "$2" stop "$3"' watchdog \
        "$dir/watch" "$me" "$dir" </dev/null >/dev/null 2>&1 &
    exec 9>"$dir/watch"
    "$@" &
    child=$!
    set +e
    wait "$child"
    rc=$?
    set -e
    cmd_stop "$dir"
    exit "$rc"
}

on_signal() { # SIG
    trap - INT TERM HUP
    if [ -n "$child" ]; then
        # TERM, not the signal itself: a background child of a
        # non-interactive shell ignores SIGINT.
        kill -s TERM "$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    cmd_stop "$dir"
    case $1 in INT) exit 130 ;; TERM) exit 143 ;; *) exit 129 ;; esac
}

cmd_test() { # TEST [ARG...]
    [ $# -ge 1 ] || die "test: no test"
    if [ -z "${BF_PGTEST_CONNINFO:-}" ]; then
        for t in ${BF_PG_TESTS:-}; do
            case $1 in "$t" | */"$t") ;; *) continue ;; esac
            if ! (bindir) >/dev/null 2>&1; then
                [ "${BF_PGTEST_REQUIRED:-0}" = 0 ] ||
                    die "$1 needs a PostgreSQL server and none is installed (BF_PGTEST_REQUIRED is set: failing, not skipping)"
                echo "*** SKIPPED: $1 needs a PostgreSQL server and none is installed" \
                    "(/usr/lib/postgresql/*/bin; Debian: apt install postgresql)" >&2
                exit 77
            fi
            cmd_run "$@"
        done
    fi
    exec "$@"
}

[ $# -ge 1 ] || die "usage: pgserver.sh start|env|restart|stop DIR | run CMD... | test TEST..."
cmd=$1
shift
case $cmd in
    restart)
        [ $# -eq 1 ] || [ $# -eq 2 ] || die "usage: pgserver.sh restart DIR [fast|immediate]"
        cmd_restart "$@"
        ;;
    start | env | stop)
        [ $# -eq 1 ] || die "usage: pgserver.sh $cmd DIR"
        "cmd_$cmd" "$1"
        ;;
    run | test) "cmd_$cmd" "$@" ;;
    *) die "unknown command $cmd" ;;
esac
