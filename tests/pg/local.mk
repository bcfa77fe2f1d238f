## SPDX-License-Identifier: MIT
## tests/pg: the PostgreSQL plumbing. Each program of PG_TESTS runs through
## tests/pg/pgserver.sh (LOG_COMPILER, Makefile.am), which gives it a
## private server of its own for its whole run (~1.4 s to start and stop)
## and stops it afterwards, also on failure and interruption. pgtest.h is
## the tests' side of that. Without libpq the tests are reported SKIPPED
## (no-postgresql.sh).
EXTRA_DIST += tests/pg/pgserver.sh
if HAVE_POSTGRESQL
if HAVE_CRITERION
PGT_HARNESS = tests/pg/pgtest.h tests/pg/pgtest.c tests/core/main.c
PGT_CFLAGS = $(AM_CFLAGS) $(CRITERION_CFLAGS) $(LIBPQ_CFLAGS)
PGT_LDADD = $(CRITERION_LIBS) $(LIBPQ_LIBS) $(PTHREAD_LIBS)

check_PROGRAMS += tests/pg/test_pgplumbing
TESTS += tests/pg/test_pgplumbing
PG_TESTS += tests/pg/test_pgplumbing
tests_pg_test_pgplumbing_SOURCES = tests/pg/test_pgplumbing.c $(PGT_HARNESS)
tests_pg_test_pgplumbing_CFLAGS = $(PGT_CFLAGS)
tests_pg_test_pgplumbing_LDADD = $(PGT_LDADD)
endif
else
TESTS += tests/pg/no-postgresql.sh
## ... and said on the terminal too, not only in the test's log.
check-local: tests-pg-skipped
endif
tests-pg-skipped:
	@$(SHELL) $(srcdir)/tests/pg/no-postgresql.sh || :
.PHONY: tests-pg-skipped
EXTRA_DIST += tests/pg/no-postgresql.sh
