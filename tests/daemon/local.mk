## SPDX-License-Identifier: MIT
## tests/daemon: unit tests of the daemon's parts that need no mount — the
## inode table, the notifier, the worker queue, the errno boundary (the FUSE
## paths are tested by tests/integration against the real daemon). The
## entry point is the core tests' (a leak fails the run).
if HAVE_CRITERION
check_PROGRAMS += tests/daemon/test_fs
TESTS += tests/daemon/test_fs
tests_daemon_test_fs_SOURCES = tests/daemon/test_fs.c tests/daemon/test_workq.c tests/daemon/test_errors.c \
	src/fs/inode.c src/fs/notify.c src/fs/workq.c src/fs/errors.c src/fs/log.c \
	tests/core/main.c
tests_daemon_test_fs_CFLAGS = $(AM_CFLAGS) $(FUSE3_CFLAGS) $(CRITERION_CFLAGS)
tests_daemon_test_fs_LDADD = libbfbackends.a libbfcore.a libbfutil.a $(CRITERION_LIBS) $(FUSE3_LIBS) \
	$(SQLITE3_LIBS) $(PTHREAD_LIBS)
endif
