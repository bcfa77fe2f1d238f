/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — tuning the mount's backing device info (bdi).
 *
 * The kernel caps a FUSE mount's readahead at 128 KiB and its dirty pages at
 * 1% of the dirty threshold (strictlimit), unless root raises
 * /sys/class/bdi/MAJOR:MINOR/{read_ahead_kb,max_ratio}. The values must be
 * written after the kernel processed the INIT reply (which lowers
 * read_ahead_kb to the negotiated max_readahead): bf_bdi_tune() first stats
 * the mount point, which waits for INIT, so it must run on a thread that is
 * not a request handler while the session loop runs (the notifier).
 *
 * Failure (not root, no sysfs) is logged and otherwise ignored.
 */
#ifndef BIGFILEFS_FS_BDI_H
#define BIGFILEFS_FS_BDI_H

/* Set read_ahead_kb and max_ratio of the bdi of the file system mounted at
 * `mountpoint` (absolute path). Returns 0 or a negative errno (logged). */
int bf_bdi_tune(const char *mountpoint, unsigned read_ahead_kb, unsigned max_ratio);

#endif /* BIGFILEFS_FS_BDI_H */
