#!/bin/sh
# SPDX-License-Identifier: MIT
# Check `make install`: install a configured, built tree into a scratch
# DESTDIR and check that everything a user needs is where it belongs:
#   bigfilefs (bindir or sbindir), bigfilectl (bindir), bigfile/ioctl.h
#   (includedir), bigfile.pc (libdir/pkgconfig) usable by pkg-config, the
#   manual pages in man1/man2/man7/man8, the Python module (pythondir) importable
#   and agreeing with the header, and the examples (docdir/examples).
# The example program of ioctl_bigfile(2) and examples/mapdemo.c are
# compiled against the installed header, found through pkg-config, exactly
# as the manual tells a user. Then `make uninstall` must leave no file.
#
#   sh man/check-install.sh BUILDDIR     (scripts/test-all.sh does this)
#
# Exits 0 when all holds, 1 otherwise. Leaves nothing behind.
set -u
[ $# -eq 1 ] && [ -f "$1/Makefile" ] || { echo "usage: $0 BUILDDIR (a configured build tree)" >&2; exit 2; }
b=$(cd "$1" && pwd)
make=${MAKE:-make}
tmp=$(mktemp -d /tmp/bigfilefs-install.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
dest=$tmp/dest
status=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; status=1; }

# The installation directories, as the build tree's Makefile has them.
printf 'bf-print-dirs:\n\t@echo "prefix=$(prefix) bindir=$(bindir) sbindir=$(sbindir) includedir=$(includedir) libdir=$(libdir) mandir=$(mandir) pythondir=$(pythondir) docdir=$(docdir) srcdir=$(abs_top_srcdir) CC=$(CC)"\n' >"$tmp/print.mk"
# (Only the line we print: make may first regenerate the tree and say so.)
dirs=$($make -s -C "$b" -f Makefile -f "$tmp/print.mk" bf-print-dirs | grep '^prefix=') ||
    { echo "FAIL: cannot read $b/Makefile"; exit 1; }
eval "$dirs"
echo "installing into DESTDIR=$dest (prefix $prefix)"
$make -s -C "$b" install DESTDIR="$dest" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; echo "FAIL: make install"; exit 1; }

# Programs.
if [ -x "$dest$bindir/bigfilefs" ]; then ok "bigfilefs in $bindir"
elif [ -x "$dest$sbindir/bigfilefs" ]; then ok "bigfilefs in $sbindir"
else bad "bigfilefs is not installed in $bindir or $sbindir"; fi
[ -x "$dest$bindir/bigfilectl" ] && ok "bigfilectl in $bindir" || bad "bigfilectl is not in $bindir"
if [ -x "$dest$bindir/bigfilectl" ]; then
    "$dest$bindir/bigfilectl" --help >/dev/null 2>&1 && ok "installed bigfilectl --help runs" ||
        bad "installed bigfilectl --help fails"
fi

# Header and pkg-config.
[ -f "$dest$includedir/bigfile/ioctl.h" ] && ok "bigfile/ioctl.h in $includedir" || bad "no $includedir/bigfile/ioctl.h"
pc=$dest$libdir/pkgconfig/bigfile.pc
if [ -f "$pc" ]; then
    ok "bigfile.pc in $libdir/pkgconfig"
    cflags=$(PKG_CONFIG_PATH=$dest$libdir/pkgconfig PKG_CONFIG_SYSROOT_DIR=$dest pkg-config --cflags bigfile) &&
        ok "pkg-config --cflags bigfile: $cflags" || bad "pkg-config --cflags bigfile fails"
    v=$(PKG_CONFIG_PATH=$dest$libdir/pkgconfig pkg-config --modversion bigfile)
    [ -n "$v" ] && ok "pkg-config --modversion bigfile: $v" || bad "no version in bigfile.pc"
    # Compile the manual's example and mapdemo.c as a user would.
    # The program is the roff text between the SRC BEGIN/END comments,
    # unescaped (\- is -, \e is a backslash).
    sed -n '/^\.\\" SRC BEGIN/,/^\.\\" SRC END/p' "$srcdir/man/ioctl_bigfile.2" |
        sed '/^\./d; s/\\-/-/g; s/\\e/\\/g' >"$tmp/ioctl_bigfile_demo.c"
    if [ ! -s "$tmp/ioctl_bigfile_demo.c" ]; then
        bad "could not extract the example of ioctl_bigfile(2)"
    elif ${CC:-cc} -std=gnu11 -Wall -Wextra -Werror $cflags "$tmp/ioctl_bigfile_demo.c" -o "$tmp/demo1" 2>"$tmp/cc.log"; then
        ok "the example of ioctl_bigfile(2) compiles with \$(pkg-config --cflags bigfile)"
    else
        cat "$tmp/cc.log"; bad "the example of ioctl_bigfile(2) does not compile against the installed header"
    fi
    ex=$dest$docdir/examples/mapdemo.c
    if [ -f "$ex" ] && ${CC:-cc} -std=gnu11 -Wall -Wextra -Werror $cflags "$ex" -o "$tmp/demo2" 2>"$tmp/cc.log"; then
        ok "installed examples/mapdemo.c compiles with \$(pkg-config --cflags bigfile)"
    else
        cat "$tmp/cc.log" 2>/dev/null; bad "installed $docdir/examples/mapdemo.c is missing or does not compile"
    fi
else
    bad "no $libdir/pkgconfig/bigfile.pc"
fi

# Manual pages, each in its section, and readable by man(1)'s formatter.
for p in man1/bigfilectl.1 man2/ioctl_bigfile.2 man7/bigfilefs-protocol.7 man8/bigfilefs.8; do
    f=$dest$mandir/$p
    if [ ! -f "$f" ]; then bad "no $mandir/$p"; continue; fi
    if command -v mandoc >/dev/null 2>&1; then
        mandoc -T ascii "$f" >/dev/null 2>&1 && ok "$mandir/$p" || bad "$mandir/$p does not format"
    else
        ok "$mandir/$p"
    fi
done

# Python module (only when configure found python).
if [ -n "$pythondir" ]; then
    m=$dest$pythondir/bigfilefs/__init__.py
    if [ -f "$m" ]; then
        py=${PYTHON:-python3}
        out=$(cd "$tmp" && PYTHONPATH=$dest$pythondir "$py" -c 'import bigfilefs, sys; sys.stdout.write("%d %s" % (bigfilefs.BIGFILE_IOC_WRITEOUT, bigfilefs.__file__))' 2>&1)
        case $out in
            *"$dest$pythondir/bigfilefs/__init__.py"*) ok "python module bigfilefs imports from $pythondir" ;;
            *) bad "the installed python module does not import: $out" ;;
        esac
    else
        bad "no $pythondir/bigfilefs/__init__.py"
    fi
fi
[ -f "$dest$docdir/examples/numpy_demo.py" ] && ok "examples in $docdir/examples" || bad "no $docdir/examples/numpy_demo.py"

# Uninstall leaves only directories.
$make -s -C "$b" uninstall DESTDIR="$dest" >"$tmp/uninstall.log" 2>&1 || { cat "$tmp/uninstall.log"; bad "make uninstall"; }
left=$(find "$dest" -type f -o -type l)
[ -z "$left" ] && ok "make uninstall removes every file" || bad "make uninstall left: $left"

[ $status -eq 0 ] && echo "check-install: all ok" || echo "check-install: FAILED"
exit $status
