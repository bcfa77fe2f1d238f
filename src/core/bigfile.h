/* SPDX-License-Identifier: MIT */
/* bigfilefs — core: what the core needs from a backend for one bigfile.
 *
 * A bigfile is a sparse sequence of fixed-size blocks plus a size in bytes.
 * The core (fileh.h) never talks SQL or FUSE: it reaches the stored content
 * of one bigfile only through the operations below, which a backend
 * (src/backends/) implements.
 *
 * Contracts every backend keeps:
 *
 *  - A block is blksize bytes; blksize is a power of two in
 *    [BF_BLKSIZE_MIN, BF_BLKSIZE_MAX] and never changes for a file.
 *  - A block that was never stored (or was removed by truncate) reads as
 *    zeros.
 *  - Commits are numbered: every commit of the database gets a *serial*, a
 *    64-bit number strictly increasing in commit order (docs/COHERENCE.md).
 *    Serial 0 is "before any commit". A store that keeps no serials (one
 *    that is never shared) may number every version 0 and answer every
 *    `at` with its current content.
 *  - loadblk(at) returns committed content only, as of serial `at`: the
 *    newest version of the block with a serial <= at (BF_SERIAL_NOW: the
 *    current one). It never sees the stores of a transaction that is still
 *    open. A store keeps the versions that a live reader may still ask for
 *    (COHERENCE.md, rule 3).
 *  - loadblk() is called with no core lock held, possibly from several
 *    threads at once, for different blocks of the same file (the core never
 *    loads the same block of one handle twice at once).
 *  - The store transaction (begin .. storeblk* truncate? .. commit|abort) is
 *    all or nothing: after commit() returns 0 every store of the transaction
 *    is durable; after commit() fails or abort() is called, none is visible.
 *    Unless told to overwrite, commit() refuses (-ESTALE) to replace a block
 *    that another commit changed after the version the change was based on
 *    (its `base`): no update is ever lost silently. The core opens at most
 *    one transaction per file at a time, and calls the transaction's
 *    operations from one thread at a time, with no core lock held.
 *  - Every operation returns 0 or a negative errno value; none aborts the
 *    process.
 */
#ifndef BIGFILEFS_CORE_BIGFILE_H
#define BIGFILEFS_CORE_BIGFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BF_BLKSIZE_MIN ((uint32_t)4096)        /* 4 KiB  */
#define BF_BLKSIZE_MAX ((uint32_t)64 << 20)    /* 64 MiB */
#define BF_BLKSIZE_DEFAULT ((uint32_t)2 << 20) /* 2 MiB, as wendelin's ZBigFile */

/* Largest size of a bigfile, in bytes (the kernel's limit is 2^63-1; we keep
 * a margin so that offset + length never overflows). */
#define BF_SIZE_MAX ((uint64_t)1 << 62)

/* Return nonzero when blksize is a valid block size. */
static inline int bf_blksize_valid(uint64_t blksize)
{
    return blksize >= BF_BLKSIZE_MIN && blksize <= BF_BLKSIZE_MAX && (blksize & (blksize - 1)) == 0;
}

typedef struct bf_file bf_file;

/* A block range [start, start + count). */
struct bf_blkrange {
    uint64_t start, count;
};

/* What a commit changed in one file's content, as another mount applies it
 * (fileh.h, bf_fileh_apply; the backends' commit log delivers it). */
struct bf_commit {
    uint64_t serial;                  /* > 0 */
    const struct bf_blkrange *ranges; /* blocks it stored: sorted, disjoint */
    size_t nranges;
    uint64_t trunc;    /* first block a shrink dropped; UINT64_MAX: none */
    bool size_changed; /* the commit set the size ... */
    uint64_t size;     /* ... to this */
};

/* "The current version" for loadblk's `at`. */
#define BF_SERIAL_NOW UINT64_MAX

/* Flags of a commit (struct bf_commit_req). */
enum bf_commit_flags {
    /* No conflict check: the transaction's blocks and size replace
     * whatever was committed since their bases (last writer wins). */
    BF_COMMIT_OVERWRITE = 1 << 0,
    /* Per-file conflicts: any commit that changed the file's content or
     * size after file_base makes every stored block a conflict. */
    BF_COMMIT_FILE_CONFLICTS = 1 << 1,
};

/* conflict()'s block argument for a conflict on the size (or on blocks a
 * truncate would drop, when the store cannot name them). */
#define BF_CONFLICT_SIZE UINT64_MAX

