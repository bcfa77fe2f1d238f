# SPDX-License-Identifier: MIT
"""Check that python/bigfilefs/ and <bigfile/ioctl.h> agree exactly.

The compiled python/ioctl_numbers prints the request numbers, flags, struct
sizes and field offsets as the C compiler sees them; the module must compute
the same. The member list of struct bigfile_stat is also read from the header,
so a field added there without the module learning it fails here. Finally the
module's error paths are checked on a file that is not on bigfilefs.
Run by `make check` (PY_LOG_COMPILER) with BF_SRCDIR and BF_BUILDDIR set."""

import errno
import os
import re
import subprocess
import sys
import tempfile

srcdir = os.environ.get("BF_SRCDIR") or os.path.join(os.path.dirname(__file__), "..")
builddir = os.environ.get("BF_BUILDDIR") or srcdir
sys.path.insert(0, os.path.join(srcdir, "python"))
sys.dont_write_bytecode = True    # leave no __pycache__ in the source tree
import bigfilefs  # noqa: E402

failures = []


def check(what, got, want):
    if got != want:
        failures.append("%s: module has %r, C has %r" % (what, got, want))


# --- 1. numbers, sizes and offsets against the C compiler ------------------
prog = os.path.join(builddir, "python", "ioctl_numbers")
out = subprocess.run([prog], check=True, stdout=subprocess.PIPE,
                     universal_newlines=True).stdout
c = {}
for line in out.splitlines():
    name, value = line.rsplit(" ", 1)
    c[name] = int(value)

REQUESTS = ("BIGFILE_IOC_WRITEOUT", "BIGFILE_IOC_DISCARD", "BIGFILE_IOC_INVALIDATE",
            "BIGFILE_IOC_STAT", "BIGFILE_IOC_RECLAIM", "BIGFILE_IOC_SETBLKSIZE",
            "BIGFILE_IOC_SYNC", "BIGFILE_IOC_WRITEOUT2", "BIGFILE_IOC_CONFLICTS")
for name in ("BIGFILE_IOC_MAGIC",) + REQUESTS + (
             "BIGFILE_WRITEOUT_STORE", "BIGFILE_WRITEOUT_MARKSTORED",
             "BIGFILE_WRITEOUT_OVERWRITE", "BIGFILE_CONFLICTS_MAX",
             "BIGFILE_CONFLICTS_END", "BIGFILE_CONFLICTS_SIZE", "BIGFILE_STAT_VERSION"):
    check(name, getattr(bigfilefs, name), c.pop(name))


def expand(fmt):
    """'=II2Q' -> ['I', 'I', 'Q', 'Q']"""
    codes = []
    for count, code in re.findall(r"(\d*)([A-Za-z])", fmt.lstrip("=<>!@")):
        codes += [code] * int(count or 1)
    return codes


def offsets(st, fields):
    """Offset of each named field of a module struct; a trailing array
    field ('reserved' of the stat struct) starts where the names run out."""
    codes = expand(st.format)
    res = {}
    for i, f in enumerate(fields):
        res[f] = bigfilefs.struct.calcsize("=" + "".join(codes[:i]))
    return res


structs = {
    "bigfile_writeout": (bigfilefs._WRITEOUT, ["flags", "reserved", "blocks", "bytes"]),
    "bigfile_writeout2": (bigfilefs._WRITEOUT2, ["flags", "reserved", "blocks", "bytes",
                                                 "serial", "conflict_blocks"]),
    "bigfile_serial": (bigfilefs._SERIAL, ["serial"]),
    "bigfile_conflicts": (bigfilefs._CONFLICTS, ["start", "next", "count", "flags", "ranges"]),
    "bigfile_range": (bigfilefs._RANGE, ["start", "count"]),
    "bigfile_count": (bigfilefs._COUNT, ["blocks", "bytes"]),
    "bigfile_blksize": (bigfilefs._BLKSIZE, ["blksize", "reserved"]),
    "bigfile_stat": (bigfilefs._STAT,
                     ["version", "blksize"] + list(bigfilefs.STAT_FIELDS) + ["reserved"]),
}
for sname, (st, fields) in structs.items():
    check("sizeof(struct %s)" % sname, st.size, c.pop("sizeof(struct %s)" % sname))
    for f, off in offsets(st, fields).items():
        key = "offsetof(%s.%s)" % (sname, f)
        if key not in c:
            failures.append("%s: the C program does not know field %s" % (sname, f))
            continue
        check(key, off, c.pop(key))
if c:
    failures.append("C values the module was not checked against: %s" % sorted(c))

# --- 2. the member list of struct bigfile_stat, from the header ------------
with open(os.path.join(srcdir, "include", "bigfile", "ioctl.h")) as fh:
    header = fh.read()
body = re.search(r"struct bigfile_stat\s*\{(.*?)\};", header, re.S).group(1)
body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
members = re.findall(r"__u\d+\s+(\w+)", body)
check("struct bigfile_stat members", ["version", "blksize"] + list(bigfilefs.STAT_FIELDS) + ["reserved"], members)
check("stat reserved count", expand(bigfilefs._STAT.format).count("Q") - len(bigfilefs.STAT_FIELDS),
      int(re.search(r"reserved\[(\d+)\]", body).group(1)))

# --- 3. error paths, on a file that is not on bigfilefs ---------------------
def expect_errno(what, want, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except OSError as e:
        if e.errno != want:
            failures.append("%s: errno %s, want %s" % (what, errno.errorcode.get(e.errno), errno.errorcode[want]))
        return
    failures.append("%s: no error, want %s" % (what, errno.errorcode[want]))


with tempfile.NamedTemporaryFile() as tmp:
    for fn, args in ((bigfilefs.writeout, ()), (bigfilefs.discard, ()),
                     (bigfilefs.invalidate, (0, 1)), (bigfilefs.stat, ()),
                     (bigfilefs.reclaim, ()), (bigfilefs.set_blksize, (4096,)),
                     (bigfilefs.sync, ()), (bigfilefs.conflicts, ())):
        expect_errno("%s(path) on a plain file" % fn.__name__, errno.ENOTTY, fn, tmp.name, *args)
    expect_errno("stat(fd) on a plain file", errno.ENOTTY, bigfilefs.stat, tmp.fileno())
    expect_errno("stat(file object) on a plain file", errno.ENOTTY, bigfilefs.stat, tmp)
    expect_errno("writeout with no flag", errno.EINVAL, bigfilefs.writeout, tmp.name,
                 store=False, markstored=False)
    expect_errno("writeout overwrite without store", errno.EINVAL, bigfilefs.writeout, tmp.name,
                 store=False, overwrite=True)
expect_errno("stat of a missing path", errno.ENOENT, bigfilefs.stat,
             os.path.join(tempfile.gettempdir(), "bigfilefs-no-such-file-%d" % os.getpid()))

e = bigfilefs.ConflictError("f", [(5, 1)], True)
if not (isinstance(e, OSError) and e.errno == errno.ESTALE and e.ranges == [(5, 1)]
        and e.size_conflict and e.filename == "f"):
    failures.append("ConflictError: not an OSError ESTALE with its ranges: %r" % (e,))

if failures:
    for f in failures:
        print("FAIL:", f)
    sys.exit(1)
print("ok: bigfilefs agrees with <bigfile/ioctl.h> (%d requests, %d structs); error paths ok"
      % (len(REQUESTS), len(structs)))
