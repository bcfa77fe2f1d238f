/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — bdi tuning (see bdi.h). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "fs/bdi.h"
#include "fs/log.h"

/* Write `value` to /sys/class/bdi/MAJ:MIN/knob. Returns 0 or -errno. */
static int bdi_write(unsigned maj, unsigned min, const char *knob, unsigned value)
{
    char path[128], buf[32];
    int fd, len, r = 0;

    snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/%s", maj, min, knob);
    len = snprintf(buf, sizeof(buf), "%u\n", value);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (write(fd, buf, (size_t)len) != len)
        r = -errno;
    close(fd);
    return r;
}

int bf_bdi_tune(const char *mountpoint, unsigned read_ahead_kb, unsigned max_ratio)
{
    struct stat st;
    unsigned maj, min;
    int r;

    if (stat(mountpoint, &st) < 0) {
        r = -errno;
        bf_warn("cannot stat %s to tune readahead: %s", mountpoint, strerror(-r));
        return r;
    }
    maj = major(st.st_dev);
    min = minor(st.st_dev);
    r = bdi_write(maj, min, "read_ahead_kb", read_ahead_kb);
    if (r < 0) {
        bf_warn("cannot set read_ahead_kb of bdi %u:%u to %u: %s (reads stay at the kernel's "
                "default readahead)",
                maj, min, read_ahead_kb, strerror(-r));
        return r;
    }
    r = bdi_write(maj, min, "max_ratio", max_ratio);
    if (r < 0) {
        bf_warn("cannot set max_ratio of bdi %u:%u to %u: %s (writers are throttled early)", maj,
                min, max_ratio, strerror(-r));
        return r;
    }
    bf_debug("bdi %u:%u: read_ahead_kb=%u max_ratio=%u", maj, min, read_ahead_kb, max_ratio);
    return 0;
}
