#!/bin/sh
# SPDX-License-Identifier: MIT
# Set up and run every test of bigfilefs:
#   1. install the build dependencies (scripts/deps.sh);
#   2. plain build with -Werror and assertions (--enable-debug), `make check` (unit + integration + docs tests);
#   3. AddressSanitizer+UBSan build, `make check` again;
#   4. ThreadSanitizer build, the concurrency tests (`make check-concurrency`);
#   5. `make install` into a scratch DESTDIR, checked (man/check-install.sh);
#   6. `make distcheck`: the tarball builds and passes its tests on its own;
#   7. the Debian packages (scripts/test-packages.sh): built with
#      dpkg-buildpackage in a scratch copy, lintian, installed, the fstab and
#      Python module tests and the systemd unit example against the installed
#      files, purged.
# Builds go to build/{plain,asan,tsan,deb} under the source tree. Exits nonzero
# on any failure and ends with one line "tests: N passed, N failed".
# Environment: BF_TEST_STAGES="plain asan tsan install dist deb" (a subset), JOBS.
# The PostgreSQL backend is required here (deps.sh installs libpq-dev and the
# server): every build configures --with-postgresql=yes, and its tests fail
# instead of being skipped when no server is installed.
set -u
BF_PGTEST_REQUIRED=1
export BF_PGTEST_REQUIRED
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
STAGES=${BF_TEST_STAGES:-"plain asan tsan install dist deb"}

sh "$top/scripts/deps.sh" || { echo "test-all: installing dependencies failed" >&2; exit 1; }
autoreconf -fi >/dev/null 2>&1 || { autoreconf -fi; echo "test-all: autoreconf failed" >&2; exit 1; }

# SQLite daemons answer reads by splicing them from the block file when they
# may make pipes of 1 MiB and a page (bigfilefs(8), -o splice=auto): let them,
# so that the tests run that path (on a machine where this cannot be set, the
# daemons copy instead, and the tests run that path).
pmax=/proc/sys/fs/pipe-max-size
pmax_was=$(cat "$pmax" 2>/dev/null || echo 0)
if [ "$pmax_was" -lt 2097152 ]; then
    if echo 2097152 >"$pmax" 2>/dev/null; then
        trap 'echo "$pmax_was" >"$pmax"' EXIT
        trap 'exit 130' INT TERM
    else
        echo "test-all: cannot raise $pmax: reads are copied, not spliced"
    fi
fi

failed_stages=""
run_stage() {   # name configure-args make-target
    name=$1; shift; cfg=$1; shift; target=$1
    dir="$top/build/$name"
    echo "=== $name: configure $cfg; make $target"
    mkdir -p "$dir"
    ( cd "$dir" &&
      "$top/configure" -q --enable-werror --enable-debug --with-postgresql=yes $cfg &&
      make -s -j"$JOBS" &&
      make -j"$JOBS" $target ) || failed_stages="$failed_stages $name"
}
# The daemon is multi-threaded: run the integration tests (built plain —
# Criterion cannot start under TSan) against the ThreadSanitizer daemon; the
# harness fails a test whose daemon printed a ThreadSanitizer warning.
tsan_daemon_tests() {
    [ -x "$top/build/tsan/bigfilefs" ] && [ -d "$top/build/plain/tests/integration" ] || return 0
    out="$top/build/tsan/integration-tsan"; mkdir -p "$out"
    for t in "$top"/build/plain/tests/integration/test_*; do
        [ -x "$t" ] || continue
        n=$(basename "$t")
        echo "=== tsan daemon: $n"
        # The PostgreSQL programs (*_pg) need their private server, as
        # make check gives them (tests/pg/pgserver.sh, stopped at the end).
        case $n in
            *_pg) run="sh $top/tests/pg/pgserver.sh run" ;;
            *) run="" ;;
        esac
        if BIGFILEFS="$top/build/tsan/bigfilefs" BIGFILECTL="$top/build/tsan/bigfilectl" \
           BF_SRCDIR="$top" BF_BUILDDIR="$top/build/tsan" PYTHON=python3 \
           TSAN_OPTIONS='halt_on_error=1:second_deadlock_stack=1' \
           timeout --kill-after=10 900 $run "$t" >"$out/$n.log" 2>&1; then
            r=PASS
        else
            r=FAIL; failed_stages="$failed_stages tsan-daemon:$n"
        fi
        printf ':test-result: %s\n' "$r" >"$out/$n.trs"
        tail -n 1 "$out/$n.log"
    done
}
for s in $STAGES; do
    case $s in
        plain)   run_stage plain "" check ;;
        asan)    run_stage asan "--enable-asan" check ;;
        tsan)    run_stage tsan "--enable-tsan" check-concurrency
                 tsan_daemon_tests ;;
        install) echo "=== install: make install DESTDIR=..., checked"
                 [ -x "$top/man/check-install.sh" ] && [ -f "$top/build/plain/Makefile" ] &&
                 sh "$top/man/check-install.sh" "$top/build/plain" || failed_stages="$failed_stages install" ;;
        dist)    echo "=== dist: make distcheck"
                 ( cd "$top/build/plain" &&
                   make -s distcheck DISTCHECK_CONFIGURE_FLAGS="--enable-debug --with-postgresql=yes" \
                       >"$top/build/distcheck.log" 2>&1 ) &&
                     tail -n 4 "$top/build/distcheck.log" ||
                     { tail -n 40 "$top/build/distcheck.log"; failed_stages="$failed_stages dist"; } ;;
        deb)     echo "=== deb: Debian packages built, linted, installed, tested, purged"
                 JOBS=$JOBS sh "$top/scripts/test-packages.sh" "$top/build/deb" || failed_stages="$failed_stages deb" ;;
        *) echo "test-all: unknown stage $s" >&2; exit 2 ;;
    esac
done

# One closing line over every test of every build: a Criterion binary counts
# its test cases (its "Synthesis" line), any other test counts once.
pass=0; fail=0; skip=0
for trs in $(find "$top/build" -name '*.trs' 2>/dev/null); do
    log=${trs%.trs}.log
    syn=$(sed -n 's/.*Synthesis: Tested: *\([0-9]*\) | Passing: *\([0-9]*\) | Failing: *\([0-9]*\) | Crashing: *\([0-9]*\).*/\2 \3 \4/p' "$log" 2>/dev/null | tail -n 1)
    r=$(sed -n 's/^:test-result: //p' "$trs" | head -n 1)
    if [ -n "$syn" ]; then
        set -- $syn
        pass=$((pass + $1)); fail=$((fail + $2 + $3))
        case $r in PASS|SKIP) ;; *) [ $(($2 + $3)) -gt 0 ] || fail=$((fail + 1)) ;; esac
        continue
    fi
    case $r in
        PASS|XFAIL) pass=$((pass + 1)) ;;
        SKIP) skip=$((skip + 1)) ;;
        *) fail=$((fail + 1)) ;;
    esac
done
if [ -n "$failed_stages" ]; then
    echo "test-all: FAILED stages:$failed_stages" >&2
    for log in $(find "$top/build" -name '*.log' ! -name config.log ! -name test-suite.log 2>/dev/null); do
        trs=${log%.log}.trs
        [ -f "$trs" ] && grep -q '^:test-result: \(FAIL\|ERROR\)' "$trs" &&
            { echo "----- $log"; tail -n 60 "$log"; }
    done
    [ "$fail" -gt 0 ] || fail=1
fi
echo "tests: $pass passed, $fail failed, $skip skipped"
[ -z "$failed_stages" ]
