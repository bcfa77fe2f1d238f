## SPDX-License-Identifier: MIT
## src/backends: block stores behind the core's bf_file interface: the
## generic layer (backend, watch), the engines (memory, sqlite*, and pg*
## when configure found libpq), and the commit log's block ranges (ranges).
noinst_LIBRARIES += libbfbackends.a
libbfbackends_a_SOURCES = \
	src/backends/backend.h src/backends/backend.c \
	src/backends/engine.h src/backends/watch.c \
	src/backends/ranges.h src/backends/ranges.c \
	src/backends/memory.h src/backends/memory.c \
	src/backends/sqlite.h src/backends/sqlite_internal.h src/backends/sqlite.c \
	src/backends/sqlite_schema.c src/backends/sqlite_session.c \
	src/backends/sqlite_xattr.c
libbfbackends_a_CFLAGS = $(AM_CFLAGS) $(SQLITE3_CFLAGS) $(LIBPQ_CFLAGS)
if HAVE_POSTGRESQL
libbfbackends_a_SOURCES += \
	src/backends/pg.h src/backends/pg_internal.h src/backends/pg.c \
	src/backends/pg_conn.c src/backends/pg_sql.c src/backends/pg_schema.c \
	src/backends/pg_session.c src/backends/pg_xattr.c
endif
