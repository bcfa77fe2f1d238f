/* SPDX-License-Identifier: MIT */
/* bigfilefs — core: file handles.
 *
 * A file handle (bf_fileh) is a snapshot of one bigfile (bigfile.h) that can
 * be modified in memory. Reads load blocks on demand from the backend;
 * writes change cached blocks and mark them DIRTY. The changes — block
 * contents and the file size — reach the backend only by bf_fileh_writeout(),
 * atomically, or are dropped by bf_fileh_discard().
 *
 * Page states
 * -----------
 * Every block of a handle is in one of these states. EMPTY blocks are not in
 * the handle's pagemap; the others are.
 *
 *   EMPTY    --read/write/truncate/prefetch--> LOADING (loadblk or loadblk_range
 *                                                     runs, lock released)
 *   EMPTY    --write-->                    DIRTY      (no loadblk: see below)
 *   LOADING  --load ok-->                  LOADED
 *   LOADING  --load error-->               EMPTY      (the error goes to the caller;
 *                                                      a completion's: LOADED)
 *   LOADING  --invalidate/truncate/apply-->LOADING_INVALIDATED
 *   LOADING_INVALIDATED --load done-->     EMPTY      (result thrown away; the
 *                                                      caller loads again)
 *   LOADED   --read of bytes not loaded--> LOADING    (a partial page completed)
 *   LOADED   --write/truncate-->           DIRTY      (a partial write may pin it
 *                                                      DIRTY while it loads more)
 *   LOADED   --reclaim/budget/invalidate/apply--> EMPTY
 *   LOADED   --truncate below the block--> EMPTY
 *   DIRTY    --writeout(MARKSTORED)-->     LOADED
 *   DIRTY    --write that gave up-->       LOADED     (its pin undone, content
 *                                                      unchanged)
 *   DIRTY    --spill-->                    SPILLED    (content staged, buffer freed)
 *   DIRTY    --unspill failed-->           SPILLED    (back as it was)
 *   DIRTY    --discard/invalidate-->       EMPTY
 *   DIRTY    --truncate below the block--> EMPTY
 *   SPILLED  --read/partial write/truncate--> DIRTY   (unspilling: its content read
 *                                                      back with the lock released)
 *   SPILLED  --write of the whole block--> DIRTY      (staged content dropped)
 *   SPILLED  --writeout(STORE) committed-->EMPTY      (its staged content is the
 *                                                      block's committed content)
 *   SPILLED  --discard/invalidate-->       EMPTY      (staged content dropped)
 *   SPILLED  --truncate below the block--> EMPTY      (staged content dropped)
 *   LOADED, DIRTY, SPILLED --close-->      EMPTY
 *
 * No other transition exists (I9 below).
 *
 * A write that covers a whole block, or a block that lies wholly past the
 * lowest size the handle had since the last commit, needs no loadblk: the
 * block starts as zeros (or as the written data). Neither does one that
 * covers whole 4 KiB units of a block (see "Partial pages").
 *
 * Partial pages
 * -------------
 * A LOADED or DIRTY page may be *partial*: only some of its 4 KiB units
 * (BF_UNIT) are valid, the others are the block's content as of the
 * page's serial (a LOADED page's view, a DIRTY page's base) and are
 * filled from it only when something needs them. A write of whole units
 * into a block that is not cached makes a partial DIRTY page without
 * loading it (the kernel's writeback sends 1 MiB WRITEs, half a 2 MiB
 * block: two of them make a whole block, never loaded); a write that
 * covers a unit in part needs that unit (the page is completed first). A
 * read of bytes that are not valid completes the page: a DIRTY one whole
 * from its base (a *fill*), a LOADED one whole or, for a random read,
 * only the 64 KiB (BF_RANGE_LOAD) around it (loadblk_range, as of the
 * page's serial). A writeout stores a partial block merged onto its base
 * (never onto a newer version); a spill stages it so too. A *random* read
 * (one that does not continue the handle's last read) of a block that is
 * not cached loads only the 64 KiB around it when the store has
 * loadblk_range: a partial LOADED page, dropped by invalidations like any
 * other (a partial load in flight is LOADING).
 *
 * Spilling
 * --------
 * The ram's dirty budget (ram.h) bounds the DIRTY bytes in memory. A call
 * that would take them over it (a write making a block DIRTY, an unspill)
 * first *spills* the least recently written DIRTY pages of the ram that
 * can go: their content goes to the store's staging area (bigfile.h,
 * stage, with the lock released), the buffer is freed, the page is
 * SPILLED — still an uncommitted change, with its base, its conflict
 * flag and its staged content's token. So writers are throttled to the
 * pace of the staging area. If staging fails (-ENOSPC: the staging area
 * is full), the page stays DIRTY and is not offered again until it is
 * written again; a write that needed the room fails with that error and
 * changes nothing (write(2) gets ENOSPC) — but a write that cannot fail
 * (BF_WRITE_KEEP: the kernel's writeback of a mapped page) and the reload
 * of a spilled page go over the budget instead; writeout and discard
 * still work. A read or a partial write of
 * a SPILLED page *unspills* it (room first, then its content read back,
 * the staged copy dropped); a write of the whole block drops the staged
 * content. Writeout commits a SPILLED block through storeblk_staged (the
 * staged content becomes the block's, without a copy where the store
 * can), after which it is EMPTY; discard, invalidate, truncate and close
 * drop the staged contents of the SPILLED blocks they drop. Pages of a
 * handle whose writeout runs are neither spilled nor unspilled (a read of
 * a SPILLED block waits for the writeout to end). A store without staging
 * keeps every DIRTY block in memory.
 *
 * Memory: a SPILLED block costs its struct bf_page and its pagemap entry,
 * about 120 bytes, and nothing else in the core; the ram holds at most
 * budget + dirty budget + (for each thread spilling, completing or
 * merging a partial block) one block, whatever the size of the
 * uncommitted change, and + the blocks dropped while a read by reference
 * held them (I33), at most BF_BLOCKBUF_HOLDS_MAX_BYTES, until released.
 *
 * Prefetch
 * --------
 * The handle notes whether its reads are sequential (each continues the
 * one before). bf_fileh_readahead offers the blocks after the last read
 * to prefetch; bf_fileh_prefetch loads EMPTY blocks into LOADED as any
 * load does (as of the view; LOADING -> LOADING_INVALIDATED on an
 * invalidation, a truncate or another mount's commit, the result thrown
 * away; one load per block at a time), marked *ahead* until read. It
 * loads nothing while the ahead blocks of the ram would exceed a quarter
 * of its budget, so that what it loads is not evicted before a reader
 * reaches it, nor evicts what a reader is about to use.
 *
 * Size
 * ----
 * The size is part of the uncommitted state. bf_fileh_write() past the end
 * and bf_fileh_truncate() change it; writeout(STORE) commits it; discard
 * restores the committed size. Shrinking drops the blocks past the new end
 * (dirty ones too) and zeroes the tail of the new last block (which becomes
 * DIRTY); blocks past the lowest uncommitted size read as zeros, and the
 * next writeout tells the backend to forget them (bf_file_ops.truncate).
 *
 * Writeout
 * --------
 * bf_fileh_writeout(STORE) runs one backend transaction: begin; truncate if
 * the handle was shrunk; storeblk (storeblk_staged for a SPILLED one) for
 * each dirty block in ascending block order; commit(size). It is atomic: on any failure the transaction is
 * aborted, nothing is committed, every dirty block stays DIRTY and the size
 * stays as it was, so the call can be retried (or the changes discarded).
 *
 * Reads and writes may run during a writeout. A write to a block that the
 * writeout is storing gets a fresh copy of the block (copy on write): the
 * writeout stores the content the block had when the writeout took its
 * snapshot, and the block stays DIRTY afterwards, even with MARKSTORED
 * (a SPILLED block written whole becomes DIRTY so; written in part, it
 * waits for the writeout to end). Without MARKSTORED, the stored DIRTY
 * blocks stay DIRTY; the stored SPILLED blocks become EMPTY either way
 * (their content is the committed one: the store has it). A MARKSTORED
 * writeout alone leaves SPILLED blocks SPILLED.
 * discard, invalidate and a second writeout of the same handle get -EBUSY
 * while a writeout runs; a shrinking truncate waits until it has ended
 * (committed or failed) and then applies.
 *
 * Serials, views and other mounts
 * -------------------------------
 * Several daemons may share one database (docs/COHERENCE.md). Every commit
 * there has a serial. A handle reads a snapshot: its *view* is a serial,
 * and every load asks for the block as of it (bf_file_ops.loadblk's `at`).
 * Every cached page records a serial: a LOADED page the view it was loaded
 * at; a DIRTY page its *base*, the serial of the content the change was
 * made on (the LOADED page's, or the view for a block written without a
 * load). The view moves forward only: when another mount's commit is
 * applied (bf_fileh_apply) and when this handle commits.
 *
 * bf_fileh_apply(S) drops the cached pages of the blocks S changed that are
 * older than S, reloads loads in progress, and marks DIRTY (and SPILLED) blocks older
 * than S *conflicting* — never replacing the local uncommitted view
 * silently. While the daemon then makes the kernel drop its pages of those
 * blocks, it keeps a *launder window* open (until bf_fileh_apply_end):
 * the kernel writes its dirty pages back first, and those WRITEs belong to
 * the old content. A write into a block of the window that is not DIRTY is
 * therefore merged onto the block as of serial S - 1 (loaded as of then,
 * never onto S's content) and the block becomes DIRTY with that base,
 * conflicting.
 *
 * Writeout gives the backend each block's base; the backend's commit
 * refuses (-ESTALE) if any block was committed by someone else after its
 * base (or the size, after size_base): then nothing is committed, every
 * block stays DIRTY and the conflicting ones are marked. BF_WRITEOUT_
 * OVERWRITE commits anyway. discard drops conflicting blocks like others.
 *
 * Locking
 * -------
 * All state of a handle is protected by its ram's lock (ram.h), taken inside
 * every call here; callers hold no lock. Backend operations are called with
 * that lock released. A thread that needs a block another thread is loading
 * (or spilling, unspilling, completing) waits on the ram's condition
 * variable; exactly one load is issued per load of a block, and different
 * blocks load in parallel. discard, invalidate, a shrinking truncate,
 * writeout and close first wait for the I/O of their handle's pages to
 * end (a spill may be made by a call on another handle). A shrinking
 * truncate waits on the handle's condition variable for a writeout to
 * end. Data is copied between the caller's buffer and cached blocks with
 * the lock held, but for a read by reference, whose caller reads the held
 * blocks after (I33). (The rules in full: I1-I7 below.)
 *
 * Files
 * -----
 * fileh.c implements the handle; seek.c its SEEK_DATA/SEEK_HOLE and
 * allocated bytes, with their own backend calls and cache; both share the
 * structures of fileh_internal.h. The API stays in this one header: the
 * seek calls are calls on a handle like the others, made by the same
 * callers.
 *
 * Errors
 * ------
 * Every function that can fail returns a negative errno value; nothing
 * aborts the process on a backend error. Backend errors are passed through
 * (typically -EIO, -ENOSPC, -ENOMEM) and counted in stats.errors.
 *
 * Invariants
 * ----------
 * The rules the core relies on, numbered once; the code cites them
 * (`I7`). Debug builds (configure --enable-debug, BF_DEBUG) assert them
 * where they are relied on: lock ownership (the ram records the thread that
 * holds its lock), every state transition against a table, list
 * membership and counters at every transition. bf_fileh_check() below
 * walks a handle and verifies every one that its state shows (marked
 * [checked]); debug builds run it at every close. Field names are those of
 * fileh_internal.h and ram_internal.h.
 *
 * Locking
 *  I1  The ram's lock protects every field of the ram and of every handle
 *      and page on it (but for the lock and condition variables themselves,
 *      and the buffers of I3, I4); code touching them holds it.
 *  I2  Callers of this API and of ram.h hold no core lock (the lock is not
 *      recursive), and no core lock is held across a backend call
 *      (bf_file_ops): loadblk, loadblk_range, storeblk, begin, truncate,
 *      commit, abort, next_stored, stored_blocks, stage, unstage,
 *      stage_drop and storeblk_staged run with the lock released.
 *  I3  The buffer of a LOADING or LOADING_INVALIDATED page belongs to its
 *      one loader while the lock is released; nobody else touches it until
 *      the page leaves that state under the lock.
 *  I4  The buffer of a page being stored (`storing`) is read by the running
 *      writeout with the lock released and written by nobody: a write to
 *      the page (or a fill of it) first gives it a copy (copy on write),
 *      and the writeout frees the old buffer at its end. The staged
 *      content of a SPILLED page being stored is the writeout's: no unspill
 *      reads or drops it meanwhile.
 *  I5  A block is loaded by one thread at a time: the one that made it
 *      LOADING. Others wait on the ram's load_done and look again after
 *      every wake-up (it says only that some load ended).
 *  I6  Whenever the ram's lock is free, its clean bytes are within its
 *      budget: a call that makes blocks clean (a load, a MARKSTORED
 *      writeout, a write undoing its pin) or lowers the budget evicts least
 *      recently used clean blocks before it releases the lock. [checked]
 *  I7  Lock order: the daemon's inode-table mutex, an inode's fh_lock, the
 *      ram lock, a backend's mutexes. The block-buffer mutex (blockbuf.h)
 *      is a leaf, taken under any of them.
 *
 * Pages
 *  I8  A block is EMPTY exactly when the handle's pagemap has no page for
 *      it. A page mapped at block k has blk == k, belongs to the handle and
 *      has a state other than EMPTY, and a buffer exactly when it is not
 *      SPILLED. [checked]
 *  I9  A page changes state only in page_set_state() (fileh.c), and only
 *      along a transition of the diagram above (a table in fileh.c).
 *  I10 A page is on its ram's LRU exactly when it is LOADED, and on its
 *      ram's dirty LRU exactly when it is DIRTY; the LRU holds only LOADED
 *      pages, the dirty LRU only DIRTY pages, of handles open on that ram.
 *      [checked]
 *  I11 A page is on its handle's dirty list exactly when it is DIRTY or
 *      SPILLED; the list holds only such pages of that handle. [checked]
 *  I12 A handle counts its pages per state: nloaded LOADED, ndirty DIRTY,
 *      nspilled SPILLED, nloading LOADING or LOADING_INVALIDATED; together,
 *      every page of its pagemap. [checked]
 *  I13 A ram counts bytes over its open handles (`handles` of them, on its
 *      handle list): clean_bytes = sum of nloaded, loading_bytes = sum of
 *      nloading, dirty_bytes = sum of ndirty + cow_held (the old buffers a
 *      running writeout still holds after copy on write), spilled_bytes =
 *      sum of nspilled, each times the handle's blksize. [checked]
 *  I14 Only a DIRTY or SPILLED page is `storing`, and only while its
 *      handle's writeout runs; such a page changes no state (but a SPILLED
 *      one written whole, which leaves `storing` first) and is never
 *      dropped. Only a DIRTY page is `wpinned`. [checked]
 *  I15 A LOADING, LOADED or DIRTY page lies below the size (in a block
 *      < ceil(size / blksize)); only a LOADING_INVALIDATED one may lie past
 *      it (a shrink invalidated its load). [checked]
 *  I16 A LOADING page lies below the lowest size since the last commit
 *      (ceil(min_size / blksize), zero_from_blk): blocks past it read as
 *      zeros and are never loaded. [checked]
 *
 * Size and writeout
 *  I17 min_size, the lowest size since the last commit or discard, is at
 *      most the size and the committed size; the size is at most
 *      BF_SIZE_MAX. [checked]
 *  I18 While a writeout of the handle runs, the size does not shrink below
 *      its snapshot's when the writeout commits a size (a shrinking
 *      truncate waits for it to end; another mount's commit leaves a size
 *      the handle changed as it is); so at a writeout's end that commits a
 *      size the size is at least the snapshot's, and the commit makes the
 *      snapshot size the committed and lowest size.
 *  I19 At most one writeout of a handle runs (writeout_running; another,
 *      a discard and an invalidation are refused meanwhile); with none
 *      running no page is `storing` and no old buffer is held (cow_held ==
 *      0). [checked]
 *  I20 The core opens at most one backend transaction per handle, only
 *      inside bf_fileh_writeout, and closes it (commit or abort) before the
 *      writeout ends.
 *  I21 content_gen moves, and the backend's cached count is forgotten
 *      (nstored_known), whenever the backend's committed content may have
 *      changed (a STORE writeout's commit, an invalidation); an answer the
 *      backend gave with the lock released is used only if content_gen did
 *      not move meanwhile.
 *  I22 A fence is one range of blocks (fence_lo <= fence_hi); while it is
 *      up, a write touching it changes nothing: decided under the lock, so
 *      a write either completed before the fence or is dropped. [checked]
 *  I23 A handle is closed only with no other call on it running (so no
 *      load and no writeout: its pages are LOADED, DIRTY or SPILLED; a
 *      call on another handle may be spilling one: close waits for it), a
 *      ram freed only with no handle open on it.
 *
 * Serials
 *  I24 A page's serial is at most the handle's view: the view never moves
 *      back, a load is made as of the view (and stamped with it), a block
 *      written without a load takes the view, and a commit moves the view
 *      to its serial before its stored pages take it. [checked]
 *  I25 Only a DIRTY or SPILLED page is `conflict`; nconflict counts them.
 *      [checked]
 *  I26 The bases the handle keeps are not ahead of its view: size_base and
 *      file_base are at most the view. [checked]
 *  I27 A launder window (lw_open) is open only between bf_fileh_apply (or
 *      bf_fileh_reset) and bf_fileh_apply_end, over the blocks of one
 *      commit (every block, for a reset), with lw_serial its serial (> 0;
 *      a reset's: one past the old view, at most the view), and never for
 *      a commit at or below the view it found; a write into it merges onto
 *      the content as of lw_serial - 1. [checked]
 *
 * Spilling, partial pages, prefetch
 *  I28 Dirty budget: a call that makes a page DIRTY (a write, an unspill)
 *      first spills least recently written DIRTY pages of the ram until
 *      its new DIRTY bytes fit the dirty budget, or no page can be spilled
 *      (each is pinned, stored, in I/O, of a handle writing out, of a
 *      store without staging, or spill_failed: staging refused it and it
 *      was not written since); a spill that fails, or a budget kept
 *      exceeded by refused pages, fails the call — but a BF_WRITE_KEEP
 *      write and an unspill, which go over the budget. So the dirty bytes
 *      exceed the budget only by pages that cannot be spilled.
 *      A write moves the pages it changes to the end of the dirty LRU.
 *  I29 Page I/O: a page with `io` set is DIRTY. SPILL: its buffer is read
 *      by the spiller with the lock released and written by nobody;
 *      UNSPILL: its buffer is being filled from staging (nobody reads it);
 *      FILL: its base is being loaded into a buffer of the filler's. A
 *      SPILL or UNSPILL page is not `storing`. Writers wait for any I/O
 *      of a page, readers for UNSPILL (and for FILL when they need what
 *      it fills); no call but the I/O's own drops the page or changes
 *      its state or buffer meanwhile. nio counts a handle's pages in I/O,
 *      nspilling the ram's SPILL pages. [checked]
 *  I30 A partial page (with a bitmap) is LOADING, LOADED or DIRTY, lies
 *      below the lowest size since the last commit (its missing bytes are
 *      the store's), belongs to a handle whose blocks are larger than a
 *      unit, and — LOADED or DIRTY — misses some unit (a page with every
 *      unit valid has no bitmap). A partial page is completed as of its
 *      serial, and its valid bytes always win over what is loaded.
 *      [checked]
 *  I31 A page is `ahead` (prefetched, not read since) only when LOADING or
 *      LOADED; the ram's ahead_bytes counts them; a prefetch starts a load
 *      only while ahead_bytes + one block is at most a quarter of the
 *      budget. [checked]
 *  I32 A staged content belongs to one SPILLED page (its token), or to
 *      the running writeout that stores it, until it is dropped
 *      (stage_drop) or used up by a commit: a dropped SPILLED page's
 *      content is dropped before the call that dropped the page returns.
 *  I33 A read by reference (bf_fileh_read_refs) holds the buffers of the
 *      LOADED and DIRTY pages it answers from (bf_blockbuf_hold, taken
 *      under the lock while the bytes are valid), and its caller reads
 *      them with the lock released until bf_fileh_refs_put. Whatever
 *      frees such a buffer meanwhile (eviction, invalidate, discard,
 *      spill, truncate, close, a copy on write's end, I4) frees it as
 *      always: the allocator defers the free to the last release, so the
 *      bytes stay mapped, recycled to nobody, and as they were. The
 *      bytes referenced are changed in place meanwhile only by a write
 *      or a shrinking truncate of those very bytes, which the caller
 *      orders with its use of them (the kernel keeps the pages of a
 *      page-cache READ locked until it is answered: a write of them
 *      waits, and a truncate drops them after; an O_DIRECT READ locks
 *      nothing, so the daemon reads for it with a copy). One exception
 *      is left: an O_DIRECT WRITE locks no page while it runs, so a
 *      page-cache READ of the same bytes meanwhile may get a page torn
 *      between old and new bytes (the copy under the lock gave old or
 *      new per block), which the kernel drops once the WRITE ends; Linux
 *      leaves mixing O_DIRECT and buffered I/O of the same bytes
 *      undefined.
 */
