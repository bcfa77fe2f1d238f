## SPDX-License-Identifier: MIT
## src/ctl: bigfilectl, a command over the ioctls of <bigfile/ioctl.h>. It
## links libbfutil only (size parsing): no database library.
bin_PROGRAMS += bigfilectl
bigfilectl_SOURCES = src/ctl/bigfilectl.c
bigfilectl_LDADD = libbfutil.a
