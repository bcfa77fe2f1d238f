## SPDX-License-Identifier: MIT
## src/fs: the FUSE daemon bigfilefs (see src/fs/fs.h).
bin_PROGRAMS += bigfilefs
bigfilefs_SOURCES = \
	src/fs/main.c \
	src/fs/fs.h src/fs/ops.c src/fs/ioctl.c \
	src/fs/inode.h src/fs/inode.c \
	src/fs/notify.h src/fs/notify.c \
	src/fs/bdi.h src/fs/bdi.c \
	src/fs/signals.h src/fs/signals.c \
	src/fs/log.h src/fs/log.c \
	src/fs/inject.h
bigfilefs_CFLAGS = $(AM_CFLAGS) $(FUSE3_CFLAGS)
bigfilefs_LDADD = libbfbackends.a libbfcore.a libbfutil.a $(FUSE3_LIBS) $(SQLITE3_LIBS) $(PTHREAD_LIBS)

## Unit tests of the inode table and the notifier (the FUSE paths are
## tested by tests/integration against the real daemon). The entry point is
## the core tests' (a leak fails the run).
if HAVE_CRITERION
check_PROGRAMS += src/fs/test_fs
TESTS += src/fs/test_fs
src_fs_test_fs_SOURCES = src/fs/test_fs.c src/fs/inode.c src/fs/notify.c src/fs/log.c \
	tests/core/main.c
src_fs_test_fs_CFLAGS = $(AM_CFLAGS) $(FUSE3_CFLAGS) $(CRITERION_CFLAGS)
src_fs_test_fs_LDADD = libbfbackends.a libbfcore.a libbfutil.a $(CRITERION_LIBS) $(FUSE3_LIBS) \
	$(SQLITE3_LIBS) $(PTHREAD_LIBS)
endif
