## SPDX-License-Identifier: MIT
## src/backends: block stores behind the core's bf_file interface: the
## generic layer (backend, watch, spillfile), the engines (memory, sqlite*), and the
## commit log's block ranges (ranges).
noinst_LIBRARIES += libbfbackends.a
libbfbackends_a_SOURCES = \
	src/backends/backend.h src/backends/backend.c \
	src/backends/engine.h src/backends/watch.c \
	src/backends/ranges.h src/backends/ranges.c \
	src/backends/spillfile.c \
	src/backends/memory.h src/backends/memory.c \
	src/backends/sqlite.h src/backends/sqlite_internal.h src/backends/sqlite.c \
	src/backends/sqlite_schema.c src/backends/sqlite_session.c
libbfbackends_a_CFLAGS = $(AM_CFLAGS) $(SQLITE3_CFLAGS)
