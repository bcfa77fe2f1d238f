## SPDX-License-Identifier: MIT
## src/util: libbfutil — size parsing, clocks, assertions. Depends on libc
## only; everything else of ours links it.
noinst_LIBRARIES += libbfutil.a
libbfutil_a_SOURCES = \
	src/util/util.h src/util/util.c \
	src/util/debug.h src/util/debug.c
