## SPDX-License-Identifier: MIT
## src/ctl: bigfilectl, a command over the ioctls of <bigfile/ioctl.h>.
bin_PROGRAMS += bigfilectl
bigfilectl_SOURCES = src/ctl/bigfilectl.c
## bf_parse_size comes from the backends library (backend.c); it pulls in
## the backends' dependencies at link time.
bigfilectl_LDADD = libbfbackends.a libbfcore.a $(SQLITE3_LIBS) $(PTHREAD_LIBS)
