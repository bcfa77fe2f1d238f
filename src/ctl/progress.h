/* SPDX-License-Identifier: MIT */
/* bigfilectl — the progress line of a long writeout.
 *
 * A writeout runs in one blocking ioctl. To show how far it got,
 * bfctl_progress_run() makes that call on a thread of its own while the
 * calling thread asks the daemon for the file's BIGFILE_IOC_STAT through
 * a second descriptor every PROGRESS_TICK_MS; STAT (version 3) reports the
 * blocks and bytes the running writeout stored so far and in all. Once the
 * writeout's total reaches `min_bytes`, a line
 *
 *     writeout: 120/400 blocks, 240.0 MiB/800.0 MiB, 95.1 MiB/s, ETA 0:05
 *
 * is redrawn in place on stderr; bfctl_progress_end() ends it with a
 * summary. The caller decides whether to show anything at all (a terminal,
 * no --quiet): without a display the call is made directly.
 *
 * No global state; one bfctl_progress per writeout, used by one thread.
 */
#ifndef BIGFILEFS_CTL_PROGRESS_H
#define BIGFILEFS_CTL_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* Default threshold: writeouts of fewer bytes show no progress. */
#define BFCTL_PROGRESS_MIN_DEFAULT ((uint64_t)256 << 20)

struct bfctl_progress {
    int stat_fd;        /* the file, open (read-only will do) for STAT; -1: no display */
    uint64_t min_bytes; /* show when the writeout stores at least this */
    struct timespec t0; /* when the call started */
    bool shown;         /* a progress line is on the screen */
};

/* Call run(arg) and return its result. With p->stat_fd >= 0, on a thread
 * of its own while polling STAT and drawing the progress line (a thread
 * that cannot be started: run is called directly). */
int bfctl_progress_run(struct bfctl_progress *p, int (*run)(void *arg), void *arg);

/* After bfctl_progress_run: with a display, and when the writeout
 * succeeded (err 0) storing at least min_bytes or a progress line was
 * shown, end the line with "stored BLOCKS blocks, BYTES in T s (RATE)";
 * else only clear a line that was shown. */
void bfctl_progress_end(struct bfctl_progress *p, int err, uint64_t blocks, uint64_t bytes);

#endif /* BIGFILEFS_CTL_PROGRESS_H */