#ifndef BIGFILEFS_CORE_FILEH_H
#define BIGFILEFS_CORE_FILEH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "bigfile.h"
#include "ram.h"

typedef struct bf_fileh bf_fileh;

/* Page states (see the diagram above). */
enum bf_page_state {
    BF_PAGE_EMPTY = 0,               /* not cached */
    BF_PAGE_LOADING = 1,             /* loadblk in progress */
    BF_PAGE_LOADING_INVALIDATED = 2, /* loadblk in progress, invalidated meanwhile */
    BF_PAGE_LOADED = 3,              /* cached, same as committed content */
    BF_PAGE_DIRTY = 4,               /* cached, changed, not yet committed */
    BF_PAGE_SPILLED = 5,             /* changed, not committed, content staged (not in memory) */
};

/* Partial loads: a random read loads this much around it (bytes, aligned). */
#define BF_RANGE_LOAD ((uint32_t)64 << 10)
/* The most bf_fileh_readahead offers ahead of the last read, in bytes (and
 * at most a quarter of the ram's budget). */
#define BF_READAHEAD_MAX ((uint64_t)64 << 20)

/* Writeout flags (bf_fileh_writeout). */
enum bf_writeout_flags {
    /* Store dirty blocks (and the size) in one backend transaction. The
     * blocks stay DIRTY unless MARKSTORED is given too. */
    BF_WRITEOUT_STORE = 1 << 0,
    /* Mark dirty blocks clean (LOADED). Alone it calls no backend operation
     * and cannot fail, and it leaves the size state as it is. */
    BF_WRITEOUT_MARKSTORED = 1 << 1,
    /* With STORE: commit even if another commit changed the blocks or the
     * size since their bases (no conflict check: last writer wins). */
    BF_WRITEOUT_OVERWRITE = 1 << 2,
    /* With STORE: per-file conflicts — any commit that changed the file
     * since the handle was last clean is a conflict (the daemon's
     * `-o conflicts=file`), not only one that changed a stored block. */
    BF_WRITEOUT_FILE_CONFLICTS = 1 << 3,
};

