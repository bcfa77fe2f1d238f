## SPDX-License-Identifier: MIT
## man: the manual pages (plain man(7) roff; automake installs each under the
## section its extension names), their lint test, the fstab/mount-helper
## test, and the `make install` check that scripts/test-all.sh runs after
## `make check`:  sh man/check-install.sh BUILDDIR
dist_man_MANS += man/bigfilefs.8 man/bigfilectl.1 man/ioctl_bigfile.2 man/bigfilefs-protocol.7
TESTS += man/lint.sh man/fstab.sh
EXTRA_DIST += man/lint.sh man/fstab.sh man/check-install.sh

## The example program of ioctl_bigfile(2) is compiled from the page itself
## (the roff text between its SRC BEGIN/END comments) and run against a real
## mount by man/run-example.sh, which compares its output with the output the
## page shows: the manual's example cannot rot.
check_PROGRAMS += man/ioctl_bigfile_demo
nodist_man_ioctl_bigfile_demo_SOURCES = man/ioctl_bigfile_demo.c
CLEANFILES += man/ioctl_bigfile_demo.c
man/ioctl_bigfile_demo.c: $(srcdir)/man/ioctl_bigfile.2
	$(AM_V_GEN)$(MKDIR_P) man && \
	sed -n '/^\.\\" SRC BEGIN/,/^\.\\" SRC END/p' $(srcdir)/man/ioctl_bigfile.2 | \
	sed '/^\./d; s/\\-/-/g; s/\\e/\\/g' >$@-t && mv $@-t $@
TESTS += man/run-example.sh
EXTRA_DIST += man/run-example.sh
