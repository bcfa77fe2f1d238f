/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — every dealing of the daemon with the kernel (see
 * kernel.h for the rules D1–D5 this file keeps). */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fs/kernel.h"
#include "fs/log.h"
#include "fs/notify.h"
#include "util/debug.h"

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL /* Linux 6.9: a pidfd for a thread, not only a leader */
#endif

struct bf_kernel {
    struct fuse_session *se;
    bf_notifier *notifier;         /* started by bf_kernel_start */
    char *mountpoint;              /* as mounted (absolute), for messages and the fallback */
    unsigned dev_major, dev_minor; /* the mount's device */
    uint64_t mnt_id;               /* its mount id: mountinfo's first field */
};

/* Set in the threads that may wait for the kernel (D2). */
static __thread bool may_wait;

void bf_kernel_thread_may_wait(void)
{
    may_wait = true;
}

int bf_kernel_attach(struct fuse_session *se, const char *mountpoint, bf_kernel **out)
{
    struct statx sx;
    bf_kernel *k;

    /* AT_STATX_DONT_SYNC: the attributes the kernel has, no GETATTR (no
     * request thread runs yet, and the kernel holds requests until INIT). */
    if (statx(AT_FDCWD, mountpoint, AT_STATX_DONT_SYNC, STATX_INO | STATX_MNT_ID, &sx) < 0)
        return -errno;
    if (!(sx.stx_mask & STATX_MNT_ID))
        return -ENOSYS; /* before Linux 5.8 */
    k = calloc(1, sizeof(*k));
    if (!k || !(k->mountpoint = strdup(mountpoint))) {
        free(k);
        return -ENOMEM;
    }
    k->se = se;
    k->dev_major = sx.stx_dev_major;
    k->dev_minor = sx.stx_dev_minor;
    k->mnt_id = sx.stx_mnt_id;
    bf_debug("mounted on %s: device %u:%u, mount id %llu", mountpoint, k->dev_major, k->dev_minor,
             (unsigned long long)k->mnt_id);
    *out = k;
    return 0;
}

int bf_kernel_start(bf_kernel *k)
{
    return bf_notifier_start(k->se, &k->notifier);
}

void bf_kernel_free(bf_kernel *k)
{
    if (!k)
        return;
    bf_notifier_stop(k->notifier);
    free(k->mountpoint);
    free(k);
}

/* Whether the statx result sx is inode ino of this mount. */
static bool same_inode(const bf_kernel *k, const struct statx *sx, fuse_ino_t ino)
{
    return sx->stx_dev_major == k->dev_major && sx->stx_dev_minor == k->dev_minor &&
           sx->stx_ino == (uint64_t)ino;
}

/* ---- bdi tuning ---------------------------------------------------------- */

struct bdi_job {
    bf_kernel *k;
    unsigned read_ahead_kb, max_ratio;
};

/* Write `value` to /sys/class/bdi/MAJ:MIN/knob. Returns 0 or -errno. */
static int bdi_write(const bf_kernel *k, const char *knob, unsigned value)
{
    char path[128], buf[32];
    int fd, len, r = 0;

    snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/%s", k->dev_major, k->dev_minor, knob);
    len = snprintf(buf, sizeof(buf), "%u\n", value);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (write(fd, buf, (size_t)len) != len)
        r = -errno;
    close(fd);
    return r;
}

static void tune_bdi(const struct bdi_job *j)
{
    const bf_kernel *k = j->k;
    struct statx sx;
    int r;

    /* After INIT: a GETATTR of the root (FORCE_SYNC) is held until the
     * kernel is initialized — not always until it has applied the INIT
     * reply's readahead, which may come after this write; the reply asks
     * for the same window (ops.c), so either order ends at it. The path
     * is checked by the mount id (D4): moved already, the mount is left at
     * the kernel's defaults. */
    if (statx(AT_FDCWD, k->mountpoint, AT_STATX_FORCE_SYNC, STATX_MNT_ID, &sx) < 0 ||
        sx.stx_mnt_id != k->mnt_id) {
        bf_warn("cannot reach the mount at %s to tune its readahead (moved?)", k->mountpoint);
        return;
    }
    /* Up to the kernel's 128 KiB, INIT has set it already (ops.c). */
    r = j->read_ahead_kb > 128 ? bdi_write(k, "read_ahead_kb", j->read_ahead_kb) : 0;
    if (r < 0) {
        bf_warn("cannot set read_ahead_kb of bdi %u:%u to %u: %s (the readahead stays at the "
                "kernel's 128 KiB)",
                k->dev_major, k->dev_minor, j->read_ahead_kb, strerror(-r));
        return;
    }
    r = bdi_write(k, "max_ratio", j->max_ratio);
    if (r < 0) {
        bf_warn("cannot set max_ratio of bdi %u:%u to %u: %s (writers are throttled early)",
                k->dev_major, k->dev_minor, j->max_ratio, strerror(-r));
        return;
    }
    bf_debug("bdi %u:%u: read_ahead_kb=%u max_ratio=%u", k->dev_major, k->dev_minor,
             j->read_ahead_kb, j->max_ratio);
}

