/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — the errno boundary (see errors.h). */
#include "config.h"

#include <errno.h>
#include <stddef.h>

#include "fs/errors.h"

/* -err if it is one of the n errnos in keep, else EIO. */
static int keep_or_eio(int err, const int *keep, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (-err == keep[i])
            return -err;
    return err == 0 ? 0 : EIO;
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

int bf_errno_data(int err)
{
    static const int keep[] = { EINVAL, EFBIG, ENXIO, ENOMEM, EROFS };

    return keep_or_eio(err, keep, N(keep));
}

int bf_errno_write(int err)
{
    static const int keep[] = { EINVAL, EFBIG, ENXIO, ENOMEM, EROFS, ENOSPC, EDQUOT };

    return keep_or_eio(err, keep, N(keep));
}

int bf_errno_ns(int err)
{
    static const int keep[] = { ENOENT, EEXIST, ENAMETOOLONG, EINVAL, EPERM,
                                EACCES, EROFS,  ENOTDIR,      EISDIR, ENOTEMPTY,
                                EBUSY,  EFBIG,  ENOSPC,       EDQUOT, ENOMEM };

    return keep_or_eio(err, keep, N(keep));
}

int bf_errno_xattr(int err)
{
    static const int keep[] = { ENODATA, ERANGE, E2BIG,  EEXIST, ENOTSUP, EINVAL,
                                EROFS,   ENOENT, ENOSPC, EDQUOT, ENOMEM };

    return keep_or_eio(err, keep, N(keep));
}

int bf_errno_ioctl(int err)
{
    static const int keep[] = { EINVAL,    EBUSY,  EAGAIN, EBADF,  EROFS,     EFAULT, ENOTTY,
                                ENOTEMPTY, ENOSPC, EDQUOT, ENOMEM, ESHUTDOWN, ESTALE, EPERM };

    return keep_or_eio(err, keep, N(keep));
}
