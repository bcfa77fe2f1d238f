## tests/backends: unit tests of the backends. test_backends runs the shared
## behaviour against both the memory and the SQLite backend; test_memory the
## fault injection; test_sqlite what only SQLite has (durability, crash
## atomicity, refusing foreign files); test_bconcurrent many loading threads
## against a committing one (also in CONCURRENCY_TESTS, for the TSan build).
if HAVE_CRITERION
bt_cflags = $(AM_CFLAGS) $(CRITERION_CFLAGS) $(SQLITE3_CFLAGS)
bt_ldadd = libbfbackends.a $(CRITERION_LIBS) $(SQLITE3_LIBS) $(PTHREAD_LIBS)
BT_TESTS = \
	tests/backends/test_backends
check_PROGRAMS += $(BT_TESTS)
TESTS += $(BT_TESTS)

tests_backends_test_backends_SOURCES = tests/backends/test_backends.c tests/backends/helpers.h
tests_backends_test_backends_CFLAGS = $(bt_cflags)
tests_backends_test_backends_LDADD = $(bt_ldadd)
endif
