#!/bin/sh
# SPDX-License-Identifier: MIT
# The deb stage of scripts/test-all.sh: build the Debian packages of debian/,
# install them on this machine, test the installed files, and purge them.
#   build     dpkg-buildpackage -us -uc -b in a scratch copy of the checkout
#             (its tracked and untracked, not ignored, files), after
#             installing the packaging tools (scripts/deps.sh packaging) and
#             checking debian/control's build dependencies: the checkout is
#             left as it was;
#   lintian   lintian on the packages: an error fails (warnings are shown);
#   pyproject python/pyproject.toml: `pip install --no-build-isolation
#             --no-index` into a venv (offline), imported from there, the
#             version of configure.ac;
#   install   the three packages installed with apt-get; every file where it
#             belongs, the programs run, the example of libbigfile-dev
#             compiles through pkg-config, python3 imports the module from
#             /usr/lib/python3/dist-packages;
#   fstab     man/fstab.sh (mount -t fuse.bigfilefs and an fstab line)
#             against the installed bigfilefs (BF_TEST_INSTALLED=1);
#   python    python/run-module-test.sh against the installed module;
#   systemd   docs/systemd/check-unit.sh: systemd-analyze verify of the mount
#             unit example, and a mount with its options;
#   purge     dpkg --purge of the three packages: nothing of them is left.
# If a bigfilefs package was installed before, the stage does not replace it:
# the checks that need the installed packages are skipped. Whatever fails,
# the packages it installed are purged at exit.
# Each check writes OUTDIR/NAME.log and OUTDIR/NAME.trs (":test-result:
# PASS|FAIL|SKIP"), which test-all.sh counts in its closing line; the
# packages are left in OUTDIR. Exits 1 if any check failed.
#
#   sh scripts/test-packages.sh [OUTDIR]      (default: build/deb)
# Environment: JOBS (parallel build jobs).
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$top/build/deb}
mkdir -p "$out" && out=$(cd "$out" && pwd) || exit 1
rm -f "$out"/*.trs "$out"/*.log "$out"/*.deb "$out"/*.changes "$out"/*.buildinfo
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
PKGS="bigfilefs libbigfile-dev python3-bigfilefs"
PY=/usr/bin/python3
version=$(sed -n 's/^AC_INIT(\[bigfilefs\], *\[\([^]]*\)\].*/\1/p' "$top/configure.ac")
scratch=""
installed=no
failed=0

cleanup() {
    st=$?
    if [ $installed = yes ]; then
        echo "test-packages: purging $PKGS"
        dpkg --purge $PKGS >/dev/null 2>&1
    fi
    [ -n "$scratch" ] && rm -rf "$scratch"
    exit $st
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# check NAME FUNCTION: run FUNCTION with its output in OUTDIR/NAME.log and
# record its result (exit 0 PASS, 77 SKIP, else FAIL).
check() {
    name=$1; fn=$2
    start=$(date +%s)
    ( $fn ) >"$out/$name.log" 2>&1
    case $? in
        0) r=PASS ;;
        77) r=SKIP ;;
        *) r=FAIL; failed=1 ;;
    esac
    printf ':test-result: %s\n' "$r" >"$out/$name.trs"
    echo "$r: deb/$name ($(($(date +%s) - start)) s)"
    case $r in
        FAIL) tail -n 30 "$out/$name.log" | sed 's/^/    /' ;;
        SKIP) grep '^SKIP' "$out/$name.log" | tail -n 1 | sed 's/^/    /' ;;
    esac
}
fail() { echo "FAIL: $*"; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }
ok() { echo "ok: $*"; }

