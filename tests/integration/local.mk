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
	tests/integration/test_reliability \
	tests/integration/test_shared \
	tests/integration/test_spill
check_PROGRAMS += $(BFT_TESTS)
TESTS += $(BFT_TESTS)

BFT_HARNESS = tests/integration/harness.c tests/integration/harness.h \
	tests/integration/main.c
BFT_CFLAGS = $(AM_CFLAGS) $(CRITERION_CFLAGS) $(SQLITE3_CFLAGS)
BFT_LDADD = $(CRITERION_LIBS) $(SQLITE3_LIBS) $(PTHREAD_LIBS)

tests_integration_test_data_SOURCES = tests/integration/test_data.c $(BFT_HARNESS)
tests_integration_test_data_CFLAGS = $(BFT_CFLAGS)
tests_integration_test_data_LDADD = $(BFT_LDADD)
tests_integration_test_ioctl_SOURCES = tests/integration/test_ioctl.c $(BFT_HARNESS)
tests_integration_test_ioctl_CFLAGS = $(BFT_CFLAGS)
tests_integration_test_ioctl_LDADD = $(BFT_LDADD)
tests_integration_test_errors_SOURCES = tests/integration/test_errors.c $(BFT_HARNESS)
tests_integration_test_errors_CFLAGS = $(BFT_CFLAGS)
tests_integration_test_errors_LDADD = $(BFT_LDADD)
tests_integration_test_namespace_SOURCES = tests/integration/test_namespace.c $(BFT_HARNESS)
tests_integration_test_namespace_CFLAGS = $(BFT_CFLAGS)
tests_integration_test_namespace_LDADD = $(BFT_LDADD)
tests_integration_test_cli_SOURCES = tests/integration/test_cli.c $(BFT_HARNESS)
tests_integration_test_cli_CFLAGS = $(BFT_CFLAGS)
tests_integration_test_cli_LDADD = $(BFT_LDADD)
tests_integration_test_spill_SOURCES = tests/integration/test_spill.c $(BFT_HARNESS)
tests_integration_test_spill_CFLAGS = $(BFT_CFLAGS)
tests_integration_test_spill_LDADD = $(BFT_LDADD)
tests_integration_test_reliability_SOURCES = tests/integration/test_reliability.c $(BFT_HARNESS)
tests_integration_test_reliability_CFLAGS = $(BFT_CFLAGS)
tests_integration_test_reliability_LDADD = $(BFT_LDADD)
# Several daemons on one database (-o shared).
tests_integration_test_shared_SOURCES = tests/integration/test_shared.c $(BFT_HARNESS)
tests_integration_test_shared_CFLAGS = $(BFT_CFLAGS)
tests_integration_test_shared_LDADD = $(BFT_LDADD)
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
