## SPDX-License-Identifier: MIT
## tests/backends: unit tests of the backends. test_backends runs the shared
## behaviour (and the layer's rules) against the memory and the SQLite
## backend and two block servers (tests/proto/local.mk), test_sessions the same with several sessions on one database; test_memory the fault injection and held calls; test_sqlite what
## only SQLite has (durability, crash atomicity, refusing foreign files,
## read-only media, the WAL, tampered rows); test_staging the optional
## operations (staging, partial loads) of both engines and of the layer's
## spill file; test_history point-in-time views (SQLite, and PostgreSQL in
## its _pg twin); test_bconcurrent the backends
## under concurrency (also in CONCURRENCY_TESTS, for the TSan build).
## They share the core tests' Criterion entry point (tests/core/main.c): one
## job by default and a leak found by LeakSanitizer fails the run.
## With libpq, test_backends, test_sessions, test_history and test_bconcurrent are built a
## second time with -DTB_PG (their *_pg programs: the same tests on the
## PostgreSQL engine), and test_pg has what only PostgreSQL has (refusals,
## TCP, server restarts, killed connections and writers); all of them are
## PG_TESTS, which get a private server (tests/pg/pgserver.sh).
if HAVE_CRITERION
bt_cflags = $(AM_CFLAGS) $(CRITERION_CFLAGS) $(SQLITE3_CFLAGS)
bt_ldadd = libbfbackends.a libbfcore.a libbfutil.a $(CRITERION_LIBS) $(SQLITE3_LIBS) $(PTHREAD_LIBS)
BT_TESTS = \
	tests/backends/test_backends \
	tests/backends/test_sessions \
	tests/backends/test_memory \
	tests/backends/test_sqlite \
	tests/backends/test_staging \
	tests/backends/test_bconcurrent \
	tests/backends/test_history
check_PROGRAMS += $(BT_TESTS)
TESTS += $(BT_TESTS)
CONCURRENCY_TESTS += tests/backends/test_bconcurrent

tests_backends_test_backends_SOURCES = tests/backends/test_backends.c tests/backends/helpers.h \
	tests/core/main.c
tests_backends_test_backends_CPPFLAGS = $(AM_CPPFLAGS) $(PROTO_TEST_CPPFLAGS)
tests_backends_test_backends_CFLAGS = $(bt_cflags)
tests_backends_test_backends_LDADD = $(bt_ldadd)

tests_backends_test_sessions_SOURCES = tests/backends/test_sessions.c tests/backends/helpers.h \
	tests/core/main.c
tests_backends_test_sessions_CFLAGS = $(bt_cflags)
tests_backends_test_sessions_LDADD = $(bt_ldadd)

tests_backends_test_memory_SOURCES = tests/backends/test_memory.c tests/backends/helpers.h \
	tests/core/main.c
tests_backends_test_memory_CFLAGS = $(bt_cflags)
tests_backends_test_memory_LDADD = $(bt_ldadd)

tests_backends_test_sqlite_SOURCES = tests/backends/test_sqlite.c tests/backends/helpers.h tests/oscache.h \
	tests/core/main.c
tests_backends_test_sqlite_CFLAGS = $(bt_cflags)
tests_backends_test_sqlite_LDADD = $(bt_ldadd)

tests_backends_test_staging_SOURCES = tests/backends/test_staging.c tests/backends/helpers.h \
	tests/core/main.c
tests_backends_test_staging_CFLAGS = $(bt_cflags)
tests_backends_test_staging_LDADD = $(bt_ldadd)

tests_backends_test_history_SOURCES = tests/backends/test_history.c tests/backends/helpers.h \
	tests/core/main.c
tests_backends_test_history_CFLAGS = $(bt_cflags)
tests_backends_test_history_LDADD = $(bt_ldadd)

