/* SPDX-License-Identifier: MIT */
/* bigfilefs — the daemon's test interface: the fault-injection ioctl.
 *
 * TEST ONLY. Not part of <bigfile/ioctl.h>, not installed, not for
 * programs: the integration tests use it to make the memory backend fail,
 * slow down or hold its calls under a real mount. The daemon serves it only
 * when it runs with `-o test_inject` on a "mem:" database (the option is
 * refused with any other database); otherwise BIGFILE_TEST_IOC_INJECT fails
 * with ENOTTY like any unknown request. One request, several operations
 * (`op`), each a function of src/backends/memory.h:
 *
 *  ADD        add a fault rule (bf_mem_inject) for the file the ioctl is
 *             issued on: fail with `err`, add `delay_us` of latency, or —
 *             with BIGFILE_TEST_INJECT_HOLD in `flags` — hold each call it
 *             fires on until a RELEASE (then fail with `err` if set, else
 *             go on normally).
 *  CLEAR      remove every rule, of every file, and release every held
 *             call (bf_mem_clear_faults).
 *  RELEASE    release every held call, of every file, and make every hold
 *             rule inactive: later matching calls pass it (bf_mem_release).
 *  HELD       only answer (below).
 *  WAIT_HELD  wait until at least `held` calls are held at once, of any
 *             file (bf_mem_wait_held: on the backend's condition variable,
 *             no polling), at most `timeout_ms`; fails with EAGAIN when the
 *             time passed first (as a socket's SO_RCVTIMEO does).
 * Every operation answers the struct as it came, with `held` set to the
 * number of calls held (of every file) when it answered.
 *
 * So a test waits for an event instead of sleeping: ADD a hold rule, start
 * the action that makes the call (in another process: it blocks), WAIT_HELD
 * for it, act and check while it is held, RELEASE, and wait for the action
 * to end. A daemon must not end with calls held (memory.h): RELEASE before
 * unmounting.
 *
 * Where WAIT_HELD waits: on the request thread that received it, holding no
 * daemon lock — like every operation here, it is not queued (a worker could
 * be the very one that waits for the file's held job: one job per file,
 * workq.h). It waits on the backend's condition variable, never for the
 * kernel; but the calls it waits for may need other request threads to get
 * held (a READ's loadblk; a WRITEOUT's storeblk comes after the kernel's
 * WRITEs), which kernel.h's D1 forbids for a request thread. This is the one
 * exception, for the test interface only, and it is bounded: a wait takes
 * one request thread (libfuse starts others, up to max_threads) for at most
 * BIGFILE_TEST_INJECT_WAIT_MAX_MS, so at worst it delays the mount; it
 * cannot deadlock it.
 *
 * Like <bigfile/ioctl.h>: fixed-width fields, explicit padding, no pointers.
 */
#ifndef BIGFILEFS_FS_TEST_INJECT_H
#define BIGFILEFS_FS_TEST_INJECT_H

#include <linux/ioctl.h>
#include <linux/types.h>

#include <bigfile/ioctl.h>

/* struct bigfile_test_inject.op (see above) */
#define BIGFILE_TEST_INJECT_ADD 1u
#define BIGFILE_TEST_INJECT_CLEAR 2u
#define BIGFILE_TEST_INJECT_RELEASE 3u
#define BIGFILE_TEST_INJECT_HELD 4u
#define BIGFILE_TEST_INJECT_WAIT_HELD 5u

/* struct bigfile_test_inject.mem_op: the values of enum bf_mem_op. */
#define BIGFILE_TEST_INJECT_LOADBLK 1u
#define BIGFILE_TEST_INJECT_STOREBLK 2u
#define BIGFILE_TEST_INJECT_BEGIN 3u
#define BIGFILE_TEST_INJECT_TRUNCATE 4u
#define BIGFILE_TEST_INJECT_COMMIT 5u
#define BIGFILE_TEST_INJECT_STAGE 6u   /* a spill: the block's content staged */
#define BIGFILE_TEST_INJECT_UNSTAGE 7u /* a spilled block read back */

/* struct bigfile_test_inject.flags */
#define BIGFILE_TEST_INJECT_HOLD (1u << 0) /* ADD: hold the calls the rule fires on */

/* The longest WAIT_HELD (larger timeout_ms: EINVAL). */
#define BIGFILE_TEST_INJECT_WAIT_MAX_MS 60000u

/* The rule fields mirror struct bf_mem_fault; a rule applies to the file the
 * ioctl is issued on. Fields an operation does not use are ignored, but
 * flags and reserved are always checked. */
struct bigfile_test_inject {
    __u32 op;         /* BIGFILE_TEST_INJECT_ADD .. BIGFILE_TEST_INJECT_WAIT_HELD */
    __u32 mem_op;     /* ADD: BIGFILE_TEST_INJECT_LOADBLK .. BIGFILE_TEST_INJECT_UNSTAGE */
    __u64 blk_lo;     /* ADD: block range, inclusive */
    __u64 blk_hi;     /* ADD: UINT64_MAX: to the end */
    __s32 err;        /* ADD: positive errno to fail with; 0: do not fail */
    __u32 delay_us;   /* ADD: sleep this long in each matching call */
    __u64 after;      /* ADD: let this many matching calls pass first */
    __u64 times;      /* ADD: fire at most this many times; 0: unlimited */
    __u32 flags;      /* ADD: BIGFILE_TEST_INJECT_HOLD or 0; other ops: 0 */
    __u32 timeout_ms; /* WAIT_HELD: at most BIGFILE_TEST_INJECT_WAIT_MAX_MS */
    __u64 held;       /* in, WAIT_HELD: the calls to wait for; out: the calls held */
    __u64 reserved;   /* zero */
};

#define BIGFILE_TEST_IOC_INJECT _IOWR(BIGFILE_IOC_MAGIC, 0x40, struct bigfile_test_inject)

#endif /* BIGFILEFS_FS_TEST_INJECT_H */
