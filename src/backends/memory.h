/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: the memory backend.
 *
 * Keeps files and blocks in process memory. For tests and benchmarks:
 * besides the bf_db interface it can make operations fail and add latency,
 * so that every error path can be driven.
 *
 * Databases and sessions: "mem:" opens a fresh private database; "mem:LABEL"
 * the database of that label in this process, so that several bf_db (each
 * a session, as several mounts) share one store. A labelled database lives
 * while some bf_db has it open: the first open creates it, the last close
 * frees it. The process-wide table of labelled databases is this file's
 * only global state (a mutex-protected list). Sessions, serials, versions,
 * the commit log, holds, the conflict check and the housekeeping follow
 * docs/COHERENCE.md as the SQLite engine does; a session is live from its
 * open to its close (none dies otherwise), and a read-only session is not
 * registered (its applied serial holds nothing back; its open files are not
 * held — a purged file stays readable through a handle already open).
 * Commits wake every session's watcher directly (no polling).
 *
 * Blocks are kept per file in a map ordered by block; each block keeps its
 * versions (serial, session, content; an all-zero block is a hole). A
 * store transaction keeps its stores aside and applies them at commit, so
 * loadblk never sees them before. loadblk_range reads part of a block.
 * Staging keeps a copy of each staged content aside, per handle (freed
 * with it); storeblk_staged stores that copy without another, and the
 * commit moves it into the new version. Faults: stage and unstage may
 * fail or hold like the other operations; storeblk_staged counts as a
 * storeblk, loadblk_range as a loadblk.
 *
 * Fault injection: a rule makes one operation of one session (bf_db) fail
 * with an errno, or hold (block until released), on the blocks [blk_lo,
 * blk_hi] of one file (or every file), optionally only after the first
 * `after` matching calls have passed, optionally only `times` times. Rules
 * are checked in the order they were added; the first that fires decides.
 * Thread-safe.
 *
 * A hold lets a test wait for an event instead of sleeping: a held call
 * blocks before doing its work, bf_mem_wait_held() tells when it got
 * there, and bf_mem_release() lets it go (then it fails with the rule's
 * err if set, else it proceeds normally). A call is held with no lock of
 * the database held, so other calls go on meanwhile. Closing the database
 * while calls are held is a caller bug (BF_CHECK; a release build releases
 * them and waits for them to leave first).
 */
#ifndef BIGFILEFS_BACKENDS_MEMORY_H
#define BIGFILEFS_BACKENDS_MEMORY_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"

enum bf_mem_op {
    BF_MEM_LOADBLK = 1,
    BF_MEM_STOREBLK = 2,
    BF_MEM_BEGIN = 3,
    BF_MEM_TRUNCATE = 4,
    BF_MEM_COMMIT = 5,
    BF_MEM_STAGE = 6,   /* stage (block: its block) */
    BF_MEM_UNSTAGE = 7, /* unstage */
};

struct bf_mem_fault {
    enum bf_mem_op op;
    uint64_t file_id;  /* 0: any file */
    uint64_t blk_lo;   /* block range, inclusive (only for loadblk, storeblk, stage) */
    uint64_t blk_hi;   /* UINT64_MAX for "to the end" */
    int err;           /* positive errno to fail with, e.g. EIO; 0: do not fail */
    bool hold;         /* block a firing call until bf_mem_release (then err, if set) */
    uint64_t after;    /* let this many matching calls pass first */
    uint64_t times;    /* fire at most this many times; 0: unlimited */
    uint32_t delay_us; /* sleep this long in each matching call (fired or not) */
};

/* Open a session on the memory database of `label` ("" : a fresh private
 * one); see bf_db_open_ex for flags, options and errors (-EBUSY, -ENOMEM). */
int bf_mem_open(const char *label, unsigned flags, const struct bf_db_options *opt, bf_db **out,
                char *errbuf, size_t errlen);

/* Add a fault rule. A rule fires on a matching call once `after` matching
 * calls have passed, at most `times` times; a firing rule with err fails
 * the call, with hold holds it first. Returns 0, -EINVAL (db not a memory
 * database, bad op, err < 0, blk_lo > blk_hi), -ENOMEM. */
int bf_mem_inject(bf_db *db, const struct bf_mem_fault *fault);

/* Remove every fault rule, and release every held call (as
 * bf_mem_release). */
void bf_mem_clear_faults(bf_db *db);

/* Release every call held now, and make every hold rule inactive: later
 * matching calls pass it (neither held, nor failed, nor delayed by it). A
 * no-op for a db that is not a memory database. */
void bf_mem_release(bf_db *db);

/* The number of calls held right now; 0 for a db that is not a memory
 * database. */
uint64_t bf_mem_held(bf_db *db);

/* Wait until at least n calls are held at once (on a condition variable,
 * no polling), or timeout_ms milliseconds have passed (negative: no
 * limit). Returns 0, -ETIMEDOUT, or -EINVAL (not a memory database). */
int bf_mem_wait_held(bf_db *db, uint64_t n, int timeout_ms);

/* Count of calls of `op` made so far on any file by this session (for
 * tests). */
uint64_t bf_mem_calls(bf_db *db, enum bf_mem_op op);

/* Number of blocks stored (committed, current, not holes) for file `id`; 0
 * for an unknown file or a db that is not a memory database (for tests). */
uint64_t bf_mem_blocks(bf_db *db, uint64_t id);

/* Number of block versions kept for file `id` (current ones, holes
 * included, and old ones a lagging session may still read); 0 as above
 * (for tests). */
uint64_t bf_mem_versions(bf_db *db, uint64_t id);

/* Contents staged now by the session's handles (for tests). */
uint64_t bf_mem_staged(bf_db *db);

/* Number of commit-log rows kept (for tests). */
uint64_t bf_mem_log_rows(bf_db *db);

/* Return nonzero when db is a memory database. */
int bf_db_is_memory(const bf_db *db);

#endif /* BIGFILEFS_BACKENDS_MEMORY_H */
