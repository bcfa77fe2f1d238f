/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — point-in-time views: the @SERIAL directories.
 *
 * MOUNT/@SERIAL is the database as it was right after commit SERIAL
 * (backend.h, "point-in-time views"), read-only: its entries are the files
 * that had a name then, with their size, block size, mode, owner and mtime
 * as at SERIAL, and their content as at SERIAL. SERIAL is canonical decimal
 * (no sign, no leading zero, not 0). The directory appears on LOOKUP in the
 * root only — never in READDIR — and only while SERIAL is in the kept
 * history (from .. current, bf_db_history): a serial outside it is an
 * ENOENT error, never a negative entry (a serial past current becomes
 * valid later). With `-o at=SERIAL` the root itself is the directory of
 * SERIAL (bf_views_new `at`), pinned for the mount's life.
 *
 * Inodes: a second inode space, apart from the inode table's (inode.h:
 * file id + 1): every view inode number has BF_VIEW_INO_BIT set and is
 * allocated here, one per (serial, file) — (serial, 0) is the directory
 * @serial — and stays the same while the kernel knows it (LOOKUP ..
 * FORGET), while it is open, or while a request holds it.
 *
 * Immutable: a view never changes, so its entries and attributes are given
 * to the kernel with a long timeout (BF_VIEW_TIMEOUT) and its files opened
 * with keep_cache; the listener (listen.h) never sees a view inode. Only the
 * @SERIAL entry of the root has entry timeout 0: the kernel asks again at
 * every path walk, so a serial the housekeeping collected disappears.
 * Reads go through the same path as the current files' (ops.c: the core's
 * bf_fileh_read and the prefetcher) on a read-only handle of the view's
 * bf_file (bf_view_file_open).
 *
 * Pins: while a view file or directory is open (OPEN/OPENDIR .. RELEASE,
 * or a request or a prefetch job holds it), its inode holds a bf_view of
 * its serial (the backend pins the serial once per session: backend.h), so
 * no gc takes its data away — a mapped file keeps its open file, so its
 * pages stay too. An OPEN or OPENDIR that finds the serial collected is
 * ENOENT. LOOKUPs in a directory nobody has open use a bf_view for the
 * call only.
 *
 * Read-only: what would change a view is refused by ops.c, xattr.c and
 * ioctl.c with EROFS (bigfilefs(8), POINT-IN-TIME VIEWS).
 *
 * Locking: one mutex protects the table — the hashes, every view inode's
 * counters and its view/file/handle pointers. It is never held across a
 * backend or core call (opening and closing views, files and handles
 * happen outside it). A view inode's handle, once set, stays until its
 * inode is neither open nor held (nopen + refs = 0): whoever holds it
 * (bf_views_get .. bf_views_put, or an open file's READ) uses the handle
 * without the mutex.
 */
#ifndef BIGFILEFS_FS_VIEWS_H
#define BIGFILEFS_FS_VIEWS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <fuse_lowlevel.h>

#include "backends/backend.h"
#include "core/fileh.h"
#include "core/ram.h"

/* The bit of every view inode number (the inode table's are file id + 1). */
#define BF_VIEW_INO_BIT ((fuse_ino_t)1 << 62)

/* Entry and attribute timeout of view inodes: a view never changes. */
#define BF_VIEW_TIMEOUT 3600.0

typedef struct bf_views bf_views;
typedef struct bf_vnode bf_vnode;

/* Whether ino is a view inode. */
static inline bool bf_ino_is_view(fuse_ino_t ino)
{
    return (ino & BF_VIEW_INO_BIT) != 0;
}

/* The serial a root entry name stands for: "@SERIAL", canonical decimal;
 * 0 for any other name. */
uint64_t bf_views_name_serial(const char *name);

/* A new, empty table over db (caching in ram); directories are owned by
 * uid:gid and dated `time`. at: 0, or the serial of an `-o at=` mount,
 * whose view is opened (pinned) now: -ENOENT when it is not in the kept
 * history (*h then says the history, when kept), -EOPNOTSUPP when the
 * database keeps none. Returns 0, -ENOMEM or the backend's error. */
int bf_views_new(bf_db *db, bf_ram *ram, uid_t uid, gid_t gid, const struct timespec *time,
                 uint64_t at, struct bf_history *h, bf_views **out);

/* Close every view handle and view (at unmount: no request runs) and
 * free the table. NULL: no-op. */
void bf_views_free(bf_views *vt);

/* The serial of an `-o at=` mount, or 0. */
uint64_t bf_views_at(const bf_views *vt);

/* ---- FUSE requests on view inodes (each replies to req) --------------- */

/* LOOKUP of "@SERIAL" in the root (serial from bf_views_name_serial). */
void bf_views_lookup_dir(bf_views *vt, fuse_req_t req, uint64_t serial);
/* LOOKUP of name in a view directory (parent: a view inode, or the root
 * of an `-o at=` mount). */
void bf_views_lookup(bf_views *vt, fuse_req_t req, fuse_ino_t parent, const char *name);
/* FORGET. */
void bf_views_forget(bf_views *vt, fuse_ino_t ino, uint64_t nlookup);
/* GETATTR (ino a view inode, or the root of an `-o at=` mount). */
void bf_views_getattr(bf_views *vt, fuse_req_t req, fuse_ino_t ino);
/* OPEN of a view file: EROFS for writing, EISDIR for a directory, ENOENT
 * when the serial was collected. fi->fh gets the inode (bf_views_fh). */
void bf_views_open(bf_views *vt, fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
/* RELEASE of a view file. */
void bf_views_release(bf_views *vt, fuse_req_t req, struct fuse_file_info *fi);
/* OPENDIR, READDIR, RELEASEDIR of a view directory (or of the root of an
 * `-o at=` mount). */
void bf_views_opendir(bf_views *vt, fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void bf_views_readdir(bf_views *vt, fuse_req_t req, size_t size, off_t off,
                      struct fuse_file_info *fi);
void bf_views_releasedir(bf_views *vt, fuse_req_t req, struct fuse_file_info *fi);

/* ---- view inodes for the other parts of the daemon --------------------- */

/* The view inode of an open view file's fi->fh (bf_views_open). */
static inline bf_vnode *bf_views_fh(uint64_t fh)
{
    return (bf_vnode *)(uintptr_t)fh;
}

/* The view inode ino, held (bf_views_put), or NULL if the table has none. */
bf_vnode *bf_views_get(bf_views *vt, fuse_ino_t ino);
/* Hold vn once more (the caller holds it, or has it open). */
void bf_views_hold(bf_views *vt, bf_vnode *vn);
/* Drop a hold; the last of an inode nobody has open closes its handle
 * and its view (the pin). */
void bf_views_put(bf_views *vt, bf_vnode *vn);

/* The handle of a view file that is open or held and was opened (NULL
 * for a directory, or a file never opened). Immutable until the last
 * hold and open go. */
bf_fileh *bf_vnode_fh(bf_views *vt, bf_vnode *vn);
/* The view inode's number, file id (0: a directory) and serial. */
fuse_ino_t bf_vnode_ino(const bf_vnode *vn);
uint64_t bf_vnode_id(const bf_vnode *vn);
uint64_t bf_vnode_serial(const bf_vnode *vn);
/* The file's name at its serial ("" for a directory). */
const char *bf_vnode_name(const bf_vnode *vn);

#endif /* BIGFILEFS_FS_VIEWS_H */