tests_backends_test_bconcurrent_SOURCES = tests/backends/test_bconcurrent.c tests/backends/helpers.h
if SANITIZE_TSAN
# Criterion's runner cannot start under ThreadSanitizer: the core tests'
# small stand-in runs this test there.
tests_backends_test_bconcurrent_SOURCES += tests/core/minicr.h tests/core/minicr.c
tests_backends_test_bconcurrent_CPPFLAGS = $(AM_CPPFLAGS) $(PROTO_TEST_CPPFLAGS) -DCORE_MINICR
tests_backends_test_bconcurrent_CFLAGS = $(AM_CFLAGS) $(SQLITE3_CFLAGS) -Wno-format-zero-length
tests_backends_test_bconcurrent_LDADD = libbfbackends.a libbfcore.a libbfutil.a $(SQLITE3_LIBS) $(PTHREAD_LIBS)
else
tests_backends_test_bconcurrent_SOURCES += tests/core/main.c
tests_backends_test_bconcurrent_CPPFLAGS = $(AM_CPPFLAGS) $(PROTO_TEST_CPPFLAGS)
tests_backends_test_bconcurrent_CFLAGS = $(bt_cflags)
tests_backends_test_bconcurrent_LDADD = $(bt_ldadd)
endif
endif

if HAVE_POSTGRESQL
if HAVE_CRITERION
btpg_cflags = $(bt_cflags) $(LIBPQ_CFLAGS)
btpg_cppflags = $(AM_CPPFLAGS) -DTB_PG
btpg_ldadd = $(bt_ldadd) $(LIBPQ_LIBS)
BTPG_TESTS = \
	tests/backends/test_backends_pg \
	tests/backends/test_sessions_pg \
	tests/backends/test_bconcurrent_pg \
	tests/backends/test_history_pg \
	tests/backends/test_pg
check_PROGRAMS += $(BTPG_TESTS)
TESTS += $(BTPG_TESTS)
PG_TESTS += $(BTPG_TESTS)
CONCURRENCY_TESTS += tests/backends/test_bconcurrent_pg
BTPG_HARNESS = tests/backends/helpers.h tests/pg/pgtest.h tests/pg/pgtest.c

tests_backends_test_backends_pg_SOURCES = tests/backends/test_backends.c $(BTPG_HARNESS) \
	tests/core/main.c
tests_backends_test_backends_pg_CPPFLAGS = $(btpg_cppflags)
tests_backends_test_backends_pg_CFLAGS = $(btpg_cflags)
tests_backends_test_backends_pg_LDADD = $(btpg_ldadd)

tests_backends_test_sessions_pg_SOURCES = tests/backends/test_sessions.c $(BTPG_HARNESS) \
	tests/core/main.c
tests_backends_test_sessions_pg_CPPFLAGS = $(btpg_cppflags)
tests_backends_test_sessions_pg_CFLAGS = $(btpg_cflags)
tests_backends_test_sessions_pg_LDADD = $(btpg_ldadd)

tests_backends_test_history_pg_SOURCES = tests/backends/test_history.c $(BTPG_HARNESS) \
	tests/core/main.c
tests_backends_test_history_pg_CPPFLAGS = $(btpg_cppflags)
tests_backends_test_history_pg_CFLAGS = $(btpg_cflags)
tests_backends_test_history_pg_LDADD = $(btpg_ldadd)

tests_backends_test_pg_SOURCES = tests/backends/test_pg.c $(BTPG_HARNESS) tests/core/main.c
tests_backends_test_pg_CPPFLAGS = $(btpg_cppflags)
tests_backends_test_pg_CFLAGS = $(btpg_cflags)
tests_backends_test_pg_LDADD = $(btpg_ldadd)

tests_backends_test_bconcurrent_pg_SOURCES = tests/backends/test_bconcurrent.c $(BTPG_HARNESS)
if SANITIZE_TSAN
tests_backends_test_bconcurrent_pg_SOURCES += tests/core/minicr.h tests/core/minicr.c
tests_backends_test_bconcurrent_pg_CPPFLAGS = $(btpg_cppflags) -DCORE_MINICR
tests_backends_test_bconcurrent_pg_CFLAGS = $(AM_CFLAGS) $(SQLITE3_CFLAGS) $(LIBPQ_CFLAGS) \
	-Wno-format-zero-length
tests_backends_test_bconcurrent_pg_LDADD = libbfbackends.a libbfcore.a libbfutil.a $(SQLITE3_LIBS) \
	$(LIBPQ_LIBS) $(PTHREAD_LIBS)
else
tests_backends_test_bconcurrent_pg_SOURCES += tests/core/main.c
tests_backends_test_bconcurrent_pg_CPPFLAGS = $(btpg_cppflags)
tests_backends_test_bconcurrent_pg_CFLAGS = $(btpg_cflags)
tests_backends_test_bconcurrent_pg_LDADD = $(btpg_ldadd)
endif
endif
endif
