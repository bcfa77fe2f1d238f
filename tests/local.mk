## SPDX-License-Identifier: MIT
## tests: Criterion unit tests (core, backends, daemon) and integration
## tests that mount a real bigfilefs; tests/pg the PostgreSQL test server and
## plumbing; testlib.sh is the mount harness of the shell tests (examples,
## man, python). Each part has its own file.
include $(srcdir)/tests/core/local.mk
include $(srcdir)/tests/backends/local.mk
include $(srcdir)/tests/daemon/local.mk
include $(srcdir)/tests/integration/local.mk
include $(srcdir)/tests/pg/local.mk
include $(srcdir)/tests/proto/local.mk
EXTRA_DIST += tests/testlib.sh
