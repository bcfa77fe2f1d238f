## SPDX-License-Identifier: MIT
## src/ctl: bigfilectl, a command over the ioctls of <bigfile/ioctl.h>. It
## links libbfutil only (size parsing): no database library; a thread
## makes a long writeout while its progress is polled (progress.c).
bin_PROGRAMS += bigfilectl
bigfilectl_SOURCES = src/ctl/bigfilectl.c src/ctl/progress.c src/ctl/progress.h
bigfilectl_LDADD = libbfutil.a $(PTHREAD_LIBS)
