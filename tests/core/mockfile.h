/* SPDX-License-Identifier: MIT */
/* bigfilefs — tests/core: a bf_file kept in memory, for the core's tests.
 *
 * - Committed blocks live in a small table of *versions*: every commit has a
 *   serial (1, 2, ...) and adds a version to each block it stores (a hole
 *   for each block its truncate drops); loadblk(at) returns the newest
 *   version <= at. A store transaction keeps its stores, their bases and
 *   its truncate aside and applies them only at commit, so loadblk always
 *   returns committed content. commit checks conflicts as bigfile.h says
 *   (a stored block's current version made by another bf_file after its
 *   base, the size changed by another after size_base, FILE_CONFLICTS) and
 *   refuses with -ESTALE.
 * - Several bf_file objects may be open on one mock (mock_open_file): as
 *   several mounts of one database, each with its own transaction.
 * - Every operation is counted (mock_calls), and the order of storeblk
 *   blocks of the last transaction is recorded (mock_store_order).
 * - Fault injection: mock_fail makes one operation fail with an errno on one
 *   block (or any), after letting `skip` matching calls succeed, once or
 *   until cleared.
 * - next_stored and stored_blocks answer from the committed blocks (a
 *   held call returns the answer of when it started).
 * - The optional operations: loadblk_range (as loadblk, for a part; the
 *   bytes it copies are counted, mock_range_bytes), and staging (stage
 *   keeps a copy aside under a new token; unstage, stage_drop;
 *   storeblk_staged stores a staged copy, and its commit uses the token
 *   up). A token that is unknown (never staged, dropped, or used up) in
 *   any of them aborts the process: the core lost track of one.
 *   mock_staged counts the contents staged now. mock_no_stage and
 *   mock_no_range take them away (before bf_fileh_open).
 * - Gates: mock_gate makes loadblk, storeblk, next_stored or stored_blocks
 *   of one block (or any), or commit, block until mock_gate_release;
 *   mock_gate_wait waits until N calls are held, so a test can freeze a
 *   load, a store or a commit in progress deterministically. A held
 *   loadblk has already read its data (it returns the data of when it
 *   started); a held storeblk reads the caller's buffer only when released
 *   (so a change of that buffer meanwhile would show); a held commit has
 *   applied nothing yet (the transaction is still open).
 *
 * Thread-safe: one mutex inside, never held while a call is held at a gate.
 */
#ifndef BIGFILEFS_TESTS_CORE_MOCKFILE_H
#define BIGFILEFS_TESTS_CORE_MOCKFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/bigfile.h"

#define MOCK_ANY UINT64_MAX /* any block */

enum mock_op {
    MOCK_LOADBLK,
    MOCK_BEGIN,
    MOCK_STOREBLK,
    MOCK_TRUNCATE,
    MOCK_COMMIT,
    MOCK_ABORT,
    MOCK_NEXT_STORED, /* fault/gate block: the `from` argument */
    MOCK_STORED_BLOCKS,
    MOCK_LOADBLK_RANGE, /* fault/gate block: its block */
    MOCK_STAGE,         /* fault/gate block: its block */
    MOCK_UNSTAGE,       /* fault/gate: any */
    MOCK_STAGE_DROP,    /* counted only */
    MOCK_STOREBLK_STAGED,
    MOCK_NOPS,
};

struct mockfile;

/* A new mock file (file->ops set, file->size = size). Aborts the test
 * process on out of memory. */
struct mockfile *mock_new(uint32_t blksize, uint64_t size);
void mock_free(struct mockfile *m);

/* The bf_file to give to bf_fileh_open. */
bf_file *mock_file(struct mockfile *m);

/* Another bf_file on the same store, as another mount would open it: its
 * size and serial are the store's now. Freed by mock_free. */
bf_file *mock_open_file(struct mockfile *m);

/* The last commit's serial (0: none yet); the serial of block blk's current
 * version (0: never committed). */
uint64_t mock_serial(struct mockfile *m);
uint64_t mock_block_serial(struct mockfile *m, uint64_t blk);

/* Read block blk as of serial `at` (zeros when absent). */
void mock_get_block_at(struct mockfile *m, uint64_t blk, uint64_t at, void *out);

/* From now on a load as of a serial older than `serial` fails with -ESTALE,
 * as a store that collected those versions answers. */
void mock_forget_before(struct mockfile *m, uint64_t serial);

/* Set committed block blk to the pattern of `seed` (mock_pattern), or to
 * the given content — the current version changes in place, as behind the
 * protocol's back; read committed block blk (its current version; zeros
 * when absent). */
void mock_set_block(struct mockfile *m, uint64_t blk, unsigned seed);
void mock_put_block(struct mockfile *m, uint64_t blk, const void *data);
void mock_get_block(struct mockfile *m, uint64_t blk, void *out);
bool mock_has_block(struct mockfile *m, uint64_t blk);
uint64_t mock_nblocks(struct mockfile *m); /* committed blocks stored */
uint64_t mock_committed_size(struct mockfile *m);

/* Fill buf (len bytes) with a pattern that depends on seed and on the
 * byte's offset `base + i` (different seeds and offsets differ). */
void mock_pattern(void *buf, size_t len, unsigned seed, uint64_t base);

/* Calls of op so far (successful or not). */
uint64_t mock_calls(struct mockfile *m, enum mock_op op);

/* Blocks passed to storeblk in the last transaction, in call order; returns
 * their count, fills up to max of them. */
size_t mock_store_order(struct mockfile *m, uint64_t *blks, size_t max);

/* Fail op with -err on block blk (MOCK_ANY: any; ignored for non-block
 * ops) after `skip` matching calls succeeded; once, or every time
 * (sticky) until mock_clear_faults. One fault per op. */
void mock_fail(struct mockfile *m, enum mock_op op, int err, uint64_t blk, unsigned skip,
               bool sticky);
void mock_clear_faults(struct mockfile *m);

/* Gate loadblk, loadblk_range, storeblk, stage, next_stored (block: its
 * `from`) or stored_blocks of block blk (MOCK_ANY: any), or commit or
 * unstage (blk ignored):
 * matching calls wait until released. Wait until at least n calls are held (returns false
 * after timeout_ms). Release lets every held and later call through and
 * disarms the gate. */
void mock_gate(struct mockfile *m, enum mock_op op, uint64_t blk);
bool mock_gate_wait(struct mockfile *m, enum mock_op op, unsigned n, unsigned timeout_ms);
void mock_gate_release(struct mockfile *m, enum mock_op op);
unsigned mock_gate_held(struct mockfile *m, enum mock_op op);

/* Make the file's ops leave next_stored and stored_blocks NULL (before
 * bf_fileh_open), as a backend may. */
void mock_no_seek(struct mockfile *m);

/* The same for the staging operations, and for loadblk_range. */
void mock_no_stage(struct mockfile *m);
void mock_no_range(struct mockfile *m);

/* Contents staged now (not dropped, not used up by a commit). */
uint64_t mock_staged(struct mockfile *m);

/* Bytes copied by loadblk_range so far. */
uint64_t mock_range_bytes(struct mockfile *m);

/* True while a transaction is open. */
bool mock_in_txn(struct mockfile *m);

#endif /* BIGFILEFS_TESTS_CORE_MOCKFILE_H */
