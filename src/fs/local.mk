## SPDX-License-Identifier: MIT
## src/fs: the FUSE daemon bigfilefs (see src/fs/fs.h). Its unit tests are
## in tests/daemon.
bin_PROGRAMS += bigfilefs
bigfilefs_SOURCES = \
	src/fs/main.c \
	src/fs/fs.h src/fs/ops.c src/fs/ioctl.c src/fs/xattr.c \
	src/fs/errors.h src/fs/errors.c \
	src/fs/inode.h src/fs/inode.c \
	src/fs/kernel.h src/fs/kernel.c \
	src/fs/listen.h src/fs/listen.c \
	src/fs/notify.h src/fs/notify.c \
	src/fs/workq.h src/fs/workq.c \
	src/fs/prefetch.h src/fs/prefetch.c \
	src/fs/views.h src/fs/views.c \
	src/fs/signals.h src/fs/signals.c \
	src/fs/log.h src/fs/log.c \
	src/fs/test_inject.h
bigfilefs_CFLAGS = $(AM_CFLAGS) $(FUSE3_CFLAGS)
bigfilefs_LDADD = libbfbackends.a libbfcore.a libbfutil.a $(FUSE3_LIBS) $(SQLITE3_LIBS) $(PTHREAD_LIBS)
