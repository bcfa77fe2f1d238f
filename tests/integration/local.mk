## SPDX-License-Identifier: MIT
## tests/integration: mount a real bigfilefs (in a private mount namespace,
## one per test) and drive it from separate processes with mmap, read/write,
## ioctls, bigfilectl, sqlite3 and Python. One binary per theme, so that
## `make check` runs them in parallel. Needs root and /dev/fuse.
if HAVE_CRITERION
BFT_TESTS = \
	tests/integration/test_data \
	tests/integration/test_ioctl \
	tests/integration/test_errors \
	tests/integration/test_namespace \
	tests/integration/test_cli \
	tests/integration/test_status \
	tests/integration/test_xattr \
	tests/integration/test_reliability \
	tests/integration/test_shared \
	tests/integration/test_history \
	tests/integration/test_blockserver \
	tests/integration/test_spill
check_PROGRAMS += $(BFT_TESTS)
TESTS += $(BFT_TESTS)

BFT_HARNESS = tests/integration/harness.c tests/integration/harness.h \
	tests/integration/harness_pg.c tests/integration/main.c
BFT_CFLAGS = $(AM_CFLAGS) $(CRITERION_CFLAGS) $(SQLITE3_CFLAGS)
BFT_LDADD = $(CRITERION_LIBS) $(SQLITE3_LIBS) $(PTHREAD_LIBS)
if HAVE_POSTGRESQL
BFT_HARNESS += tests/pg/pgtest.c tests/pg/pgtest.h
BFT_CFLAGS += $(LIBPQ_CFLAGS)
BFT_LDADD += $(LIBPQ_LIBS)
endif

tests_integration_test_data_SOURCES = tests/integration/test_data.c $(BFT_HARNESS)
tests_integration_test_data_CFLAGS = $(BFT_CFLAGS)
tests_integration_test_data_LDADD = $(BFT_LDADD)
tests_integration_test_ioctl_SOURCES = tests/integration/test_ioctl.c $(BFT_HARNESS)
tests_integration_test_ioctl_CFLAGS = $(BFT_CFLAGS)
tests_integration_test_ioctl_LDADD = $(BFT_LDADD)
tests_integration_test_errors_SOURCES = tests/integration/test_errors.c $(BFT_HARNESS)
tests_integration_test_errors_CFLAGS = $(BFT_CFLAGS)
tests_integration_test_errors_LDADD = $(BFT_LDADD)
tests_integration_test_namespace_SOURCES = tests/integration/test_namespace.c tests/oscache.h $(BFT_HARNESS)
tests_integration_test_namespace_CFLAGS = $(BFT_CFLAGS)
tests_integration_test_namespace_LDADD = $(BFT_LDADD)
tests_integration_test_cli_SOURCES = tests/integration/test_cli.c $(BFT_HARNESS)
tests_integration_test_cli_CFLAGS = $(BFT_CFLAGS)
tests_integration_test_cli_LDADD = $(BFT_LDADD)
tests_integration_test_status_SOURCES = tests/integration/test_status.c $(BFT_HARNESS)
tests_integration_test_status_CFLAGS = $(BFT_CFLAGS)
tests_integration_test_status_LDADD = $(BFT_LDADD)
tests_integration_test_xattr_SOURCES = tests/integration/test_xattr.c $(BFT_HARNESS)
tests_integration_test_xattr_CFLAGS = $(BFT_CFLAGS)
tests_integration_test_xattr_LDADD = $(BFT_LDADD)
tests_integration_test_spill_SOURCES = tests/integration/test_spill.c tests/oscache.h $(BFT_HARNESS)
tests_integration_test_spill_CFLAGS = $(BFT_CFLAGS)
tests_integration_test_spill_LDADD = $(BFT_LDADD)
tests_integration_test_reliability_SOURCES = tests/integration/test_reliability.c $(BFT_HARNESS)
tests_integration_test_reliability_CFLAGS = $(BFT_CFLAGS)
tests_integration_test_reliability_LDADD = $(BFT_LDADD)
# Point-in-time views (@SERIAL, -o at=, bigfilectl log/history/gc).
tests_integration_test_history_SOURCES = tests/integration/test_history.c $(BFT_HARNESS)
tests_integration_test_history_CFLAGS = $(BFT_CFLAGS)
tests_integration_test_history_LDADD = $(BFT_LDADD)
# Several daemons on one database (-o shared).
tests_integration_test_shared_SOURCES = tests/integration/test_shared.c $(BFT_HARNESS)
tests_integration_test_shared_CFLAGS = $(BFT_CFLAGS)
tests_integration_test_shared_LDADD = $(BFT_LDADD)
if HAVE_POSTGRESQL
# The same on one PostgreSQL database: a private server for the program
# (PG_TESTS), a database per test; the SQLite-only tests left out, those
# only PostgreSQL has added (-DBFT_PG).
check_PROGRAMS += tests/integration/test_shared_pg
TESTS += tests/integration/test_shared_pg
PG_TESTS += tests/integration/test_shared_pg
tests_integration_test_shared_pg_SOURCES = tests/integration/test_shared.c $(BFT_HARNESS)
tests_integration_test_shared_pg_CFLAGS = $(BFT_CFLAGS) -DBFT_PG
tests_integration_test_shared_pg_LDADD = $(BFT_LDADD)
# Point-in-time views on PostgreSQL, the same way.
check_PROGRAMS += tests/integration/test_history_pg
TESTS += tests/integration/test_history_pg
PG_TESTS += tests/integration/test_history_pg
tests_integration_test_history_pg_SOURCES = tests/integration/test_history.c $(BFT_HARNESS)
tests_integration_test_history_pg_CFLAGS = $(BFT_CFLAGS) -DBFT_PG
tests_integration_test_history_pg_LDADD = $(BFT_LDADD)
# Extended attributes on PostgreSQL, the same way.
check_PROGRAMS += tests/integration/test_xattr_pg
TESTS += tests/integration/test_xattr_pg
PG_TESTS += tests/integration/test_xattr_pg
tests_integration_test_xattr_pg_SOURCES = tests/integration/test_xattr.c $(BFT_HARNESS)
tests_integration_test_xattr_pg_CFLAGS = $(BFT_CFLAGS) -DBFT_PG
tests_integration_test_xattr_pg_LDADD = $(BFT_LDADD)
endif
# Mounts on block servers (exec:, bigfilefs-protocol(7)): tests/proto/blockd
# and examples/npy_store.py.
tests_integration_test_blockserver_SOURCES = tests/integration/test_blockserver.c $(BFT_HARNESS)
tests_integration_test_blockserver_CFLAGS = $(BFT_CFLAGS)
tests_integration_test_blockserver_LDADD = $(BFT_LDADD)
endif
EXTRA_DIST += tests/integration/numpy_commit.py
if HAVE_CRITERION
# Sparse files: SEEK_DATA/SEEK_HOLE, st_blocks, cp --sparse.
check_PROGRAMS += tests/integration/test_sparse
TESTS += tests/integration/test_sparse
tests_integration_test_sparse_SOURCES = tests/integration/test_sparse.c $(BFT_HARNESS)
tests_integration_test_sparse_CFLAGS = $(BFT_CFLAGS)
tests_integration_test_sparse_LDADD = $(BFT_LDADD)
endif
