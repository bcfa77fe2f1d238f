/* SPDX-License-Identifier: MIT */
/* bigfile/ioctl.h — the ioctl interface of bigfilefs files.
 *
 * #include <bigfile/ioctl.h>
 *
 * Every file of a bigfilefs mount answers these requests. The changes made
 * to a file — through any mapping or write(2), by any process — are
 * uncommitted until BIGFILE_IOC_WRITEOUT (or WRITEOUT2) commits them to the
 * database, atomically, or BIGFILE_IOC_DISCARD drops them. Several mounts
 * may share a database (bigfilefs -o shared): every commit gets a serial,
 * each mount follows the others' commits, and a writeout that would
 * overwrite a commit it never saw fails with ESTALE. See ioctl_bigfile(2).
 *
 * ABI rules: every argument struct has fixed-width fields, explicit padding
 * (reserved fields, which callers set to zero) and no pointers, so that the
 * encodings below are the same for 32- and 64-bit callers and work through
 * FUSE (which passes _IOC_SIZE bytes each way) and from Python's
 * fcntl.ioctl. The magic number is private to bigfilefs.
 *
 * Every request that acts and answers is encoded _IOWR, even when it reads
 * nothing from its argument (DISCARD, RECLAIM): the kernel then copies the
 * argument in before the daemon sees the request, so a bad pointer fails
 * with EFAULT before anything happened (ioctl_bigfile(2), NOTES). The first
 * encodings of DISCARD and RECLAIM (_IOR, bigfilefs 0.1) are still served.
 * A struct grows only into its reserved fields, with a version to tell
 * (struct bigfile_stat); a request whose argument changes gets a new
 * number (WRITEOUT2), and the old one is still served.
 */
#ifndef BIGFILE_IOCTL_H
#define BIGFILE_IOCTL_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define BIGFILE_IOC_MAGIC 0xBF

/* Writeout flags (struct bigfile_writeout.flags, bigfile_writeout2.flags). */
#define BIGFILE_WRITEOUT_STORE (1u << 0)      /* store changes, commit atomically */
#define BIGFILE_WRITEOUT_MARKSTORED (1u << 1) /* mark changed blocks clean */
/* BIGFILE_IOC_WRITEOUT2 only, with STORE: commit even over another mount's
 * newer commit of the same blocks or size (no ESTALE: the last writer
 * wins) */
#define BIGFILE_WRITEOUT_OVERWRITE (1u << 2)

/* BIGFILE_IOC_WRITEOUT argument.
 * in:  flags — nonzero combination of BIGFILE_WRITEOUT_*; reserved = 0.
 * out: blocks — number of changed blocks handled; bytes — bytes stored. */
struct bigfile_writeout {
    __u32 flags;
    __u32 reserved;
    __u64 blocks;
    __u64 bytes;
};

/* BIGFILE_IOC_WRITEOUT2 argument: BIGFILE_IOC_WRITEOUT with the serial of
 * the commit.
 * in:  flags — nonzero combination of BIGFILE_WRITEOUT_*; reserved = 0.
 * out: blocks, bytes — as for BIGFILE_IOC_WRITEOUT; serial — the serial of
 *      the commit (the file's content is as of it on this mount when the
 *      call returns), or, when there was nothing to commit, the serial the
 *      file's content is as of; conflict_blocks — with OVERWRITE, the
 *      committed blocks that were marked conflicting (another mount's newer
 *      commit of them was overwritten), else 0. */
struct bigfile_writeout2 {
    __u32 flags;
    __u32 reserved;
    __u64 blocks;
    __u64 bytes;
    __u64 serial;
    __u64 conflict_blocks;
};

/* BIGFILE_IOC_SYNC result: the serial this mount caught up with. */
struct bigfile_serial {
    __u64 serial;
};

/* BIGFILE_IOC_INVALIDATE argument: blocks [start, start + count).
 * count must be nonzero and start + count must not overflow. */
struct bigfile_range {
    __u64 start;
    __u64 count;
};

/* BIGFILE_IOC_CONFLICTS argument: the blocks of the file whose uncommitted
 * changes conflict with another mount's commit, a bounded number of ranges
 * per call.
 * in:  start — the first block to look at (0, then the `next` of the last
 *      call).
 * out: next — where the next call starts, BIGFILE_CONFLICTS_END when no
 *      conflicting block is left; count — ranges filled; flags —
 *      BIGFILE_CONFLICTS_SIZE when the uncommitted size conflicts too;
 *      ranges — sorted, disjoint block ranges [start, start + count). */
#define BIGFILE_CONFLICTS_MAX 64
#define BIGFILE_CONFLICTS_END (~(__u64)0)
#define BIGFILE_CONFLICTS_SIZE (1u << 0)
struct bigfile_conflicts {
    __u64 start;
    __u64 next;
    __u32 count;
    __u32 flags;
    struct bigfile_range ranges[BIGFILE_CONFLICTS_MAX];
};