/* On the notifier (D2: it may wait for the kernel). */
static int tune_bdi_job(struct fuse_session *se, void *arg)
{
    (void)se;
    tune_bdi(arg);
    free(arg);
    return 0;
}

void bf_kernel_tune_bdi_later(bf_kernel *k, unsigned read_ahead_kb, unsigned max_ratio)
{
    struct bdi_job *j = malloc(sizeof(*j));

    if (j) {
        j->k = k;
        j->read_ahead_kb = read_ahead_kb;
        j->max_ratio = max_ratio;
    }
    if (!j || !k->notifier || bf_notifier_post(k->notifier, tune_bdi_job, free, j) < 0) {
        free(j);
        bf_warn("cannot queue the readahead tuning");
    }
}

/* ---- invalidation -------------------------------------------------------- */

struct inval_args {
    fuse_ino_t ino;
    off_t off, len;
};

/* On the notifier (D3). */
static int do_inval(struct fuse_session *se, void *arg)
{
    struct inval_args *a = arg;
    int r = fuse_lowlevel_notify_inval_inode(se, a->ino, a->off, a->len);

    /* -ENOENT: the kernel has no inode for ino, so nothing is cached. */
    return r == -ENOENT ? 0 : r;
}

/* Run the notification fn(arg) on the notifier (D2, D3). A failure is
 * reported (D5): "the kernel could not forget WHAT: ERROR (CONSEQUENCE)",
 * and is -EIO. */
static int notify(bf_kernel *k, int (*fn)(struct fuse_session *se, void *arg), void *arg,
                  const char *what, const char *consequence)
{
    int r;

    BF_ASSERT(may_wait);
    r = bf_notifier_call(k->notifier, fn, arg);
    if (r == 0)
        return 0;
    bf_err("the kernel could not forget %s: %s (%s)", what, strerror(-r), consequence);
    return -EIO;
}

int bf_kernel_inval(bf_kernel *k, fuse_ino_t ino, off_t off, off_t len)
{
    struct inval_args a = { .ino = ino, .off = off, .len = len };
    char what[64];

    snprintf(what, sizeof(what), "the %s of inode %llu", off < 0 ? "attributes" : "pages",
             (unsigned long long)ino);
    return notify(k, do_inval, &a, what,
                  "its cached pages may be stale until the request is repeated");
}

int bf_kernel_inval_blocks(bf_kernel *k, fuse_ino_t ino, uint32_t blksize, uint64_t blk,
                           uint64_t count)
{
    const uint64_t max = (uint64_t)INT64_MAX;
    off_t off, len;

    if (blk > max / blksize)
        return 0; /* beyond any offset the kernel caches */
    off = (off_t)(blk * blksize);
    /* len 0: to the end */
    len = count > (max - (uint64_t)off) / blksize ? 0 : (off_t)(count * blksize);
    return bf_kernel_inval(k, ino, off, len);
}

struct entry_args {
    fuse_ino_t parent;
    const char *name;
};

/* On the notifier (D3). */
static int do_inval_entry(struct fuse_session *se, void *arg)
{
    struct entry_args *a = arg;
    int r = fuse_lowlevel_notify_inval_entry(se, a->parent, a->name, strlen(a->name));

    /* -ENOENT: the kernel has no entry of that name (nor the directory). */
    return r == -ENOENT ? 0 : r;
}

