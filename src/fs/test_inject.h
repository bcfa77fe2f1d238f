/* SPDX-License-Identifier: MIT */
/* bigfilefs — the daemon's test interface: the fault-injection ioctl.
 *
 * TEST ONLY. Not part of <bigfile/ioctl.h>, not installed, not for
 * programs: the integration tests use it to make the memory backend fail or
 * slow down under a real mount. The daemon serves it only when it runs with
 * `-o test_inject` on a "mem:" database (the option is refused with any
 * other database); otherwise BIGFILE_TEST_IOC_INJECT fails with ENOTTY like
 * any unknown request. It adds a fault rule of the memory backend
 * (src/backends/memory.h, bf_mem_inject) for the file the ioctl is issued
 * on, or removes every rule (bf_mem_clear_faults, for all files).
 *
 * Like <bigfile/ioctl.h>: fixed-width fields, explicit padding, no pointers.
 */
#ifndef BIGFILEFS_FS_TEST_INJECT_H
#define BIGFILEFS_FS_TEST_INJECT_H

#include <linux/ioctl.h>
#include <linux/types.h>

#include <bigfile/ioctl.h>

/* struct bigfile_test_inject.op */
#define BIGFILE_TEST_INJECT_ADD 1u   /* add the rule described by the other fields */
#define BIGFILE_TEST_INJECT_CLEAR 2u /* remove every rule (all files); other fields ignored */

/* struct bigfile_test_inject.mem_op: the values of enum bf_mem_op. */
#define BIGFILE_TEST_INJECT_LOADBLK 1u
#define BIGFILE_TEST_INJECT_STOREBLK 2u
#define BIGFILE_TEST_INJECT_BEGIN 3u
#define BIGFILE_TEST_INJECT_TRUNCATE 4u
#define BIGFILE_TEST_INJECT_COMMIT 5u

/* Fields mirror struct bf_mem_fault; the rule applies to the file the ioctl
 * is issued on. */
struct bigfile_test_inject {
    __u32 op;       /* BIGFILE_TEST_INJECT_ADD or BIGFILE_TEST_INJECT_CLEAR */
    __u32 mem_op;   /* BIGFILE_TEST_INJECT_LOADBLK .. BIGFILE_TEST_INJECT_COMMIT */
    __u64 blk_lo;   /* block range, inclusive */
    __u64 blk_hi;   /* UINT64_MAX: to the end */
    __s32 err;      /* positive errno to fail with; 0: latency only */
    __u32 delay_us; /* sleep this long in each matching call */
    __u64 after;    /* let this many matching calls succeed first */
    __u64 times;    /* fire at most this many times; 0: unlimited */
    __u64 reserved; /* zero */
};

#define BIGFILE_TEST_IOC_INJECT _IOW(BIGFILE_IOC_MAGIC, 0x40, struct bigfile_test_inject)

#endif /* BIGFILEFS_FS_TEST_INJECT_H */
