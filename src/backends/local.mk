## SPDX-License-Identifier: MIT
## src/backends: block stores behind the core's bf_file interface: the
## generic layer (backend, watch, spillfile), the engines (memory, sqlite*,
## pg* when configure found libpq, and proto: a block server over the
## protocol of bigfilefs-protocol(7), with its link and its messages), and
## the commit log's block ranges (ranges).
noinst_LIBRARIES += libbfbackends.a
libbfbackends_a_SOURCES = \
	src/backends/backend.h src/backends/backend.c \
	src/backends/engine.h src/backends/watch.c src/backends/view.c \
	src/backends/ranges.h src/backends/ranges.c \
	src/backends/spillfile.c \
	src/backends/memory.h src/backends/memory.c \
	src/backends/sqlite.h src/backends/sqlite_internal.h src/backends/sqlite.c \
	src/backends/sqlite_schema.c src/backends/sqlite_session.c \
	src/backends/sqlite_xattr.c src/backends/sqlite_history.c \
	src/backends/sqlite_blocks.c \
	src/backends/proto.h src/backends/proto.c \
	src/backends/proto_link.h src/backends/proto_link.c \
	src/backends/proto_wire.h src/backends/proto_wire.c
libbfbackends_a_CFLAGS = $(AM_CFLAGS) $(SQLITE3_CFLAGS) $(LIBPQ_CFLAGS)
if HAVE_POSTGRESQL
libbfbackends_a_SOURCES += \
	src/backends/pg.h src/backends/pg_internal.h src/backends/pg.c \
	src/backends/pg_conn.c src/backends/pg_sql.c src/backends/pg_schema.c \
	src/backends/pg_session.c src/backends/pg_xattr.c src/backends/pg_history.c
endif
