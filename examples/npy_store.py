#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""npy_store — a block server that keeps its bigfiles in a directory of
.npy files, with atomic, durable writeouts.

    bigfilefs "exec:python3 npy_store.py DIR" /mnt/store

Any number of bigfiles, created, renamed and removed through the mount as
usual (bigfilectl create, mv, rm); their blocks are files a numpy user can
also read directly:

    DIR/catalog.json            the files: names, metadata, and for each
                                file the .npy file of every block it stores
    DIR/blocks/ID/BLK-GEN.npy   one committed block: a 1-D uint8 array of
                                blksize bytes (np.load(p, mmap_mode="r"))
    DIR/tx/                     blocks of writeouts not committed yet

A writeout (bigfilefs.writeout() on the mount) writes each stored block to
DIR/tx/ as it comes — nothing is held in memory, so the file sets
staged = False. Its commit moves them under blocks/ and then replaces
catalog.json atomically (a new one is written and fsync'ed, then renamed
over it): that rename is the commit point. A crash before it leaves the
catalog as it was, and the next start removes every file the catalog does
not name; the blocks the commit replaced are removed after it. Blocks of
zeros are holes: no file. numpy is not needed (the .npy header is written
by hand).

DIR is created if missing, and locked: one server at a time.
"""

import errno
import fcntl
import json
import os
import struct
import sys

from bigfilefs.server import BigFile, serve

NPY_MAGIC = b"\x93NUMPY\x01\x00"


def npy_header(nbytes):
    """The .npy (version 1.0) header of a 1-D uint8 array of nbytes."""
    d = "{'descr': '|u1', 'fortran_order': False, 'shape': (%d,), }" % nbytes
    d += " " * ((-(len(NPY_MAGIC) + 2 + len(d) + 1)) % 64) + "\n"
    return NPY_MAGIC + struct.pack("<H", len(d)) + d.encode("latin1")


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class NpyFile(BigFile):
    """One bigfile of the store: its committed blocks are .npy files."""

    staged = False

    def __init__(self, store, blocks=None, **kw):
        super().__init__(**kw)
        self.store = store
        self.blocks = blocks or {}  # blk -> file name under blocks/ID/
        self.pending = None         # the writeout's blocks: blk -> tx file, None for a hole
        self.trunc = None

    def dir(self):
        return os.path.join(self.store.root, "blocks", str(self.id))

    def loadblk(self, blk, buf):
        fname = self.blocks.get(blk)
        if fname is None:
            buf[:] = self.store.zeros(len(buf))
            return
        with open(os.path.join(self.dir(), fname), "rb", buffering=0) as f:
            head = f.read(10)
            if head[:8] != NPY_MAGIC:
                raise OSError(errno.EIO, "not a .npy file: %s" % fname)
            f.seek(10 + struct.unpack_from("<H", head, 8)[0])
            if f.readinto(buf) != len(buf):
                raise OSError(errno.EIO, "short block file: %s" % fname)

    def begin(self):
        self.pending, self.trunc = {}, None

    def storeblk(self, blk, buf):
        if buf == self.store.zeros(len(buf)):
            self.pending[blk] = None  # a hole
            return
        path = os.path.join(self.store.root, "tx", "%d-%d-%d.npy" % (self.id, blk,
                                                                     self.store.next_gen()))
        with open(path, "wb", buffering=0) as f:
            f.write(npy_header(len(buf)))
            f.write(buf)
            os.fsync(f.fileno())
        old = self.pending.get(blk)
        if old:
            os.unlink(old)
        self.pending[blk] = path

    def truncate(self, nblocks):
        self.trunc = nblocks if self.trunc is None else min(self.trunc, nblocks)
        for blk in [b for b in self.pending if b >= nblocks]:
            path = self.pending.pop(blk)
            if path:
                os.unlink(path)

    def commit(self, size):
        new = {b: f for b, f in self.blocks.items() if self.trunc is None or b < self.trunc}
        os.makedirs(self.dir(), exist_ok=True)
        moved = []
        for blk, path in sorted(self.pending.items()):
            if path is None:
                new.pop(blk, None)
                continue
            fname = os.path.basename(path).split("-", 1)[1]  # BLK-GEN.npy
            os.rename(path, os.path.join(self.dir(), fname))
            moved.append(fname)
            new[blk] = fname
        fsync_dir(self.dir())
        old, old_size = self.blocks, self.size
        self.blocks = new
        if size is not None:
            self.size = size
        try:
            self.store.save()  # the commit point
        except BaseException:
            self.blocks, self.size = old, old_size
            for fname in moved:
                os.unlink(os.path.join(self.dir(), fname))
            self.pending = None
            raise
        for fname in set(old.values()) - set(new.values()):
            os.unlink(os.path.join(self.dir(), fname))
        self.pending = None

    def abort(self):
        for path in (self.pending or {}).values():
            if path:
                os.unlink(path)
        self.pending = None

    def stored(self):
        return sorted(self.blocks)

    def delete(self):
        d = self.dir()
        for fname in os.listdir(d) if os.path.isdir(d) else []:
            os.unlink(os.path.join(d, fname))
        if os.path.isdir(d):
            os.rmdir(d)
        self.store.files.remove(self)


class Store:
    """The directory: the catalog, the files, and their ids."""

    def __init__(self, root):
        self.root = root
        for d in ("", "blocks", "tx"):
            os.makedirs(os.path.join(root, d), exist_ok=True)
        self.lockf = open(os.path.join(root, "lock"), "w")
        try:
            fcntl.flock(self.lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            sys.exit("npy_store: %s is in use by another server" % root)
        self._zeros = b""
        self.files = []
        self.next_id, self.gen = 1, 0
        path = os.path.join(root, "catalog.json")
        if os.path.exists(path):
            with open(path) as f:
                cat = json.load(f)
            self.next_id, self.gen = cat["next_id"], cat["gen"]
            for e in cat["files"]:
                blocks = {int(b): fname for b, fname in e.pop("blocks").items()}
                name, ctime = e.pop("name"), e.pop("ctime_ns")
                f = NpyFile(self, blocks, **e)
                f.name, f.ctime_ns = name, ctime
                self.files.append(f)
        self.collect()

    def collect(self):
        """Remove every block file the catalog does not name (a crash's)."""
        for fname in os.listdir(os.path.join(self.root, "tx")):
            os.unlink(os.path.join(self.root, "tx", fname))
        known = {str(f.id): set(f.blocks.values()) for f in self.files}
        top = os.path.join(self.root, "blocks")
        for d in os.listdir(top):
            for fname in os.listdir(os.path.join(top, d)):
                if fname not in known.get(d, ()):
                    os.unlink(os.path.join(top, d, fname))
            if d not in known:
                os.rmdir(os.path.join(top, d))

    def zeros(self, n):
        if len(self._zeros) != n:
            self._zeros = bytes(n)
        return self._zeros

    def next_gen(self):
        self.gen += 1
        return self.gen

    def create(self, name, blksize, size, mode, uid, gid):
        f = NpyFile(self, blksize=blksize, size=size, mode=mode, uid=uid, gid=gid,
                    id=self.next_id)
        self.next_id += 1
        self.files.append(f)
        return f

    def save(self):
        """Replace catalog.json atomically and durably."""
        cat = {"next_id": self.next_id, "gen": self.gen, "files": [
            {"id": f.id, "name": f.name, "blksize": f.blksize, "size": f.size, "mode": f.mode,
             "uid": f.uid, "gid": f.gid, "mtime_ns": f.mtime_ns, "ctime_ns": f.ctime_ns,
             "blocks": {str(b): fname for b, fname in sorted(f.blocks.items())}}
            for f in self.files]}
        path = os.path.join(self.root, "catalog.json")
        with open(path + ".new", "w") as out:
            json.dump(cat, out)
            out.flush()
            os.fsync(out.fileno())
        os.rename(path + ".new", path)
        fsync_dir(self.root)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: npy_store.py DIR  (run by bigfilefs \"exec:python3 npy_store.py DIR\")")
    store = Store(sys.argv[1])
    serve([(f.name, f) for f in store.files], create=store.create, changed=store.save,
          name="npy_store %s" % store.root)


if __name__ == "__main__":
    main()
