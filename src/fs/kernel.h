/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — every dealing of the daemon with the kernel.
 *
 * The daemon is a FUSE server: the kernel sends it requests, and it asks
 * the kernel for things in return — write back a file's dirty pages
 * (WRITEOUT), forget pages and attributes (DISCARD, INVALIDATE, RECLAIM,
 * SETBLKSIZE, another mount's commit), forget directory entries (another
 * mount's create, unlink, rename), tune the mount's backing device,
 * unmount. Those requests
 * can wait for the daemon's own request threads, so a careless one
 * deadlocks the mount. They are all here, under the rules below, so that
 * there is one place to check them.
 *
 * What the kernel does (fs/fuse/file.c, dev.c, mm/truncate.c):
 *  K1. A READ (readahead, a fault, read(2)) keeps its page-cache pages
 *      locked until the daemon answers it.
 *  K2. Writeback (fsync, msync, munmap, memory pressure) sends WRITEs and
 *      waits for their answers; fsync(2) then sends FSYNC, close(2) FLUSH.
 *      Each needs a free request thread of the daemon.
 *  K3. A FUSE_NOTIFY_INVAL_INODE notification runs inside the daemon's
 *      write(2) to /dev/fuse: the kernel takes the file's attributes and,
 *      for a page range, locks each page — waiting for a READ in flight on
 *      it (K1) —, unmaps it from every mapping, "launders" a dirty page as
 *      a WRITE and waits for its answer (fuse_launder_folio), and drops
 *      it. Its result says only whether the kernel found the connection
 *      and the inode (-ENOENT: nothing cached, -ENOTCONN: the connection is
 *      gone); pages it could not drop are not reported.
 *  K4. An IOCTL request holds no lock of the file while the daemon works on
 *      it; the kernel copies the argument in before sending it (for _IOW
 *      and _IOWR encodings) and out after the answer. Any thread may answer
 *      a request (libfuse's low-level API).
 *  K5. umount(2) of a mount on which any file is open — even an O_PATH
 *      descriptor of its root — fails with EBUSY, so the daemon keeps no
 *      descriptor in its own mount while it serves.
 *
 * The rules that follow (D1–D5 are relied on by name in ioctl.c, workq.h,
 * notify.h and main.c):
 *  D1. A request thread (libfuse's loop, at most max_threads of them) never
 *      waits for anything that needs another request thread: it calls none
 *      of the functions below marked "waits for the kernel", waits for no
 *      worker, and takes no lock that such a waiter holds for writing. A
 *      request that must wait for the kernel (the long ioctls) is queued
 *      (workq.h) and answered later from a worker thread. A request thread
 *      may wait for a worker's core call (a shrinking truncate waits for a
 *      writeout's commit, fileh.h): that part of a worker's job waits for
 *      the backend only, never for the kernel.
 *      One bounded exception, for tests only: the test ioctl's WAIT_HELD
 *      (test_inject.h, served with `-o test_inject` on a mem: database)
 *      waits up to 60 s on its request thread for backend calls to be held;
 *      it can slow such a mount, never deadlock it.
 *  D2. Only threads that declared bf_kernel_thread_may_wait() — the
 *      workers, the notifier, and the backend's watcher thread while it
 *      runs the daemon's listener (listen.h) — call the functions that wait
 *      for the kernel (asserted in debug builds). They hold no daemon mutex
 *      while they wait (the inode table's, the core's ram lock); they may
 *      hold an inode's fh_lock for reading, which READ and WRITE take for
 *      reading too (a reader-preferring lock: they never queue behind a
 *      writer). Nothing a request thread does waits for the watcher: a
 *      catch-up (bf_db_sync: SYNC, a writeout's end) runs on a worker.
 *  D3. Notifications are sent by the notifier thread only (notify.h), one
 *      at a time; a worker hands one over and waits for it (bf_kernel_inval).
 *  D4. No descriptor in the mount is kept (K5): WRITEOUT reaches a file's
 *      pages through the caller's own open file, found by the file's
 *      device and inode number; the unmount finds the mount by its mount id.
 *      Paths are never trusted: after `mount --move`, `umount -l` or a
 *      mount on top they lead elsewhere.
 *  D5. A notification that fails is reported: bf_kernel_inval() logs it
 *      and returns -EIO; the ioctl that needed it fails with EIO (after the
 *      daemon's side of it was done, see ioctl_bigfile(2)), and repeating
 *      the ioctl repeats the notification.
 *
 * Thread safety: bf_kernel_attach/start/unmount/abort/free from the main
 * thread, outside the session loop; bf_kernel_tune_bdi_later from any
 * thread (it queues); the others from the threads D2 names.
 */
#ifndef BIGFILEFS_FS_KERNEL_H
#define BIGFILEFS_FS_KERNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <fuse_lowlevel.h>

typedef struct bf_kernel bf_kernel;

/* Right after fuse_session_mount() on `mountpoint`, before the session loop
 * (so that no request is needed): record the mount's device and mount id
 * (statx with AT_STATX_DONT_SYNC, which sends no request), and keep an
 * O_PATH descriptor of its root until the bdi is tuned. Returns 0, -ENOMEM,
 * or the error of statx/open (then nothing is kept). */
int bf_kernel_attach(struct fuse_session *se, const char *mountpoint, bf_kernel **out);

/* Start the notifier thread (after fuse_daemonize: a fork keeps only the
 * calling thread). Returns 0 or -errno. */
int bf_kernel_start(bf_kernel *k);

/* Mark the calling thread as one that may wait for the kernel (D2): the
 * workers and the notifier call it when they start. */
void bf_kernel_thread_may_wait(void);

/* Queue the bdi tuning on the notifier (called from the INIT handler): once
 * the kernel is initialized (a GETATTR through the kept root descriptor
 * waits for it), set /sys/class/bdi/MAJ:MIN/read_ahead_kb to
 * `read_ahead_kb` (above 128 KiB; INIT sets a smaller window itself) and
 * max_ratio to `max_ratio`, then close the descriptor. The INIT reply can
 * only lower a FUSE mount's readahead, and the kernel may apply it after
 * this write: it must ask for the same window. strictlimit caps a FUSE
 * mount's dirty pages at a small share of the dirty threshold. A failure
 * (not root, no sysfs) is logged and otherwise ignored. */
void bf_kernel_tune_bdi_later(bf_kernel *k, unsigned read_ahead_kb, unsigned max_ratio);

/* Waits for the kernel. Make the kernel write back every dirty page of
 * inode ino — whichever process dirtied it, msync'ed or not — as WRITEs,
 * and wait for them: fsync() through a duplicate (pidfd_getfd) of the open
 * file the caller (thread `caller`, the IOCTL's sender) holds on the inode,
 * so the cached pages stay; if that file cannot be reached (no privilege
 * over the caller, or it was closed), through a kernel invalidation of the
 * whole file, which launders the dirty pages and drops the cached ones
 * (K3). Returns 0, or -errno: a WRITE the daemon failed (e.g. -EIO), or
 * -EIO when neither route worked (logged) — never 0 with pages left out. */
int bf_kernel_writeback(bf_kernel *k, pid_t caller, fuse_ino_t ino);

/* Waits for the kernel (through the notifier, D3). Make the kernel forget
 * the cached pages of inode ino in [off, off + len) (len 0: to the end; off
 * < 0: the attributes only) and its attributes; dirty pages are first
 * written back to the daemon (as WRITEs). Returns 0 (also when the kernel
 * caches nothing of the inode), or -EIO when the notification failed
 * (logged, D5; the connection is going away, or the notifier stopped). */
int bf_kernel_inval(bf_kernel *k, fuse_ino_t ino, off_t off, off_t len);

/* Waits for the kernel, as bf_kernel_inval: forget the cached pages of
 * blocks [blk, blk + count) of inode ino, whose block size is blksize
 * (count UINT64_MAX: to the end), and its attributes. Blocks beyond any
 * offset the kernel can cache are nothing to forget (0). */
int bf_kernel_inval_blocks(bf_kernel *k, fuse_ino_t ino, uint32_t blksize, uint64_t blk,
                           uint64_t count);

/* Waits for the kernel (through the notifier, D3). Make the kernel forget
 * the directory entry `name` of directory `parent` — a name another mount
 * created, removed or renamed: the entry timeout is long, so without this
 * the kernel would go on finding the old file under it (or not find the
 * new one). The kernel locks the directory for it (so it waits for a
 * CREATE, UNLINK or RENAME in flight there). Returns 0 (also when the
 * kernel has no such entry), or -EIO when the notification failed (logged,
 * D5). */
int bf_kernel_inval_entry(bf_kernel *k, fuse_ino_t parent, const char *name);

/* Whether the len bytes at addr in the memory of thread `pid` (an IOCTL's
 * caller) can be written, found by reading them and writing the same bytes
 * back (process_vm_readv/writev). Returns 0 (writable), -EFAULT (not
 * readable or not writable: the kernel's copy-out of an answer would
 * fail), or another -errno when it cannot tell (-EPERM: no privilege over
 * the caller; -ESRCH: the caller is gone). May fault in the caller's pages,
 * so it waits for the kernel (a page of a bigfilefs mapping is a READ). */
int bf_kernel_probe_user(pid_t pid, void *addr, size_t len);

/* Whether READ answers of up to len bytes can be spliced from a file
 * (libfuse's fuse_reply_data passes them through a pipe that must hold
 * the answer and its header: len + 3 pages of its own reckoning): this
 * process makes such a pipe — it may when len fits
 * /proc/sys/fs/pipe-max-size (1 MiB by default) or it has
 * CAP_SYS_RESOURCE. Otherwise libfuse would copy every answer through a
 * new buffer, slower than the daemon's own copy. */
bool bf_kernel_can_splice_reads(size_t len);

/* After the session loop ended: detach (MNT_DETACH) this mount — found by
 * its mount id in /proc/self/mountinfo, wherever it was moved, and reached
 * through a descriptor whose mount id is checked, so that a filesystem
 * mounted at its old path or on top of it is never touched. Returns 0
 * (unmounted, or no longer mounted in this namespace), -EBUSY (another
 * filesystem is mounted on top of it: left alone, logged), -EPERM (no
 * privilege: a non-root daemon; its caller may use fusermount3), or another
 * -errno (logged). */
int bf_kernel_unmount(bf_kernel *k);

/* Whether the path it was mounted on still leads to this mount (the
 * topmost mount there has its mount id): for the non-root fallback of
 * main.c, which unmounts by path. */
bool bf_kernel_at_mountpoint(bf_kernel *k);

/* After the workers stopped: end the connection by closing the session's
 * /dev/fuse descriptor (requests still waiting fail; a mount that is still
 * there stops answering), leaving in its place a descriptor that polls
 * POLLERR. libfuse's fuse_session_unmount() then only frees what it holds:
 * it unmounts the path the daemon was started with unless the device says
 * the connection is gone, and that path may now hold another filesystem
 * (D4). */
void bf_kernel_end_connection(struct fuse_session *se);

/* Abort the FUSE connection (/sys/fs/fuse/connections/N/abort): every
 * request in flight fails, so that threads still waiting for the kernel
 * after the loop ended (a drain that timed out) return. Returns 0 or
 * -errno (logged). */
int bf_kernel_abort(bf_kernel *k);

/* Stop the notifier (after the workers stopped: they use it), close what
 * is left and free k. NULL is a no-op. */
void bf_kernel_free(bf_kernel *k);

#endif /* BIGFILEFS_FS_KERNEL_H */
