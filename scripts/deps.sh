#!/bin/sh
# SPDX-License-Identifier: MIT
# Install what bigfilefs needs to build, test and run, on Debian (as root).
# Quick when everything is already there: apt is asked only for what is missing.
#   sh scripts/deps.sh [packaging]
# "packaging" adds what the deb stage (scripts/test-packages.sh) needs: the
# build dependencies of debian/control, dpkg-buildpackage, lintian, and the
# tools its tests use (venv and pip with setuptools, systemd-analyze, man).
set -eu
PKGS="build-essential autoconf automake autoconf-archive pkg-config
      libfuse3-dev fuse3 libsqlite3-dev sqlite3 libcriterion-dev
      mandoc groff-base python3 python3-numpy util-linux procps"
[ "${1:-}" != packaging ] || PKGS="$PKGS debhelper dh-python dpkg-dev pkgconf lintian
      python3-venv python3-pip python3-setuptools systemd man-db git"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
        missing="$missing $p"
done
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    echo "deps: installing:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
# FUSE needs its device; in a fresh container it may lack the node.
if [ ! -e /dev/fuse ]; then
    modprobe fuse 2>/dev/null || true
    [ -e /dev/fuse ] || mknod -m 0666 /dev/fuse c 10 229 2>/dev/null || true
fi