int bf_kernel_inval_entry(bf_kernel *k, fuse_ino_t parent, const char *name)
{
    struct entry_args a = { .parent = parent, .name = name };
    char what[NAME_MAX + 32];

    snprintf(what, sizeof(what), "the entry %s", name);
    return notify(k, do_inval_entry, &a, what,
                  "it may find the old file under that name until it looks it up again");
}

/* ---- writeback ------------------------------------------------------------- */

static int pidfd_open_thread(pid_t tid)
{
    int fd = (int)syscall(SYS_pidfd_open, tid, PIDFD_THREAD);

    if (fd < 0 && errno == EINVAL) /* before Linux 6.9: leaders only */
        fd = (int)syscall(SYS_pidfd_open, tid, 0);
    return fd;
}

/* fsync() a duplicate of the open file that thread `caller` holds on inode
 * ino of this mount, and store fsync's result (0 or -errno) in *result.
 * Returns 0 when the file was reached, else why not: -ENOENT (the caller
 * holds no such file any more), -EPERM (no privilege over the caller),
 * -ESRCH (the caller is gone), another -errno. */
static int fsync_callers_file(bf_kernel *k, pid_t caller, fuse_ino_t ino, int *result)
{
    char dirpath[64];
    struct dirent *de;
    struct statx sx;
    DIR *d;
    int dfd, pidfd, r = -ENOENT;

    snprintf(dirpath, sizeof(dirpath), "/proc/%d/fd", (int)caller);
    dfd = open(dirpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return errno == ENOENT ? -ESRCH : -errno;
    d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return -ENOMEM;
    }
    pidfd = pidfd_open_thread(caller);
    if (pidfd < 0) {
        r = -errno;
        closedir(d);
        return r;
    }
    while ((de = readdir(d))) {
        int fd;

        if (de->d_name[0] == '.')
            continue;
        /* The link's target, without asking any filesystem (DONT_SYNC):
         * the caller's other files may be on a hung mount. */
        if (statx(dfd, de->d_name, AT_STATX_DONT_SYNC, STATX_INO, &sx) < 0 ||
            !same_inode(k, &sx, ino))
            continue;
        fd = (int)syscall(SYS_pidfd_getfd, pidfd, atoi(de->d_name), 0);
        if (fd < 0) {
            r = -errno;
            if (r == -EBADF)
                continue; /* closed meanwhile */
            break;
        }
        /* The number may have been reused since the statx: check again. */
        if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_INO, &sx) == 0 &&
            same_inode(k, &sx, ino)) {
            *result = fsync(fd) < 0 ? -errno : 0;
            r = 0;
        }
        close(fd); /* not the last reference: a FLUSH at most, no RELEASE */
        if (r == 0)
            break;
        r = -ENOENT;
    }
    close(pidfd);
    closedir(d);
    return r;
}

int bf_kernel_writeback(bf_kernel *k, pid_t caller, fuse_ino_t ino)
{
    int r, result = 0;

    BF_ASSERT(may_wait);
    /* 1. Through the caller's own file: the pages stay cached (D4). Its
     * fsync's error (a WRITE the daemon failed) is the answer. */
    r = fsync_callers_file(k, caller, ino, &result);
    if (r == 0)
        return result;
    /* 2. Through the mount's connection itself: an invalidation launders
     * every dirty page as a WRITE (K3) — and drops the cached pages. */
    bf_info("writing back inode %llu through an invalidation (its cached pages are dropped): "
            "the caller's file could not be reached: %s",
            (unsigned long long)ino, strerror(-r));
    return bf_kernel_inval(k, ino, 0, 0);
}

/* ---- the caller's memory ----------------------------------------------------- */

int bf_kernel_probe_user(pid_t pid, void *addr, size_t len)
{
    char buf[512];
    struct iovec local = { buf, len }, remote = { addr, len };
    ssize_t n;

    BF_ASSERT(may_wait);
    if (len > sizeof(buf))
        return -EINVAL;
    n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    if (n >= 0 && (size_t)n == len)
        n = process_vm_writev(pid, &local, 1, &remote, 1, 0);
    if (n < 0)
        return -errno;
    return (size_t)n == len ? 0 : -EFAULT;
}

/* ---- unmounting ---------------------------------------------------------------- */

