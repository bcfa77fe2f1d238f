/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — the prefetcher: blocks loaded ahead of sequential
 * reads.
 *
 * Why: the kernel asks for a block only when a reader (or its readahead)
 * reaches it, one READ at a time per reader, so a cold sequential read
 * waits for every load in turn. After each READ, ops.c asks the core
 * (bf_fileh_readahead) whether the handle reads sequentially and which
 * blocks follow; it queues those here, and the prefetcher's threads load
 * them in parallel (bf_fileh_prefetch: clean, evictable, within a quarter
 * of the cache budget, never stale — the core drops a load that an
 * invalidation, a truncate or another mount's commit overtook).
 *
 * Only blocks that hold data are prefetched (bf_fileh_seek_data): a hole
 * needs no load, and a sparse reader (cp --sparse) skips the holes.
 *
 * A job holds a reference on its inode (bf_itable_find .. bf_itable_put)
 * and uses the handle only if it is still open (bf_inode_fh_peek: a
 * prefetch never opens one). A view file's job (views.h) holds its view
 * inode (bf_views_hold .. bf_views_put), which keeps its handle. The queue is bounded (BF_PREFETCH_QUEUE):
 * when it is full an offer is dropped — a prefetch is a hint, and a READ
 * never waits for room. Load errors are ignored (the READ that needs the
 * block loads it again and reports its own error).
 *
 * Locking: one mutex protects the queue; it is never held while a job
 * runs. bf_prefetch_offer from any thread (request threads); start and
 * stop from one thread (main). stop drops the queued jobs and joins the
 * threads: after it no job runs, so the inode table may be destroyed.
 */
#ifndef BIGFILEFS_FS_PREFETCH_H
#define BIGFILEFS_FS_PREFETCH_H

#include <stdint.h>

#include "fs/inode.h"
#include "fs/views.h"

/* The prefetcher's threads and the jobs it keeps waiting. */
#define BF_PREFETCH_THREADS 2u
#define BF_PREFETCH_QUEUE 32u

typedef struct bf_prefetch bf_prefetch;

/* Start the threads, prefetching through the inode table t. Returns 0,
 * -ENOMEM or a pthread_create error (nothing is left running). */
int bf_prefetch_start(bf_itable *t, bf_prefetch **out);

/* Queue the prefetch of blocks [blk, blk + n) of inode (which the caller
 * holds open or referenced). Never blocks; drops the offer when the queue
 * is full, stopped, or the inode cannot be referenced. pf NULL: no-op. */
void bf_prefetch_offer(bf_prefetch *pf, bf_inode *inode, uint64_t blk, uint64_t n);

/* The same for blocks of a view file (views.h), whose inode vn the caller
 * has open. */
void bf_prefetch_offer_view(bf_prefetch *pf, bf_views *views, bf_vnode *vn, uint64_t blk,
                            uint64_t n);

/* Drop the queued jobs, wait for the running ones, join the threads and
 * free pf. NULL: no-op. */
void bf_prefetch_stop(bf_prefetch *pf);

#endif /* BIGFILEFS_FS_PREFETCH_H */