# --- build: dpkg-buildpackage in a scratch copy -----------------------------
do_build() {
    sh "$top/scripts/deps.sh" packaging || fail "installing the packaging tools failed"
    [ -n "$version" ] || fail "no version in configure.ac's AC_INIT"
    cl=$(cd "$top" && dpkg-parsechangelog -S Version) || fail "cannot read debian/changelog"
    [ "$cl" = "$version" ] || fail "debian/changelog is at $cl, configure.ac at $version"
    src=$scratch/bigfilefs-$version
    mkdir -p "$src"
    command -v git >/dev/null 2>&1 && git -C "$top" rev-parse --git-dir >/dev/null 2>&1 ||
        fail "$top is not a git checkout: cannot tell its files from build products"
    # Tracked and untracked files, not the ignored ones (configure, build/...);
    # a tracked file deleted in the work tree is left out.
    (cd "$top" && git ls-files -z -co --exclude-standard | tar --null -T - --ignore-failed-read -cf - 2>/dev/null) |
        tar -C "$src" -xf - || fail "copying the checkout to $src failed"
    (cd "$src" && dpkg-checkbuilddeps) || fail "build dependencies of debian/control are missing (add them to scripts/deps.sh)"
    (cd "$src" && DEB_BUILD_OPTIONS="parallel=$JOBS" timeout 1200 dpkg-buildpackage -us -uc -b) ||
        fail "dpkg-buildpackage failed"
    for p in $PKGS; do
        ls "$scratch/${p}_${version}_"*.deb >/dev/null 2>&1 || fail "no package $p was built"
    done
    cp "$scratch"/*.deb "$scratch"/*.changes "$scratch"/*.buildinfo "$out"/ || fail "cannot copy the packages to $out"
    ok "built: $(cd "$out" && echo *.deb)"
}

# --- lintian ------------------------------------------------------------------
do_lintian() {
    [ -f "$out/bigfilefs_${version}_$(dpkg --print-architecture).changes" ] || skip "no packages built"
    lintian --fail-on error --info --display-experimental \
        "$out/bigfilefs_${version}_$(dpkg --print-architecture).changes" || fail "lintian found errors"
    ok "lintian: no errors"
}

# --- pyproject: pip install ./python, offline -----------------------------------
do_pyproject() {
    # Install from a copy: setuptools builds in the tree (build/, *.egg-info).
    d=$scratch/pyproject
    mkdir -p "$d" && cp -a "$top/python" "$d/python" || fail "cannot copy python/"
    # --system-site-packages: setuptools comes from the system, nothing is downloaded.
    $PY -m venv --system-site-packages "$d/venv" || fail "python3 -m venv failed"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$d/venv/bin/pip" install --no-build-isolation --no-index "$d/python" ||
        fail "pip install --no-build-isolation --no-index ./python failed"
    got=$(cd / && "$d/venv/bin/python" -c '
import importlib.metadata as md, bigfilefs
print(bigfilefs.__file__, md.version("bigfilefs"), getattr(bigfilefs, "__version__", "-"))') ||
        fail "the module installed from pyproject.toml does not import"
    set -- $got
    case $1 in "$d/venv/lib/"*/site-packages/bigfilefs/__init__.py) ;; *) fail "bigfilefs imported from $1, not the venv" ;; esac
    [ "$2" = "$version" ] || fail "python/pyproject.toml says version $2, configure.ac $version"
    [ "$3" = - ] || [ "$3" = "$version" ] || fail "bigfilefs.__version__ is $3, configure.ac says $version"
    ok "pip install ./python: bigfilefs $2 imports from $1"
}