/* Undo the octal escapes (\040 ...) of a mountinfo field, in place. */
static void unescape(char *s)
{
    char *w = s;

    for (; *s; s++) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
            s[3] >= '0' && s[3] <= '7') {
            *w++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 3;
        } else {
            *w++ = *s;
        }
    }
    *w = '\0';
}

/* The mount point of mount id `id` in this mount namespace, malloc'ed, or
 * NULL (not mounted here, or out of memory). */
static char *mountinfo_path(uint64_t id)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char *line = NULL, *path = NULL;
    size_t cap = 0;

    if (!f)
        return NULL;
    while (!path && getline(&line, &cap, f) > 0) {
        unsigned long long mid;
        char mp[4096];

        /* ID PARENT MAJ:MIN ROOT MOUNTPOINT ... */
        if (sscanf(line, "%llu %*u %*u:%*u %*s %4095s", &mid, mp) == 2 && mid == id) {
            unescape(mp);
            path = strdup(mp);
        }
    }
    free(line);
    fclose(f);
    return path;
}

bool bf_kernel_at_mountpoint(bf_kernel *k)
{
    struct statx sx;

    return statx(AT_FDCWD, k->mountpoint, AT_STATX_DONT_SYNC, STATX_MNT_ID, &sx) == 0 &&
           sx.stx_mnt_id == k->mnt_id;
}

void bf_kernel_end_connection(struct fuse_session *se)
{
    int p[2], fd = fuse_session_fd(se);

    /* A pipe's write end without a reader polls POLLERR. dup2 closes the
     * device descriptor in the same step. */
    if (fd < 0 || pipe2(p, O_CLOEXEC) < 0)
        return;
    close(p[0]);
    if (dup2(p[1], fd) < 0)
        bf_err("cannot close the FUSE device: %s", strerror(errno));
    close(p[1]);
}

int bf_kernel_unmount(bf_kernel *k)
{
    char *path = mountinfo_path(k->mnt_id), self[64];
    struct statx sx;
    int fd, r = 0;

    if (!path)
        return 0; /* unmounted already (or moved out of this namespace) */
    /* O_PATH: no request. The path leads to the topmost mount there: ours,
     * unless something was mounted on top (checked by the mount id). */
    fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        r = -errno;
    } else if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_MNT_ID, &sx) < 0) {
        r = -errno;
    } else if (sx.stx_mnt_id != k->mnt_id) {
        r = -EBUSY;
    } else {
        /* The magic link leads to exactly this mount (D4). Lazily, as
         * libfuse does: processes still using it keep it until they let go. */
        snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
        if (umount2(self, MNT_DETACH) < 0)
            r = -errno;
    }
    if (fd >= 0)
        close(fd);
    if (r == -EBUSY)
        bf_warn("not unmounting %s: another filesystem is mounted on top of it", path);
    else if (r < 0 && r != -EPERM)
        bf_err("cannot unmount %s: %s", path, strerror(-r));
    else if (r == 0 && strcmp(path, k->mountpoint) != 0)
        bf_info("unmounted %s (moved there from %s)", path, k->mountpoint);
    free(path);
    return r;
}

int bf_kernel_abort(bf_kernel *k)
{
    char path[128];
    int fd, r = 0;

    /* The connection's number is the kernel's dev_t of the mount. */
    snprintf(path, sizeof(path), "/sys/fs/fuse/connections/%u/abort",
             (k->dev_major << 20) | k->dev_minor);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "1", 1) != 1)
        r = -errno;
    if (fd >= 0)
        close(fd);
    if (r < 0)
        bf_err("cannot abort the FUSE connection (%s): %s", path, strerror(-r));
    else
        bf_warn("aborted the FUSE connection: requests still waiting for the kernel failed");
    return r;
}

bool bf_kernel_can_splice_reads(size_t len)
{
    int p[2];
    long page = sysconf(_SC_PAGESIZE);
    if (pipe2(p, O_CLOEXEC) < 0)
        return false;
    /* libfuse's size for the answer's pipe (fuse_send_data_iov) */
    long want = 3 * page + 16 /* struct fuse_out_header */ + (long)len;
    long got = fcntl(p[0], F_SETPIPE_SZ, want);
    close(p[0]);
    close(p[1]);
    return got >= want;
}
