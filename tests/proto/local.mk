## SPDX-License-Identifier: MIT
## tests/proto: the block server protocol (bigfilefs-protocol(7)).
## blockd is a block server in C (it serves a bf_db, or a computed pattern,
## with switches that make it crash, hang or answer nonsense); test_proto
## drives the proto engine against it: the messages, the version, the
## failures and restarts, replies out of order, a writeout through the core
## whose server dies. The shared behavioural suite (tests/backends) also
## runs against blockd and against the Python server examples/npy_store.py;
## tests/backends/test_bconcurrent (the TSan build's) loads from many threads
## through blockd answering out of order, also through a crash of it.
check_PROGRAMS += tests/proto/blockd
tests_proto_blockd_SOURCES = tests/proto/blockd.c bench/pattern.h
tests_proto_blockd_CFLAGS = $(AM_CFLAGS) $(SQLITE3_CFLAGS)
tests_proto_blockd_LDADD = libbfbackends.a libbfcore.a libbfutil.a $(SQLITE3_LIBS) $(PTHREAD_LIBS)

## Where the tests find blockd, the Python package and the examples when
## run by hand (make check also sets BF_BUILDDIR, BF_SRCDIR, PYTHON).
PROTO_TEST_CPPFLAGS = -DBF_TEST_BUILDDIR='"$(abs_top_builddir)"' \
	-DBF_TEST_SRCDIR='"$(abs_top_srcdir)"' -DBF_TEST_PYTHON='"$(PYTHON)"'

if HAVE_CRITERION
TESTS += tests/proto/test_proto
check_PROGRAMS += tests/proto/test_proto
tests_proto_test_proto_SOURCES = tests/proto/test_proto.c tests/backends/helpers.h \
	tests/core/main.c
tests_proto_test_proto_CPPFLAGS = $(AM_CPPFLAGS) $(PROTO_TEST_CPPFLAGS)
tests_proto_test_proto_CFLAGS = $(bt_cflags)
tests_proto_test_proto_LDADD = $(bt_ldadd)
endif