/* What commit() is asked to do besides storing the transaction's blocks. */
struct bf_commit_req {
    unsigned flags;     /* BF_COMMIT_* */
    bool size_set;      /* the size changed: record `size` */
    uint64_t size;      /* the new size, when size_set */
    uint64_t size_base; /* the serial as of which the committed size was
                           known: a size_set or truncate conflicts with any
                           later commit of another session that changed the
                           size or a dropped block */
    uint64_t file_base; /* BF_COMMIT_FILE_CONFLICTS: the serial as of which
                           the file was clean in the caller's view */
    /* Called, with no core lock held, for each conflicting block before
     * commit() returns -ESTALE (BF_CONFLICT_SIZE for the size); may be
     * NULL. */
    void (*conflict)(void *arg, uint64_t blk);
    void *arg;
};

/* Where loadblk_send passes bytes on (the daemon: a READ's reply, which
 * it splices from the store's file, so that the kernel copies the bytes
 * once, from that file's page cache). */
struct bf_sink {
    /* Pass bytes [pos, pos + len) of the open file fd on, whole. Called
     * with no core lock held. Returns 0 when they were passed on (or the
     * reader is gone), or a negative errno when nothing was (the file is
     * shorter, a read error, they cannot be passed this way; -EINVAL: fd
     * refused the read itself, as a descriptor opened O_DIRECT may): the
     * caller then reads them with loadblk. */
    int (*send)(struct bf_sink *sink, int fd, uint64_t pos, size_t len);
};

struct bf_file_ops {
    /* Read the newest version of block `blk` with a serial <= `at`
     * (BF_SERIAL_NOW: the current version) into `buf` (blksize bytes); a
     * block never stored reads as zeros. *serial (if not NULL) gets that
     * version's serial (0 for a block never written). Errors: -ESTALE (the
     * store no longer keeps the version as of `at`: the caller may ask for
     * a newer one), -EIO and friends. On error the content of buf is
     * undefined. */
    int (*loadblk)(bf_file *f, uint64_t blk, uint64_t at, void *buf, uint64_t *serial);

    /* Open a store transaction for this file. -EBUSY if one is open. */
    int (*begin)(bf_file *f);

    /* In a transaction: make `buf` (blksize bytes) the content of block
     * `blk`; `base` is the serial of the content the change was made on
     * (the conflict check compares it with the block's current version).
     * An all-zero buffer may be stored as a hole. A store may upload the
     * content here, before the commit, with nothing locked that other
     * files' commits or namespace changes wait for. */
    int (*storeblk)(bf_file *f, uint64_t blk, const void *buf, uint64_t base);

    /* In a transaction: forget every block with index >= nblocks (they read
     * as zeros afterwards). */
    int (*truncate)(bf_file *f, uint64_t nblocks);

    /* In a transaction: the commit section. Check for conflicts (unless
     * BF_COMMIT_OVERWRITE) — a conflict is a commit of *another* session
     * (another mount: the store knows who committed what) newer than the
     * base it is compared with; a mount's own commits are always part of
     * its view, since one handle per file and mount makes every change:
     * a stored block whose current version is such a commit after its
     * base; with req->size_set or a truncate, a change of the size or of a
     * dropped block after req->size_base; with BF_COMMIT_FILE_CONFLICTS,
     * any change of the file after req->file_base. Then make the stores,
     * the truncate and the size (if req->size_set) the file's new committed
     * state, durably, under a new serial (*serial). Returns 0; -ESTALE when
     * there were conflicts (req->conflict was called for each; nothing is
     * committed); or another error (nothing is committed). In every case
     * the transaction is closed: a new begin() may follow. */
    int (*commit)(bf_file *f, const struct bf_commit_req *req, uint64_t *serial);

    /* In a transaction: roll it back and close it. Cannot fail. */
    void (*abort)(bf_file *f);

    /* Optional (may be NULL; the core then takes every block below the
     * committed size as stored). Which blocks are stored, for lseek's
     * SEEK_DATA/SEEK_HOLE and st_blocks. Like loadblk, both see committed
     * content only (the current versions), never an open transaction's
     * stores, and are called with no core lock held, from any thread. A
     * block stored as a hole (all zeros) is not stored; a backend that
     * keeps zero blocks may report them (a zero block reported as data is
     * harmless; never may a block with content be left out). */

    /* Set *blk to the smallest index >= from of a stored block and return
     * 0; -ENXIO if there is none; or an error (-EIO ...). */
    int (*next_stored)(bf_file *f, uint64_t from, uint64_t *blk);

    /* Set *n to the number of stored blocks of the file. May cost time in
     * the number of blocks: the core caches the answer. */
    int (*stored_blocks)(bf_file *f, uint64_t *n);

