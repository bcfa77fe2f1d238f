## SPDX-License-Identifier: MIT
## tests: Criterion unit tests (core, backends) and integration tests that
## mount a real bigfilefs; tests/pg the PostgreSQL plumbing. Each part has
## its own file.
include $(srcdir)/tests/core/local.mk
include $(srcdir)/tests/backends/local.mk
include $(srcdir)/tests/integration/local.mk
include $(srcdir)/tests/pg/local.mk
