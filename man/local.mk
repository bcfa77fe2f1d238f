## man: the manual pages (plain man(7) roff; automake installs each under the
## section its extension names), their lint test, the fstab/mount-helper
## test, and the `make install` check that scripts/test-all.sh runs after
## `make check`:  sh man/check-install.sh BUILDDIR
dist_man_MANS += man/bigfilefs.8 man/bigfilectl.1 man/ioctl_bigfile.2
TESTS += man/lint.sh man/fstab.sh
EXTRA_DIST += man/lint.sh man/fstab.sh man/check-install.sh
