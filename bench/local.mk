## SPDX-License-Identifier: MIT
## bench: benchmarks of bigfilefs against tmpfs, raw SQLite and its own
## memory backend (bench/README). `make bench` builds and runs them; they
## are not part of `make check` (they take minutes and need root).
## bfbench is built with everything else so that it never rots unseen.
noinst_PROGRAMS += bench/bfbench
bench_bfbench_SOURCES = \
	bench/bfbench.c \
	bench/pattern.h \
	bench/util.h bench/util.c \
	bench/rawsql.h bench/rawsql.c
bench_bfbench_CFLAGS = $(AM_CFLAGS) $(SQLITE3_CFLAGS)
bench_bfbench_LDADD = $(SQLITE3_LIBS) -lm

## enginebench: cold loads through a backend engine without the daemon (the
## block server engine against the memory one: bench/run.sh figure 10).
noinst_PROGRAMS += bench/enginebench
bench_enginebench_SOURCES = bench/enginebench.c bench/pattern.h bench/util.h bench/util.c
bench_enginebench_CFLAGS = $(AM_CFLAGS) $(SQLITE3_CFLAGS)
bench_enginebench_LDADD = libbfbackends.a libbfcore.a libbfutil.a $(SQLITE3_LIBS) $(LIBPQ_LIBS) $(PTHREAD_LIBS) -lm

## wpath: what a writeout's store costs below the daemon (the store's
## write path against a plain file and a block-file design, issue 12). Run
## by hand: bench/wpath MODE DIR NBLOCKS BLKSIZE (bench/wpath.c).
noinst_PROGRAMS += bench/wpath
bench_wpath_SOURCES = bench/wpath.c bench/util.h bench/util.c
bench_wpath_CFLAGS = $(AM_CFLAGS) $(SQLITE3_CFLAGS)
bench_wpath_LDADD = libbfbackends.a libbfcore.a libbfutil.a $(SQLITE3_LIBS) $(LIBPQ_LIBS) $(PTHREAD_LIBS) -lm

EXTRA_DIST += bench/README bench/run.sh bench/rawpg.sh bench/npwrite.py

## BENCH_QUICK=1 for small sizes, BENCH_ONLY="1 3" for some figures only,
## BENCH_RUNS=N runs per figure, BENCH_DIR=DIR for the databases (on disk).
bench: bench/bfbench$(EXEEXT) bigfilefs$(EXEEXT) bigfilectl$(EXEEXT) \
		bench/enginebench$(EXEEXT) tests/proto/blockd$(EXEEXT) $(BENCH_RAWPG)
	BFBENCH='$(abs_top_builddir)/bench/bfbench$(EXEEXT)' \
	RAWPG='$(BENCH_RAWPG:%=$(abs_top_builddir)/%)' \
	ENGINEBENCH='$(abs_top_builddir)/bench/enginebench$(EXEEXT)' \
	BLOCKD='$(abs_top_builddir)/tests/proto/blockd$(EXEEXT)' \
	BF_SRCDIR='$(abs_top_srcdir)' PYTHON='$(PYTHON)' \
	BIGFILEFS='$(abs_top_builddir)/bigfilefs$(EXEEXT)' \
	BIGFILECTL='$(abs_top_builddir)/bigfilectl$(EXEEXT)' \
	bash '$(abs_top_srcdir)/bench/run.sh'

.PHONY: bench

## rawpg: plain libpq loops measuring what the pg: engine's design rests on
## (docs/design/PG-ENGINE.md): fetch, upload, the commit section, NOTIFY.
## Run by hand: sh ../../bench/rawpg.sh (in the build directory) runs every
## measurement on two private servers (tests/pg/pgserver.sh).
if HAVE_POSTGRESQL
BENCH_RAWPG = bench/rawpg$(EXEEXT)
noinst_PROGRAMS += bench/rawpg
bench_rawpg_SOURCES = bench/rawpg.c bench/pattern.h bench/util.h bench/util.c
bench_rawpg_CFLAGS = $(AM_CFLAGS) $(LIBPQ_CFLAGS)
bench_rawpg_LDADD = $(LIBPQ_LIBS) $(PTHREAD_LIBS) -lm
endif
