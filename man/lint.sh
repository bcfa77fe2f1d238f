#!/bin/sh
# SPDX-License-Identifier: MIT
# Lint the manual pages: `mandoc -T lint -W warning` must print nothing for
# each page, and, when groff is installed, `groff -man -ww -z` must print
# nothing either. Exits 77 (SKIP) when mandoc is not installed.
# Environment: BF_SRCDIR (the source tree; default: this script's ../).
set -u
src=${BF_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
pages="bigfilefs.8 bigfilectl.1 ioctl_bigfile.2 bigfilefs-protocol.7"

command -v mandoc >/dev/null 2>&1 || { echo "SKIP: mandoc is not installed"; exit 77; }

status=0
for p in $pages; do
    f=$src/man/$p
    [ -f "$f" ] || { echo "FAIL: $f is missing"; status=1; continue; }
    out=$(mandoc -T lint -W warning "$f" 2>&1)
    if [ -n "$out" ]; then
        echo "FAIL: mandoc -T lint -W warning $p:"; echo "$out"; status=1
    else
        echo "ok: mandoc lint $p"
    fi
    if command -v groff >/dev/null 2>&1; then
        out=$(groff -man -ww -z "$f" 2>&1)
        if [ -n "$out" ]; then
            echo "FAIL: groff -man -ww -z $p:"; echo "$out"; status=1
        else
            echo "ok: groff -ww $p"
        fi
    fi
    # Every page must at least name itself and have the sections a reader
    # looks for first.
    for sec in NAME SYNOPSIS DESCRIPTION "SEE ALSO"; do
        grep -q "^\.SH \"*$sec\"*\$" "$f" || { echo "FAIL: $p has no $sec section"; status=1; }
    done
done
exit $status
