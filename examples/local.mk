## SPDX-License-Identifier: MIT
## examples: a C program and a Python/numpy program using a bigfilefs mount,
## and two block servers in Python (bigfilefs-protocol(7)): computed_array.py
## (blocks computed on first access) and npy_store.py (a directory of .npy
## files, atomic writeouts). All are RUN by `make check` against a real
## mount (in a private mount namespace), so they cannot rot; npy_store.py is
## also the Python server of the shared backend suite (tests/backends). All
## are installed as documentation under $(docdir)/examples.
exampledir = $(docdir)/examples
dist_example_DATA = examples/mapdemo.c examples/numpy_demo.py examples/computed_array.py \
	examples/npy_store.py
check_PROGRAMS += examples/mapdemo
examples_mapdemo_SOURCES = examples/mapdemo.c
TESTS += examples/run-mapdemo.sh
if HAVE_PYTHON
TESTS += examples/run-numpy-demo.sh examples/run-computed-array.sh examples/run-npy-store.sh
endif
EXTRA_DIST += examples/run-mapdemo.sh examples/run-numpy-demo.sh \
	examples/run-computed-array.sh examples/run-npy-store.sh
