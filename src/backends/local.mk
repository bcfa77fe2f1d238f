## SPDX-License-Identifier: MIT
## src/backends: block stores behind the core's bf_file interface.
noinst_LIBRARIES += libbfbackends.a
libbfbackends_a_SOURCES = \
	src/backends/backend.h src/backends/backend.c \
	src/backends/engine.h \
	src/backends/memory.h src/backends/memory.c \
	src/backends/sqlite.h src/backends/sqlite.c
libbfbackends_a_CFLAGS = $(AM_CFLAGS) $(SQLITE3_CFLAGS)
