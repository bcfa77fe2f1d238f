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
 *  - loadblk() returns the last *committed* content of the block: it never
 *    sees the stores of a transaction that is still open.
 *  - loadblk() is called with no core lock held, possibly from several
 *    threads at once, for different blocks of the same file (the core never
 *    loads the same block of one handle twice at once).
 *  - The store transaction (begin .. storeblk* truncate? .. commit|abort) is
 *    all or nothing: after commit() returns 0 every store of the transaction
 *    is durable; after commit() fails or abort() is called, none is visible.
 *    The core opens at most one transaction per file at a time, and calls
 *    the transaction's operations from one thread at a time, with no core
 *    lock held.
 *  - Every operation returns 0 or a negative errno value; none aborts the
 *    process.
 */
#ifndef BIGFILEFS_CORE_BIGFILE_H
#define BIGFILEFS_CORE_BIGFILE_H

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

struct bf_file_ops {
    /* Read block `blk` into `buf` (blksize bytes). Never-stored block: zeros.
     * Errors: -EIO and friends. On error the content of buf is undefined. */
    int (*loadblk)(bf_file *f, uint64_t blk, void *buf);

    /* Open a store transaction for this file. -EBUSY if one is open. */
    int (*begin)(bf_file *f);

    /* In a transaction: make `buf` (blksize bytes) the content of block
     * `blk`. An all-zero buffer may be stored as a hole. */
    int (*storeblk)(bf_file *f, uint64_t blk, const void *buf);

    /* In a transaction: forget every block with index >= nblocks (they read
     * as zeros afterwards). */
    int (*truncate)(bf_file *f, uint64_t nblocks);

    /* In a transaction: record `size` as the file's size and commit,
     * durably. On failure the transaction is rolled back and closed:
     * nothing of it is visible, and a new begin() may follow. */
    int (*commit)(bf_file *f, uint64_t size);

    /* In a transaction: roll it back and close it. Cannot fail. */
    void (*abort)(bf_file *f);

    /* Optional (may be NULL; the core then takes every block below the
     * committed size as stored). Which blocks are stored, for lseek's
     * SEEK_DATA/SEEK_HOLE and st_blocks. Like loadblk, both see committed
     * content only, never an open transaction's stores, and are called with
     * no core lock held, from any thread. A block stored as a hole (all
     * zeros) is not stored; a backend that keeps zero blocks may report
     * them (a zero block reported as data is harmless; never may a block
     * with content be left out). */

    /* Set *blk to the smallest index >= from of a stored block and return
     * 0; -ENXIO if there is none; or an error (-EIO ...). */
    int (*next_stored)(bf_file *f, uint64_t from, uint64_t *blk);

    /* Set *n to the number of stored blocks of the file. May cost time in
     * the number of blocks: the core caches the answer. */
    int (*stored_blocks)(bf_file *f, uint64_t *n);
};

/* One bigfile as the core sees it. A backend embeds this (first member) in
 * its own per-file structure; the core never frees it. */
struct bf_file {
    const struct bf_file_ops *ops;
    uint32_t blksize; /* power of two, fixed for the file's life */
    uint64_t size;    /* committed size in bytes, as of opening */
};

#endif /* BIGFILEFS_CORE_BIGFILE_H */