/* What a writeout did (bf_fileh_writeout). */
struct bf_writeout_result {
    uint64_t blocks;    /* dirty blocks the call handled */
    uint64_t serial;    /* the commit's serial (STORE that committed), else 0 */
    uint64_t conflicts; /* -ESTALE: blocks found conflicting (the size counts one) */
};

struct bf_fileh_stats {
    uint32_t blksize;
    uint64_t size;           /* current (uncommitted) size, bytes */
    uint64_t committed_size; /* size as last committed, bytes */
    uint64_t loaded_blocks;  /* blocks in LOADED */
    uint64_t dirty_blocks;   /* blocks in DIRTY */
    uint64_t loading_blocks; /* blocks in LOADING or LOADING_INVALIDATED */
    uint64_t loadblk_calls;
    uint64_t storeblk_calls;
    uint64_t bytes_loaded;       /* by successful loadblk calls */
    uint64_t bytes_stored;       /* by successful storeblk calls */
    uint64_t writeouts;          /* successful bf_fileh_writeout calls */
    uint64_t discards;           /* bf_fileh_discard calls */
    uint64_t invalidated_blocks; /* blocks dropped by bf_fileh_invalidate */
    uint64_t reclaimed_blocks;   /* clean blocks dropped by reclaim or the budget */
    uint64_t fenced_writes;      /* writes dropped by a fence */
    uint64_t errors;             /* failed backend calls */
    uint64_t view;               /* the serial the handle's content is as of */
    uint64_t conflict_blocks;    /* DIRTY and SPILLED blocks marked conflicting */
    bool size_conflict;          /* the uncommitted size conflicts */
    uint64_t conflicts;          /* writeouts refused with -ESTALE */
    uint64_t applied;            /* other mounts' commits applied */
    /* The running STORE writeout (0, 0 when none runs, or while it
     * stores nothing but a size): blocks it stores, and of them stored so
     * far — read while the writeout runs, for a progress display. */
    uint64_t writeout_total;
    uint64_t writeout_done;
    /* Added after the fields above (compatible). */
    uint64_t spilled_blocks;    /* blocks in SPILLED */
    uint64_t spills;            /* blocks spilled (staged and dropped from memory) */
    uint64_t unspills;          /* spilled blocks read back */
    uint64_t fills;             /* partial DIRTY blocks completed from their base */
    uint64_t range_loads;       /* loadblk_range calls (bytes_loaded counts their bytes) */
    uint64_t prefetched_blocks; /* blocks loaded by bf_fileh_prefetch */
    uint64_t spill_failures;    /* spills that failed (the staging area full or broken) */
    uint64_t kept_writes;       /* BF_WRITE_KEEP writes that went over the dirty budget */
    uint64_t sent_reads;        /* reads answered by loadblk_send (bytes_loaded counts
                                   their bytes) */
};

