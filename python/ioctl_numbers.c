/* SPDX-License-Identifier: MIT */
/* ioctl_numbers — print the request numbers, flags and argument struct sizes
 * of <bigfile/ioctl.h> as the C compiler sees them, one "NAME VALUE" line
 * each, so that python/test_ioctl_sync.py can check that the Python module
 * bigfilefs.py computes the same values. Built by `make check` only. */
#include <stdio.h>
#include <stddef.h>

#include <bigfile/ioctl.h>

#define SHOW(x) printf("%s %llu\n", #x, (unsigned long long)(x))
#define OFF(s, f) printf("offsetof(%s.%s) %zu\n", #s, #f, offsetof(struct s, f))

int main(void)
{
    SHOW(BIGFILE_IOC_MAGIC);
    SHOW(BIGFILE_IOC_WRITEOUT);
    SHOW(BIGFILE_IOC_DISCARD);
    SHOW(BIGFILE_IOC_INVALIDATE);
    SHOW(BIGFILE_IOC_STAT);
    SHOW(BIGFILE_IOC_RECLAIM);
    SHOW(BIGFILE_IOC_SETBLKSIZE);
    SHOW(BIGFILE_IOC_SYNC);
    SHOW(BIGFILE_IOC_WRITEOUT2);
    SHOW(BIGFILE_IOC_CONFLICTS);
    SHOW(BIGFILE_IOC_STATUS);
    SHOW(BIGFILE_WRITEOUT_STORE);
    SHOW(BIGFILE_WRITEOUT_MARKSTORED);
    SHOW(BIGFILE_WRITEOUT_OVERWRITE);
    SHOW(BIGFILE_CONFLICTS_MAX);
    SHOW(BIGFILE_CONFLICTS_END);
    SHOW(BIGFILE_CONFLICTS_SIZE);
    SHOW(BIGFILE_STATUS_MAX);
    SHOW(BIGFILE_STATUS_END);
    SHOW(BIGFILE_STATUS_SIZE_CONFLICT);
    SHOW(BIGFILE_STAT_VERSION);
    SHOW(sizeof(struct bigfile_writeout));
    SHOW(sizeof(struct bigfile_writeout2));
    SHOW(sizeof(struct bigfile_serial));
    SHOW(sizeof(struct bigfile_conflicts));
    SHOW(sizeof(struct bigfile_range));
    SHOW(sizeof(struct bigfile_count));
    SHOW(sizeof(struct bigfile_stat));
    SHOW(sizeof(struct bigfile_blksize));
    SHOW(sizeof(struct bigfile_status));
    SHOW(sizeof(struct bigfile_status_file));
    /* Every field's offset: the module packs and unpacks the structs with
     * struct formats whose layout must be exactly this. */
    OFF(bigfile_stat, version);
    OFF(bigfile_stat, blksize);
    OFF(bigfile_stat, size);
    OFF(bigfile_stat, committed_size);
    OFF(bigfile_stat, loaded_blocks);
    OFF(bigfile_stat, dirty_blocks);
    OFF(bigfile_stat, loading_blocks);
    OFF(bigfile_stat, loadblk_calls);
    OFF(bigfile_stat, storeblk_calls);
    OFF(bigfile_stat, bytes_loaded);
    OFF(bigfile_stat, bytes_stored);
    OFF(bigfile_stat, writeouts);
    OFF(bigfile_stat, discards);
    OFF(bigfile_stat, invalidated_blocks);
    OFF(bigfile_stat, reclaimed_blocks);
    OFF(bigfile_stat, errors);
    OFF(bigfile_stat, serial);
    OFF(bigfile_stat, conflict_blocks);
    OFF(bigfile_stat, writeout_blocks);
    OFF(bigfile_stat, writeout_total_blocks);
    OFF(bigfile_stat, spilled_blocks);
    OFF(bigfile_stat, spills);
    OFF(bigfile_stat, spliced_reads);
    OFF(bigfile_stat, reserved);
    OFF(bigfile_writeout, flags);
    OFF(bigfile_writeout, reserved);
    OFF(bigfile_writeout, blocks);
    OFF(bigfile_writeout, bytes);
    OFF(bigfile_writeout2, flags);
    OFF(bigfile_writeout2, reserved);
    OFF(bigfile_writeout2, blocks);
    OFF(bigfile_writeout2, bytes);
    OFF(bigfile_writeout2, serial);
    OFF(bigfile_writeout2, conflict_blocks);
    OFF(bigfile_serial, serial);
    OFF(bigfile_conflicts, start);
    OFF(bigfile_conflicts, next);
    OFF(bigfile_conflicts, count);
    OFF(bigfile_conflicts, flags);
    OFF(bigfile_conflicts, ranges);
    OFF(bigfile_status, start);
    OFF(bigfile_status, next);
    OFF(bigfile_status, count);
    OFF(bigfile_status, reserved);
    OFF(bigfile_status, files);
    OFF(bigfile_status_file, ino);
    OFF(bigfile_status_file, size);
    OFF(bigfile_status_file, committed_size);
    OFF(bigfile_status_file, dirty_blocks);
    OFF(bigfile_status_file, dirty_bytes);
    OFF(bigfile_status_file, conflict_blocks);
    OFF(bigfile_status_file, blksize);
    OFF(bigfile_status_file, flags);
    OFF(bigfile_status_file, name);
    OFF(bigfile_range, start);
    OFF(bigfile_range, count);
    OFF(bigfile_count, blocks);
    OFF(bigfile_count, bytes);
    OFF(bigfile_blksize, blksize);
    OFF(bigfile_blksize, reserved);
    return 0;
}
