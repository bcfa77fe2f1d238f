/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — the listener: other mounts' commits, applied here.
 *
 * Several daemons may share one database (-o shared; docs/COHERENCE.md).
 * The backend's watcher thread (backend.h, bf_db_watch) delivers every
 * commit of the database to the listener, in serial order, one at a time;
 * the listener makes this mount's caches — the daemon's handles and the
 * kernel's page cache, attributes and directory entries — follow it
 * (COHERENCE.md section 6):
 *
 *   WRITE      the content or size of a file: if the daemon has an inode
 *              for it, (1) bf_fileh_apply on its handle, if open (older
 *              clean blocks go, changed ones are marked conflicting, the
 *              launder window opens); (2) the kernel forgets the changed
 *              blocks' pages, every page from a truncate's first dropped
 *              block on, and every page from the lower of the old and new
 *              sizes on — whether or not the daemon has a handle: the
 *              kernel's page cache holds more than the daemon; (3) the
 *              window closes; (4) the inode's metadata is read again and
 *              the kernel's attributes were forgotten with the pages.
 *   CREATE, UNLINK, RENAME
 *              the kernel forgets the root's entries of every name
 *              involved (the entry timeout is long); the inode table's
 *              names follow, by file: an unlinked file's inode is marked
 *              unlinked (its open handle stays readable), a renamed one
 *              takes its new name; the attributes of an unlinked file are
 *              forgotten (its link count).
 *   SETATTR, SETBLKSIZE
 *              metadata read again, attributes forgotten.
 *   RESET      the session lost track of commits trimmed from the log:
 *              for every inode, bf_fileh_reset on its handle (clean blocks
 *              older than the reset go, changes stay), every page and the
 *              attributes forgotten, its entry in the root forgotten, its
 *              name and metadata read again.
 * This mount's own commits (rec->own) were applied when they were made:
 * only the inode's metadata is read again (a writeout's mtime).
 *
 * Threads and locks (kernel.h, D1-D5): the listener runs on the watcher
 * thread, which it declares may wait for the kernel; it holds no daemon
 * mutex while it waits; it holds an inode's fh_lock for reading across
 * the kernel invalidation only while the inode has a handle (so that the
 * handle stays open for the window; a READ or WRITE never needs fh_lock
 * for writing then). The launder window of a handle is open only around
 * the kernel invalidation of one commit. Nothing a request thread does
 * waits for the listener; a worker may (bf_db_sync).
 *
 * Stopping (main.c): bf_listener_quiesce makes later records skip every
 * dealing with the kernel and the handles, and waits, bounded, for the
 * record being applied; bf_db_unwatch then stops the watcher, before the
 * handles are closed.
 */
#ifndef BIGFILEFS_FS_LISTEN_H
#define BIGFILEFS_FS_LISTEN_H

#include <stdbool.h>

#include "backends/backend.h"

struct bf_fs;
typedef struct bf_listener bf_listener;

/* A listener for fs (whose db, itable and kernel it uses). Returns 0 or
 * -ENOMEM. */
int bf_listener_new(struct bf_fs *fs, bf_listener **out);

/* Start delivering: bf_db_watch(fs->db). After daemonizing (the watcher is
 * a thread) and after the notifier started. Returns 0 or bf_db_watch's
 * error. */
int bf_listener_start(bf_listener *l);

/* From now on every record is skipped (nothing applied, nothing sent to
 * the kernel); wait at most timeout_ms for the one being applied. Returns
 * true when none is (then the caller may stop the watcher at once), false
 * when it is still waiting for the kernel (the caller aborts the
 * connection first). */
bool bf_listener_quiesce(bf_listener *l, unsigned timeout_ms);

/* Free l (after bf_db_unwatch or bf_db_close stopped the watcher). NULL is
 * a no-op. */
void bf_listener_free(bf_listener *l);

/* The listener's work for one record, for bf_db_watch (exposed for the
 * daemon's unit tests; arg is the bf_listener). */
void bf_listener_commit(void *arg, const struct bf_commit_rec *rec);

#endif /* BIGFILEFS_FS_LISTEN_H */