    /* ---- Optional: partial loads (NULL: the core loads whole blocks). */

    /* Read bytes [off, off + len) of block `blk` as loadblk would read
     * them (the newest version with a serial <= at; zeros for a block
     * never stored) into buf (len bytes). off + len <= blksize, len > 0.
     * Same errors and calling rules as loadblk; the core asks for the
     * rest of a block later as of the same `at`, so that the parts of one
     * cached block are of one version. */
    int (*loadblk_range)(bf_file *f, uint64_t blk, uint64_t at, uint32_t off, uint32_t len,
                         void *buf, uint64_t *serial);

    /* ---- Optional: reads answered without a copy (NULL: never). */

    /* Answer a read with bytes [off, off + len) of block `blk` as loadblk
     * would read them (as of `at`), straight from a file of the store:
     * call sink->send once with that file, its offset and len, while the
     * store keeps those bytes there unchanged (a write or a punch of them
     * waits until send returns). off + len <= blksize, len > 0. Returns 0
     * when send passed them on, and only then; else the caller reads them
     * with loadblk, which reports any error: -ENODATA when the bytes are
     * not in such a file (a hole, a block never stored, a content kept
     * another way), send's error, -ESTALE, or another error (not logged:
     * loadblk says it). The store keeps the bytes unchanged only against
     * its own session's writes: a store shared with other processes that
     * write the file must not offer it. Called like loadblk (no core lock
     * held, any thread). */
    int (*loadblk_send)(bf_file *f, uint64_t blk, uint64_t at, uint32_t off, uint32_t len,
                        struct bf_sink *sink);

    /* Optional, with loadblk_send (NULL: prefetch loads into memory): a
     * sequential reader's prefetch of block `blk` as of `at`, for the
     * loadblk_send calls that follow: 0 when the store needs nothing
     * more (it may start reading the block in its file; its sends may
     * read ahead on their own); -ENODATA when prefetch should load it
     * into memory: the block is not in such a file, or its sends would
     * each read from the disk while the reader waits (a load reads the
     * whole block ahead of the reader, in one request); or an error (a
     * hint: prefetch stops). Called like loadblk. */
    int (*loadblk_ahead)(bf_file *f, uint64_t blk, uint64_t at);

    /* ---- Optional: staging (all four, or none: the core then keeps every
     * uncommitted block in memory). The staging area holds the contents
     * of uncommitted blocks that the core dropped from memory (spilled)
     * until they are committed, read back, or dropped. A staged content
     * is seen by no reader and by no other session; it needs to survive
     * only as long as the session: a commit that uses it makes it
     * durable, and after a crash it is garbage (a store removes it at its
     * next start at the latest). Tokens name staged contents of one
     * bf_file; the core never interprets them. stage, unstage and
     * stage_drop may be called from several threads at once for
     * different tokens, with no core lock held, also while loads run,
     * but never while a store transaction of the same bf_file is open. */

    /* Keep `buf` (blksize bytes, the content of block `blk`) in the
     * staging area: *token names it. Errors: -ENOSPC (the staging area is
     * full: nothing was kept), -EIO ... */
    int (*stage)(bf_file *f, uint64_t blk, const void *buf, uint64_t *token);

    /* Read staged content `token` back into buf (blksize bytes); the
     * token stays valid. */
    int (*unstage)(bf_file *f, uint64_t token, void *buf);

    /* Forget staged content `token` (it is not wanted any more). Cannot
     * fail: a store that could not free it leaves it to its housekeeping
     * (as garbage of the session). */
    void (*stage_drop)(bf_file *f, uint64_t token);

    /* In a transaction: as storeblk with the staged content `token`, which
     * the store links into the block's new version without copying it
     * again where it can. When the transaction commits, the token is used
     * up (neither unstage nor stage_drop may be called with it again);
     * when it is aborted or its commit fails, the token stays valid and
     * its content staged, so that the writeout can be retried. */
    int (*storeblk_staged)(bf_file *f, uint64_t blk, uint64_t token, uint64_t base);
};

/* One bigfile as the core sees it. A backend embeds this (first member) in
 * its own per-file structure; the core never frees it. */
struct bf_file {
    const struct bf_file_ops *ops;
    uint32_t blksize; /* power of two, fixed for the file's life */
    uint64_t size;    /* committed size in bytes, as of `serial` */
    uint64_t serial;  /* the serial the file was opened at: its size, and the
                         content a handle reads, are as of it */
};

#endif /* BIGFILEFS_CORE_BIGFILE_H */
