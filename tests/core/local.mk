## SPDX-License-Identifier: MIT
## tests/core: unit tests of the core against a mock bigfile (mockfile.c).
if HAVE_CRITERION
core_test_cflags = $(AM_CFLAGS) $(CRITERION_CFLAGS)
core_test_ldadd = libbfcore.a libbfutil.a $(CRITERION_LIBS) $(PTHREAD_LIBS)

check_PROGRAMS += tests/core/test_pagemap tests/core/test_fileh tests/core/test_ram \
	tests/core/test_concurrency tests/core/test_seek tests/core/test_check \
	tests/core/test_coherence tests/core/test_spill tests/core/test_paths
TESTS += tests/core/test_pagemap tests/core/test_fileh tests/core/test_ram tests/core/test_concurrency \
	tests/core/test_seek tests/core/test_check tests/core/test_coherence tests/core/test_spill \
	tests/core/test_paths
CONCURRENCY_TESTS += tests/core/test_concurrency

tests_core_test_pagemap_SOURCES = tests/core/test_pagemap.c tests/core/main.c
tests_core_test_pagemap_CFLAGS = $(core_test_cflags)
tests_core_test_pagemap_LDADD = $(core_test_ldadd)

tests_core_test_fileh_SOURCES = tests/core/test_fileh.c tests/core/main.c \
	tests/core/corehelp.h tests/core/mockfile.h tests/core/mockfile.c
tests_core_test_fileh_CFLAGS = $(core_test_cflags)
tests_core_test_fileh_LDADD = $(core_test_ldadd)

tests_core_test_ram_SOURCES = tests/core/test_ram.c tests/core/main.c \
	tests/core/corehelp.h tests/core/mockfile.h tests/core/mockfile.c
tests_core_test_ram_CFLAGS = $(core_test_cflags)
tests_core_test_ram_LDADD = $(core_test_ldadd)

tests_core_test_coherence_SOURCES = tests/core/test_coherence.c tests/core/main.c \
	tests/core/corehelp.h tests/core/mockfile.h tests/core/mockfile.c
tests_core_test_coherence_CFLAGS = $(core_test_cflags)
tests_core_test_coherence_LDADD = $(core_test_ldadd)

tests_core_test_spill_SOURCES = tests/core/test_spill.c tests/core/main.c \
	tests/core/corehelp.h tests/core/mockfile.h tests/core/mockfile.c
tests_core_test_spill_CFLAGS = $(core_test_cflags)
tests_core_test_spill_LDADD = $(core_test_ldadd)

tests_core_test_paths_SOURCES = tests/core/test_paths.c tests/core/main.c \
	tests/core/corehelp.h tests/core/mockfile.h tests/core/mockfile.c
tests_core_test_paths_CFLAGS = $(core_test_cflags)
tests_core_test_paths_LDADD = $(core_test_ldadd)

tests_core_test_seek_SOURCES = tests/core/test_seek.c tests/core/main.c \
	tests/core/corehelp.h tests/core/mockfile.h tests/core/mockfile.c
tests_core_test_seek_CFLAGS = $(core_test_cflags)
tests_core_test_seek_LDADD = $(core_test_ldadd)

tests_core_test_check_SOURCES = tests/core/test_check.c tests/core/main.c \
	tests/core/corehelp.h tests/core/mockfile.h tests/core/mockfile.c
tests_core_test_check_CFLAGS = $(core_test_cflags)
tests_core_test_check_LDADD = $(core_test_ldadd)

tests_core_test_concurrency_SOURCES = tests/core/test_concurrency.c \
	tests/core/corehelp.h tests/core/mockfile.h tests/core/mockfile.c
if SANITIZE_TSAN
# Criterion's runner cannot start under ThreadSanitizer: a small stand-in.
tests_core_test_concurrency_SOURCES += tests/core/minicr.h tests/core/minicr.c
tests_core_test_concurrency_CPPFLAGS = $(AM_CPPFLAGS) -DCORE_MINICR
tests_core_test_concurrency_CFLAGS = $(AM_CFLAGS) -Wno-format-zero-length
tests_core_test_concurrency_LDADD = libbfcore.a libbfutil.a $(PTHREAD_LIBS)
else
tests_core_test_concurrency_SOURCES += tests/core/main.c
tests_core_test_concurrency_CPPFLAGS = $(AM_CPPFLAGS)
tests_core_test_concurrency_CFLAGS = $(core_test_cflags)
tests_core_test_concurrency_LDADD = $(core_test_ldadd)
endif
endif
