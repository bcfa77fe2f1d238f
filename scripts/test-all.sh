#!/bin/sh
# Set up and run every test of bigfilefs:
#   1. install the build dependencies (scripts/deps.sh);
#   2. plain build with -Werror, `make check` (unit + integration + docs tests);
#   3. AddressSanitizer+UBSan build, `make check` again;
#   4. ThreadSanitizer build, the concurrency tests (`make check-concurrency`);
#   5. `make install` into a scratch DESTDIR, checked (man/check-install.sh).
# Builds go to build/{plain,asan,tsan} under the source tree. Exits nonzero
# on any failure and ends with one line "tests: N passed, N failed".
# Environment: BF_TEST_STAGES="plain asan tsan install" (a subset to run), JOBS.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
STAGES=${BF_TEST_STAGES:-"plain asan tsan install"}

sh "$top/scripts/deps.sh" || { echo "test-all: installing dependencies failed" >&2; exit 1; }
autoreconf -fi >/dev/null 2>&1 || { autoreconf -fi; echo "test-all: autoreconf failed" >&2; exit 1; }

failed_stages=""
run_stage() {   # name configure-args make-target
    name=$1; shift; cfg=$1; shift; target=$1
    dir="$top/build/$name"
    echo "=== $name: configure $cfg; make $target"
    mkdir -p "$dir"
    ( cd "$dir" &&
      "$top/configure" -q --enable-werror $cfg &&
      make -s -j"$JOBS" &&
      make -j"$JOBS" $target ) || failed_stages="$failed_stages $name"
}
for s in $STAGES; do
    case $s in
        plain)   run_stage plain "" check ;;
        asan)    run_stage asan "--enable-asan" check ;;
        tsan)    run_stage tsan "--enable-tsan" check-concurrency ;;
        install) echo "=== install: make install DESTDIR=..., checked"
                 [ -x "$top/man/check-install.sh" ] && [ -f "$top/build/plain/Makefile" ] &&
                 sh "$top/man/check-install.sh" "$top/build/plain" || failed_stages="$failed_stages install" ;;
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