# --- install ----------------------------------------------------------------------
do_install() {
    ls "$out/bigfilefs_${version}_"*.deb >/dev/null 2>&1 || skip "no packages built"
    for p in $PKGS; do
        if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'installed$'; then
            skip "$p is installed on this machine already ($(dpkg-query -W -f='${Version}' "$p")): not replacing it; purge it to run the installed-package tests"
        fi
    done
    debs=""
    for p in $PKGS; do debs="$debs $(ls "$out/${p}_${version}_"*.deb)"; done
    echo "installing:$debs"
    touch "$out/.installing"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $debs || fail "apt-get install failed"

    for f in /usr/bin/bigfilefs /usr/bin/bigfilectl; do
        [ -x $f ] && ok "$f" || fail "$f is not installed"
    done
    /usr/bin/bigfilefs -V | grep -qx "bigfilefs $version" && ok "bigfilefs -V: $version" || fail "bigfilefs -V does not say $version"
    /usr/bin/bigfilectl --help >/dev/null && ok "bigfilectl --help" || fail "bigfilectl --help fails"
    dpkg-query -W -f='${Depends}' bigfilefs | grep -q 'fuse3' && ok "bigfilefs depends on fuse3" ||
        fail "bigfilefs does not depend on fuse3: $(dpkg-query -W -f='${Depends}' bigfilefs)"
    for m in bigfilefs.8 bigfilectl.1 ioctl_bigfile.2 bigfilefs-protocol.7; do
        page=${m%.*}; sect=${m##*.}
        p=$(man -w "$sect" "$page" 2>/dev/null)
        [ "$p" = "/usr/share/man/man$sect/$m.gz" ] && ok "man $sect $page: $p" || fail "man $sect $page finds '$p'"
    done
    dpkg -S /usr/share/man/man2/ioctl_bigfile.2.gz | grep -q '^libbigfile-dev:' && ok "ioctl_bigfile(2) is in libbigfile-dev" ||
        fail "ioctl_bigfile(2) is not in libbigfile-dev"
    [ -f /usr/include/bigfile/ioctl.h ] && ok "/usr/include/bigfile/ioctl.h" || fail "no /usr/include/bigfile/ioctl.h"
    v=$(pkg-config --modversion bigfile) && [ "$v" = "$version" ] && ok "pkg-config --modversion bigfile: $v" ||
        fail "pkg-config bigfile: '$v'"
    cflags=$(pkg-config --cflags bigfile) || fail "pkg-config --cflags bigfile fails"
    ex=/usr/share/doc/libbigfile-dev/examples/mapdemo.c
    [ -f $ex ] && ${CC:-cc} -std=gnu11 -Wall -Wextra -Werror $cflags $ex -o "$scratch/mapdemo" &&
        ok "$ex compiles with \$(pkg-config --cflags bigfile)" || fail "$ex is missing or does not compile"
    [ -f /usr/share/doc/bigfilefs/examples/mnt-arrays.mount ] && ok "the systemd unit example" ||
        fail "no /usr/share/doc/bigfilefs/examples/mnt-arrays.mount"
    # Debian's python3, from / and from python/ of the source tree (where
    # the package bigfilefs/ lies, and which PYTHONSAFEPATH=1, as run-module-test.sh
    # sets with BF_TEST_INSTALLED=1, must keep out of sys.path).
    want=/usr/lib/python3/dist-packages/bigfilefs/__init__.py
    got=$(cd / && $PY -c 'import bigfilefs; print(bigfilefs.__file__)') && [ "$got" = $want ] &&
        ok "$PY imports bigfilefs from $got" || fail "$PY imports bigfilefs from '$got', not $want"
    got=$(cd "$top/python" && PYTHONSAFEPATH=1 $PY -c 'import bigfilefs; print(bigfilefs.__file__)') && [ "$got" = $want ] &&
        ok "PYTHONSAFEPATH=1 $PY in python/ imports $got" || fail "PYTHONSAFEPATH=1 $PY in python/ imports '$got'"
    ls /usr/lib/python3/dist-packages/bigfilefs/__pycache__/__init__.*.pyc >/dev/null 2>&1 &&
        ok "the module is byte-compiled on installation" || fail "no byte-compiled bigfilefs in /usr/lib/python3/dist-packages/bigfilefs/__pycache__"
}

installed_env() {
    [ -f "$out/install.trs" ] && grep -q PASS "$out/install.trs" || skip "the packages are not installed"
    BIGFILEFS=/usr/bin/bigfilefs BIGFILECTL=/usr/bin/bigfilectl BF_SRCDIR=$top PYTHON=$PY \
        BF_TEST_INSTALLED=1 timeout --kill-after=10 300 "$@"
}
do_fstab() { installed_env sh "$top/man/fstab.sh"; }
do_python() { installed_env sh "$top/python/run-module-test.sh"; }
do_systemd() { installed_env sh "$top/docs/systemd/check-unit.sh"; }

# --- purge --------------------------------------------------------------------------
do_purge() {
    [ $installed = yes ] || skip "the packages were not installed"
    files=$(dpkg -L $PKGS 2>/dev/null | while read -r f; do [ -f "$f" ] && echo "$f"; done)
    dpkg --purge $PKGS || fail "dpkg --purge failed"
    for p in $PKGS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'installed$' && fail "$p is still installed"
    done
    left=$(for f in $files; do [ -e "$f" ] && echo "$f"; done)
    [ -z "$left" ] || fail "left after the purge: $left"
    ! ls -d /usr/lib/python3/dist-packages/bigfilefs >/dev/null 2>&1 ||
        fail "/usr/lib/python3/dist-packages/bigfilefs is left after the purge"
    ok "purged $PKGS: none of their files is left"
}

scratch=$(mktemp -d /tmp/bigfilefs-deb.XXXXXX) || exit 1
check build do_build
check lintian do_lintian
check pyproject do_pyproject
rm -f "$out/.installing"
check install do_install
# install ran in a subshell: whether it got as far as apt-get shows in its marker.
[ -f "$out/.installing" ] && installed=yes && rm -f "$out/.installing"
check fstab do_fstab
check python do_python
check systemd do_systemd
check purge do_purge
[ "$(cat "$out/purge.trs")" = ':test-result: PASS' ] && installed=no
exit $failed
