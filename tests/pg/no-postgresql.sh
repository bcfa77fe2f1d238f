#!/bin/sh
# SPDX-License-Identifier: MIT
# Stands in for the PostgreSQL tests when configure found no libpq: reported
# as SKIPPED, loudly. (scripts/test-all.sh configures --with-postgresql=yes,
# so there this never runs: a missing libpq fails the build instead.)
cat >&2 <<'MSG'
***********************************************************************
*** SKIPPED: the PostgreSQL tests. configure found no libpq >= 14, so the
*** pg: backend was not built and none of its tests ran.
*** Debian: apt install libpq-dev postgresql (or sh scripts/deps.sh),
*** then configure again.
***********************************************************************
MSG
exit 77