/* BIGFILE_IOC_DISCARD and BIGFILE_IOC_RECLAIM result. */
struct bigfile_count {
    __u64 blocks; /* blocks dropped */
    __u64 bytes;  /* bytes of daemon memory freed */
};

/* BIGFILE_IOC_STAT result: the daemon's shadow state of the file. */
struct bigfile_stat {
    __u32 version;        /* BIGFILE_STAT_VERSION */
    __u32 blksize;        /* block size, bytes */
    __u64 size;           /* current size, uncommitted changes included */
    __u64 committed_size; /* size in the database */
    __u64 loaded_blocks;  /* clean blocks cached by the daemon */
    __u64 dirty_blocks;   /* changed blocks not yet committed */
    __u64 loading_blocks; /* blocks being loaded now */
    __u64 loadblk_calls;  /* block loads from the database */
    __u64 storeblk_calls; /* block stores to the database */
    __u64 bytes_loaded;
    __u64 bytes_stored;
    __u64 writeouts; /* successful writeouts */
    __u64 discards;
    __u64 invalidated_blocks;
    __u64 reclaimed_blocks;
    __u64 errors; /* failed database operations */
    /* version 2: */
    __u64 serial;          /* the serial the handle's content is as of (its view) */
    __u64 conflict_blocks; /* changed blocks another mount's commit conflicts with */
    /* version 3: the writeout running now (both zero when none is storing
     * blocks), for a progress display: blocks stored so far, and in all
     * (bytes: times blksize) */
    __u64 writeout_blocks;
    __u64 writeout_total_blocks;
    /* version 4: */
    __u64 spilled_blocks; /* changed blocks staged in the database, not in memory */
    __u64 spills;         /* blocks spilled past the dirty budget (-o dirty) */
    /* version 5: */
    __u64 spliced_reads; /* reads answered from the database's block file,
                            spliced, nothing cached by the daemon (counted
                            in bytes_loaded, not in loadblk_calls) */
    __u64 reserved[1];   /* zero */
};
#define BIGFILE_STAT_VERSION 5

/* BIGFILE_IOC_STATUS argument — a request on the mount's root directory
 * (an fd of it opened O_RDONLY | O_DIRECTORY), not on a file: the files of
 * the mount whose handle in the daemon has uncommitted changes (changed
 * blocks, or a size other than the committed one), in order of inode
 * number, a bounded number per call. The daemon answers from the files it
 * holds open (a file with uncommitted changes always is): no file is
 * opened, so the call costs the same on a mount of 10 000 files as on one
 * of 10. As for STAT, pages changed through a mapping and not yet written
 * back by the kernel are not counted until they are.
 * in:  start — the first inode number to look at (0, then the `next` of
 *      the last call); reserved = 0.
 * out: next — where the next call starts, BIGFILE_STATUS_END when no file
 *      is left; count — entries of files[] filled. */
#define BIGFILE_STATUS_MAX 32
#define BIGFILE_STATUS_END (~(__u64)0)
#define BIGFILE_STATUS_SIZE_CONFLICT (1u << 0) /* the uncommitted size conflicts */
struct bigfile_status_file {
    __u64 ino;             /* st_ino of the file */
    __u64 size;            /* current size, uncommitted changes included */
    __u64 committed_size;  /* size in the database */
    __u64 dirty_blocks;    /* changed blocks not yet committed */
    __u64 dirty_bytes;     /* dirty_blocks * blksize */
    __u64 conflict_blocks; /* changed blocks another mount's commit conflicts with */
    __u32 blksize;
    __u32 flags;    /* BIGFILE_STATUS_SIZE_CONFLICT */
    char name[256]; /* the file's name, NUL-terminated */
};
struct bigfile_status {
    __u64 start;
    __u64 next;
    __u32 count;
    __u32 reserved;
    struct bigfile_status_file files[BIGFILE_STATUS_MAX];
};

/* BIGFILE_IOC_SETBLKSIZE argument: the block size of an empty file (size 0
 * committed and uncommitted, no block ever stored). Used by
 * `bigfilectl create --blksize`. */
struct bigfile_blksize {
    __u32 blksize; /* power of two, 4 KiB .. 64 MiB */
    __u32 reserved;
};

/* Point-in-time views (bigfilefs(8), POINT-IN-TIME VIEWS): MOUNT/@SERIAL/
 * is the mount's database as it was at commit SERIAL, read-only. */

/* BIGFILE_IOC_LOG argument — on a file (of the mount or of an @SERIAL
 * directory): the file's commits in the kept history, newest first, a
 * bounded number per call.
 * in:  before — list commits with a serial below it (0: from the newest,
 *      then the `next` of the last call); reserved = 0.
 * out: next — the `before` of the next call, BIGFILE_LOG_END when none is
 *      left; count — entries of e[] filled. */