/* Open a handle on `file`, caching in `ram`. The handle does not own the
 * file (the caller closes it after bf_fileh_close). Returns 0, -EINVAL (bad
 * blksize or size in *file), -ENOMEM. */
int bf_fileh_open(bf_file *file, bf_ram *ram, bf_fileh **out);

/* Close the handle: uncommitted changes are discarded and every cached block
 * freed. The caller guarantees no other call on fh runs or follows (in
 * particular no writeout). NULL is a no-op. */
void bf_fileh_close(bf_fileh *fh);

/* Read up to `count` bytes at `off`. Blocks load on demand (a random read
 * only the 64 KiB around it, when the store can: "Partial pages"); SPILLED
 * blocks come back from staging; holes and blocks past the lowest
 * uncommitted size read as zeros. Returns the number of bytes read: short
 * only at the end of the file, 0 at or past it. Errors: -EINVAL (off +
 * count overflows), a load's error (nothing is returned then, the blocks
 * stay EMPTY and a later call tries again), an unspill's or the spill's
 * that made room for it (-ENOSPC, -EIO: the block stays SPILLED). */
ssize_t bf_fileh_read(bf_fileh *fh, void *buf, size_t count, uint64_t off);

/* bf_fileh_read, or, when the store can (loadblk_send) and the bytes are
 * one block's committed content with nothing of that block in memory,
 * the read answered through `sink` instead, from the store's file: then
 * *sent is true, buf is untouched, and the return value is the number of
 * bytes sent. Nothing is cached in memory for such a read. sink NULL: as
 * bf_fileh_read. */
