## SPDX-License-Identifier: MIT
## python: the pure-Python package bigfilefs (python/bigfilefs/: the ioctls
## of <bigfile/ioctl.h> for Python users, and bigfilefs.server, block
## servers in Python: bigfilefs-protocol(7)), installed into
## $(pythondir)/bigfilefs (site-packages, under --prefix, honouring DESTDIR)
## when configure found python3. Its ioctl
## numbers and struct layouts are checked against the C header by
## python/test_ioctl_sync.py, using the compiled python/ioctl_numbers;
## python/run-module-test.sh runs every function against a real mount;
## python/test_server.py drives bigfilefs.server with a client of its own.
EXTRA_DIST += python/test_ioctl_sync.py python/ioctl_numbers.c \
	python/run-module-test.sh python/test_module_mount.py \
	python/test_array_mount.py python/test_server.py
if HAVE_PYTHON
bigfilefs_pydir = $(pythondir)/bigfilefs
bigfilefs_py_PYTHON = python/bigfilefs/__init__.py python/bigfilefs/server.py
check_PROGRAMS += python/ioctl_numbers
python_ioctl_numbers_SOURCES = python/ioctl_numbers.c
TESTS += python/test_ioctl_sync.py python/run-module-test.sh python/test_server.py
else
EXTRA_DIST += python/bigfilefs/__init__.py python/bigfilefs/server.py
endif