#define BIGFILE_LOG_MAX 16
#define BIGFILE_LOG_END 0
/* kinds of struct bigfile_log_entry */
#define BIGFILE_LOG_WRITE 1             /* content and/or size */
#define BIGFILE_LOG_CREATE 2            /* created */
#define BIGFILE_LOG_UNLINK 3            /* name removed (or replaced by a rename) */
#define BIGFILE_LOG_RENAME 4            /* renamed */
#define BIGFILE_LOG_SETATTR 5           /* mode, owner or mtime */
#define BIGFILE_LOG_SETBLKSIZE 6        /* block size */
#define BIGFILE_LOG_TRUNCATED (1u << 0) /* WRITE: blocks were dropped */
struct bigfile_log_entry {
    __u64 serial;
    __s64 time_ns;  /* when it was committed (CLOCK_REALTIME) */
    __u64 blocks;   /* WRITE: blocks changed (stored, or dropped by a truncate) */
    __u64 size;     /* the file's size after it */
    __u32 kind;     /* BIGFILE_LOG_* */
    __u32 flags;    /* BIGFILE_LOG_TRUNCATED */
    char name[256]; /* the file's name after it, NUL-terminated ("" if none) */
};
struct bigfile_log {
    __u64 before;
    __u64 next;
    __u32 count;
    __u32 reserved;
    struct bigfile_log_entry e[BIGFILE_LOG_MAX];
};

/* BIGFILE_IOC_HISTORY argument — on the mount's root directory: the
 * database's kept history, and with BIGFILE_HISTORY_SET_KEEP a new
 * retention period (committed at once; EROFS on a read-only mount).
 * in:  flags; keep_ns (with SET_KEEP, >= 0); the rest 0.
 * out: from — the oldest serial an @SERIAL directory may show; current —
 *      the database's serial; keep_ns — the retention period; pinned —
 *      the lowest serial a live mount holds open (0: none); flags gets
 *      BIGFILE_HISTORY_KEPT when the database keeps history (ENOTSUP is
 *      never returned: a mem: or block-server mount says not kept). */
#define BIGFILE_HISTORY_SET_KEEP (1u << 0) /* in */
#define BIGFILE_HISTORY_KEPT (1u << 1)     /* out */
struct bigfile_history {
    __u32 flags;
    __u32 reserved;
    __s64 keep_ns;
    __u64 from;
    __u64 current;
    __u64 pinned;
    __u64 reserved2[3]; /* zero */
};

/* BIGFILE_IOC_GC — on the mount's root directory: run the database's
 * housekeeping now, to the end (what the mounts otherwise do in turns),
 * and answer as BIGFILE_IOC_HISTORY does; EROFS on a read-only mount.
 * The argument is a struct bigfile_history with flags = 0. */

#define BIGFILE_IOC_WRITEOUT _IOWR(BIGFILE_IOC_MAGIC, 1, struct bigfile_writeout)
#define BIGFILE_IOC_DISCARD _IOWR(BIGFILE_IOC_MAGIC, 2, struct bigfile_count)
#define BIGFILE_IOC_INVALIDATE _IOW(BIGFILE_IOC_MAGIC, 3, struct bigfile_range)
#define BIGFILE_IOC_STAT _IOR(BIGFILE_IOC_MAGIC, 4, struct bigfile_stat)
#define BIGFILE_IOC_RECLAIM _IOWR(BIGFILE_IOC_MAGIC, 5, struct bigfile_count)
#define BIGFILE_IOC_SETBLKSIZE _IOW(BIGFILE_IOC_MAGIC, 6, struct bigfile_blksize)
#define BIGFILE_IOC_SYNC _IOWR(BIGFILE_IOC_MAGIC, 7, struct bigfile_serial)
#define BIGFILE_IOC_WRITEOUT2 _IOWR(BIGFILE_IOC_MAGIC, 8, struct bigfile_writeout2)
#define BIGFILE_IOC_CONFLICTS _IOWR(BIGFILE_IOC_MAGIC, 9, struct bigfile_conflicts)
#define BIGFILE_IOC_STATUS _IOWR(BIGFILE_IOC_MAGIC, 10, struct bigfile_status)
#define BIGFILE_IOC_LOG _IOWR(BIGFILE_IOC_MAGIC, 11, struct bigfile_log)
#define BIGFILE_IOC_HISTORY _IOWR(BIGFILE_IOC_MAGIC, 12, struct bigfile_history)
#define BIGFILE_IOC_GC _IOWR(BIGFILE_IOC_MAGIC, 13, struct bigfile_history)

#endif /* BIGFILE_IOCTL_H */