ssize_t bf_fileh_read_sink(bf_fileh *fh, void *buf, size_t count, uint64_t off,
                           struct bf_sink *sink, bool *sent);

/* The most blocks whose bytes a read by reference answers from their
 * buffers (bf_fileh_read_refs); a read over more is copied. */
#define BF_READ_REFS_MAX 8u

/* The answer of bf_fileh_read_refs: the bytes read, in order, as `n`
 * pieces, each in a cached block's buffer (held: `held`) or in the
 * caller's buffer. */
struct bf_read_refs {
    struct iovec iov[BF_READ_REFS_MAX];
    unsigned n;
    void *held[BF_READ_REFS_MAX];
    unsigned nheld;
};

/* bf_fileh_read_sink, answering by reference where it can (I33): the
 * bytes of blocks cached in memory (LOADED or DIRTY) stay in their
 * buffers, which are held, and the rest — zeros, or every byte of a read
 * over more than BF_READ_REFS_MAX blocks or when the allocator cannot
 * hold more — is copied into buf (count bytes of room). On success (a
 * count n >= 0) with *sent false, refs->iov[0..refs->n) are the n bytes
 * read; the caller uses them with no core lock held and then calls
 * bf_fileh_refs_put. With *sent true or an error, nothing is held and
 * refs->n is 0. Errors: those of bf_fileh_read. Saves a copy of every
 * cached byte and the time the copy took under the ram's lock. */
