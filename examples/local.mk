## SPDX-License-Identifier: MIT
## examples: a C program and a Python/numpy program using a bigfilefs mount.
## Both are built and RUN by `make check` against a real mount (in a private
## mount namespace), so they cannot rot; both are installed as documentation
## under $(docdir)/examples.
exampledir = $(docdir)/examples
dist_example_DATA = examples/mapdemo.c examples/numpy_demo.py
check_PROGRAMS += examples/mapdemo
examples_mapdemo_SOURCES = examples/mapdemo.c
TESTS += examples/run-mapdemo.sh
if HAVE_PYTHON
TESTS += examples/run-numpy-demo.sh
endif
EXTRA_DIST += examples/run-mapdemo.sh examples/run-numpy-demo.sh
