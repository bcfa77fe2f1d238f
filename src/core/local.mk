## SPDX-License-Identifier: MIT
## src/core: pagemap, file handles, page states, memory accounting.
## No FUSE, no SQL.
noinst_LIBRARIES += libbfcore.a
libbfcore_a_SOURCES = \
	src/core/bigfile.h \
	src/core/list.h \
	src/core/pagemap.h src/core/pagemap.c \
	src/core/blockbuf.h src/core/blockbuf.c \
	src/core/ram.h src/core/ram_internal.h src/core/ram.c \
	src/core/fileh.h src/core/fileh_internal.h src/core/fileh.c \
	src/core/fileh_check.c src/core/seek.c src/core/spill.c