ssize_t bf_fileh_read_refs(bf_fileh *fh, void *buf, size_t count, uint64_t off,
                           struct bf_sink *sink, bool *sent, struct bf_read_refs *refs);

/* Drop the holds of a bf_fileh_read_refs answer (its pieces must not be
 * read after); refs is left empty, so a second call is a no-op. Takes no
 * core lock (may free buffers freed meanwhile). */
void bf_fileh_refs_put(struct bf_read_refs *refs);

/* After reads: whether the handle reads sequentially (its last reads each
 * continued the one before), and then the blocks to prefetch next: *blk,
 * *n — those after the last read, up to BF_READAHEAD_MAX and a quarter of
 * the ram's budget ahead of it, not offered before. The caller (the
 * daemon, after a READ) hands them to threads that call bf_fileh_prefetch.
 * False: nothing to prefetch. */
bool bf_fileh_readahead(bf_fileh *fh, uint64_t *blk, uint64_t *n);

/* Load the EMPTY blocks of [blk, blk + n) below the size into LOADED
 * (clean, evictable, marked ahead until read), one after the other, as a
 * read would load them but copying them nowhere ("Prefetch"); cached,
 * loading, dirty and spilled blocks are left alone, and a load
 * invalidated meanwhile is thrown away. Stops when the ram's ahead blocks
 * reach a quarter of its budget. *loaded (if not NULL) gets the number of
 * blocks loaded. Returns 0, -EINVAL (the range overflows), or the first
 * load's error (then the blocks loaded before it stay). */
int bf_fileh_prefetch(bf_fileh *fh, uint64_t blk, uint64_t n, uint64_t *loaded);

/* Write `count` bytes at `off` (read-modify-write into the blocks, which
 * become DIRTY; whole units need no read: "Partial pages"). Extends the
 * size if off + count is past the end. May first spill other dirty blocks
 * to stay within the ram's dirty budget ("Spilling"). Returns count, or
 * -EFBIG (off >= BF_SIZE_MAX), -EINVAL (off + count > BF_SIZE_MAX),
 * -ENOMEM, a load's or an unspill's error, a spill's error (-ENOSPC: the
 * staging area is full) — then no byte was changed. Writes touching
 * fenced blocks are dropped whole and still return count (see
 * bf_fileh_fence). */
ssize_t bf_fileh_write(bf_fileh *fh, const void *buf, size_t count, uint64_t off);

/* bf_fileh_write for a caller that cannot keep the bytes if the write
 * fails — the kernel's writeback of a page changed through a mapping,
 * which FUSE does not mark dirty again when its WRITE fails, so that a
 * failed write would lose the change. With BF_WRITE_KEEP in flags, a
 * write that cannot make room because staging fails (full) goes over the
 * dirty budget instead: the change stays in memory, uncommitted, and
 * kept_writes counts it; *over (if not NULL) is set to whether it did (the
 * caller may warn: memory now grows with the change until a writeout or
 * discard). Other errors are as for bf_fileh_write. */
#define BF_WRITE_KEEP (1u << 0)
ssize_t bf_fileh_write_flags(bf_fileh *fh, const void *buf, size_t count, uint64_t off,
                             unsigned flags, bool *over);

/* Set the size (uncommitted). Shrinking drops blocks past the end and
 * zeroes the tail of the last block (loading it if needed). Shrinking while
 * a writeout of fh runs first waits for the writeout to end — its commit
 * (or abort) done, so the writeout commits its snapshot and the shrink is
 * the next change — and waits again if another writeout has started by
 * then; growing never waits. Returns 0, -EINVAL (size > BF_SIZE_MAX), or a
 * loadblk error (then nothing changed). */
int bf_fileh_truncate(bf_fileh *fh, uint64_t size);

/* The current (uncommitted) size, and the block size. */
uint64_t bf_fileh_size(bf_fileh *fh);
uint32_t bf_fileh_blksize(const bf_fileh *fh);

/* Write out changes (see "Writeout" and "Serials" above). `flags` is a
 * nonzero combination of BF_WRITEOUT_* (OVERWRITE and FILE_CONFLICTS only
 * with STORE); *res (if not NULL) gets what the call did. Returns 0,
 * -EINVAL (no flag or an unknown one), -EBUSY (a writeout of fh runs),
 * -ESTALE (another commit changed what the handle's changes are based on:
 * nothing was committed, every change is still there, the conflicting
 * blocks are marked, res->conflicts counts them), or the failing backend
 * call's error (then nothing was committed and every change is still
 * there). */
int bf_fileh_writeout(bf_fileh *fh, unsigned flags, struct bf_writeout_result *res);

/* Apply another mount's commit c to the handle (see "Serials" above): the
 * cached pages of the blocks it changed (and of every block >= c->trunc)
 * that are older than c->serial are dropped (LOADED) or reloaded
 * (LOADING), DIRTY ones are kept and marked conflicting; the committed
 * size follows c (the current size too, unless the handle changed the
 * size or has dirty blocks past the new size: then the size conflicts);
 * the view moves to c->serial. Opens the launder window over those blocks
 * until bf_fileh_apply_end — one window at a time: the caller applies
 * commits one after the other — unless the commit is late (c->serial <=
 * the view: the handle was opened after it, or its own later commit moved
 * the view): then writes are made on the view, and none opens. A commit
 * the handle already reflects (its pages are as new) changes nothing in
 * them. Works while a writeout runs
 * (its pages are DIRTY: marked, never dropped). Returns 0, -EINVAL (serial
 * 0, or ranges not sorted and disjoint), -EBUSY (a window is open),
 * -ENOMEM (nothing changed). */
int bf_fileh_apply(bf_fileh *fh, const struct bf_commit *c);

/* Apply a reset of `serial`: the mount lost track of the commits up to it
 * (the store trimmed them before the mount read them: the watcher's
 * BF_COMMIT_RESET), so any cached page older than `serial` may be stale.
 * Clean pages older than it are dropped (LOADED) or reloaded (LOADING);
 * DIRTY and SPILLED ones stay as they are, neither dropped nor marked
 * conflicting:
 * their bases still make the store refuse a commit over a newer version.
 * `size` is the file's committed size as of `serial` (the handle follows
 * it as bf_fileh_apply makes it follow a commit's); the view moves to
 * `serial`. Opens a launder window over every block until
 * bf_fileh_apply_end, merging onto the content as of the old view (so the
 * kernel's laundered pages are never rebased silently onto newer content).
 * Returns 0, -EINVAL (serial 0, size > BF_SIZE_MAX), -EBUSY (a window is
 * open). */
int bf_fileh_reset(bf_fileh *fh, uint64_t serial, uint64_t size);

/* Close the launder window of the last bf_fileh_apply or bf_fileh_reset
 * (no-op if none). */
void bf_fileh_apply_end(bf_fileh *fh);

/* The blocks marked conflicting (DIRTY or SPILLED blocks another mount's
 * commit changed after their base: bf_fileh_apply, a refused writeout) at or after
 * block `from`, as at most `max` sorted, disjoint ranges in out[]. Returns
 * the number of ranges; *next (if not NULL) gets the block a further call
 * starts from, or UINT64_MAX when none is left. A size conflict is not a
 * block: stats.size_conflict tells it. Costs time in the number of cached
 * blocks at or after `from`. */
size_t bf_fileh_conflicts(bf_fileh *fh, uint64_t from, struct bf_blkrange *out, size_t max,
                          uint64_t *next);

/* The handle's view (the serial its content is as of). */
uint64_t bf_fileh_view(bf_fileh *fh);

/* Drop every uncommitted change: dirty and spilled blocks (conflicting ones
 * too) become EMPTY (the next read sees the committed content as of the
 * view; the staged contents are dropped), the size becomes the committed
 * size, and conflicts are forgotten. *nblocks (if not NULL) gets the
 * number of dirty and spilled blocks dropped. Returns 0 or -EBUSY (a
 * writeout of fh runs). */
int bf_fileh_discard(bf_fileh *fh, uint64_t *nblocks);

/* Forget blocks [blk, blk + count): LOADED, DIRTY and SPILLED ones become
 * EMPTY (dirty changes are lost), LOADING ones become LOADING_INVALIDATED so that
 * their load's result is thrown away and loaded again. Blocks past the end
 * are fine (nothing to do). Returns 0, -EINVAL (count == 0 or the range
 * overflows), -EBUSY (a writeout of fh runs). */
int bf_fileh_invalidate(bf_fileh *fh, uint64_t blk, uint64_t count);

/* Drop every clean (LOADED) block of fh, never a dirty one. Returns the
 * number of bytes freed; *nblocks (if not NULL) gets the block count. */
size_t bf_fileh_reclaim(bf_fileh *fh, uint64_t *nblocks);

/* Change the budget of clean blocks of `ram` (ram.h); drops the least
 * recently used clean blocks of its handles at once if over it. (Here, not
 * in ram.h: dropping a block is the pages' business; the ram only keeps
 * the LRU and the counters, ram_internal.h.) */
void bf_ram_set_budget(bf_ram *ram, size_t budget);

/* Drop least recently used clean blocks of any handle on `ram` until at
 * least `bytes` were freed or no clean block is left. Never drops a dirty
 * block or one being loaded. Returns the number of bytes freed. */
size_t bf_ram_reclaim(bf_ram *ram, size_t bytes);

/* Fence blocks [blk, blk + count): until bf_fileh_unfence(), writes that
 * touch any fenced block are dropped (they return as if done, and count in
 * stats.fenced_writes). The check is made under the handle's lock, so a
 * write either completed before the fence went up or is dropped. The daemon
 * uses it while the kernel "launders" pages it is told to forget. Returns
 * 0, -EINVAL (count == 0 or overflow), -EBUSY (a fence is already up). */
int bf_fileh_fence(bf_fileh *fh, uint64_t blk, uint64_t count);
void bf_fileh_unfence(bf_fileh *fh);

/* lseek(2)'s SEEK_DATA and SEEK_HOLE over the handle's current
 * (uncommitted) content, at block granularity. A block is data when it is
 * DIRTY or SPILLED in the handle, or stored by the backend (next_stored) and below
 * the lowest size since the last commit, or LOADED past that size (left
 * by a MARKSTORED-only writeout). A LOADED block below it is data only if
 * stored: a cached hole is still a hole (else readahead past each data
 * block would turn the holes a reader skips into data). Every other block, and
 * everything at or past the current size, is a hole. A block of zeros may
 * be reported as data (POSIX allows it); data is never reported as a hole.
 * `whence` is SEEK_DATA or SEEK_HOLE (<unistd.h> with _GNU_SOURCE).
 * SEEK_DATA sets *result to the first data offset >= off; SEEK_HOLE to the
 * first hole offset >= off, the size if the data runs to the end. A
 * result inside off's block is off itself.
 * Without next_stored in the backend, every block below that lowest size
 * counts as data. Backend calls are made with the lock released; if the
 * backend's content changed meanwhile (a writeout's commit, an
 * invalidation) the call asks again, and after a few such rounds answers
 * "data". SEEK_HOLE asks the backend once per stored block of the run it
 * crosses. Returns 0, -ENXIO (off >= size; SEEK_DATA: no data at or after
 * off), -EINVAL (bad whence), or the backend's error (counted in
 * stats.errors). */
int bf_fileh_seek_data(bf_fileh *fh, uint64_t off, int whence, uint64_t *result);

/* Bytes the file occupies, for st_blocks: (blocks the backend stores,
 * counting at most those below the lowest size since the last commit) +
 * DIRTY and SPILLED blocks, at most the blocks of the current size, times blksize. A
 * dirty block that is stored too counts twice until the next writeout
 * (bounded by the size): it is an estimate, cheap to get. The backend's
 * count (stored_blocks, which may take time in the number of blocks) is
 * asked with the lock released and cached in the handle until a writeout
 * commits or an invalidation; without stored_blocks every block counts
 * as stored. Returns 0 or the backend's error (counted in stats.errors). */
int bf_fileh_allocated_bytes(bf_fileh *fh, uint64_t *bytes);

/* Verify the invariants above that the state shows (those marked
 * [checked]): walk the handle's pages and dirty list, its ram's LRU, and
 * the counters of every handle on the ram. Takes the ram lock, so it may be
 * called at any time from any thread; costs time in the number of cached
 * blocks of the handle and of clean blocks of the ram. Changes nothing.
 * Returns 0, or -EUCLEAN after printing the first broken invariant to
 * stderr ("bigfilefs: bf_fileh_check: I12 broken: ..."). The core's tests
 * call it at their end; debug builds assert it at every bf_fileh_close. */
int bf_fileh_check(bf_fileh *fh);

/* True when the handle has uncommitted changes (a dirty block, a size
 * other than the committed one, or a shrink since the last commit: shrinking
 * and growing back to the committed size zeroes the blocks past the lowest
 * size, which is a change). */
bool bf_fileh_isdirty(bf_fileh *fh);

/* Fill *st with a consistent snapshot of the handle's state and counters. */
void bf_fileh_stat(bf_fileh *fh, struct bf_fileh_stats *st);

/* State of block blk (for tests and diagnostics). */
enum bf_page_state bf_fileh_page_state(bf_fileh *fh, uint64_t blk);

/* Bytes of memory the handle's pagemap uses (not counting the pages and
 * their blocks), for tests and diagnostics: it follows the number of cached
 * blocks, not the span of the file. */
size_t bf_fileh_pagemap_memory(bf_fileh *fh);

#endif /* BIGFILEFS_CORE_FILEH_H */
