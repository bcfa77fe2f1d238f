/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — unit tests of the errno boundary (errors.h). */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>

#include "fs/errors.h"

Test(errors, each_kind_keeps_its_documented_errnos_and_makes_the_rest_eio)
{
    cr_expect_eq(bf_errno_data(0), 0);
    cr_expect_eq(bf_errno_data(-EIO), EIO);
    cr_expect_eq(bf_errno_data(-ENOENT), EIO, "a file gone under an open fd");
    cr_expect_eq(bf_errno_data(-ENOSPC), EIO, "a backend error");
    cr_expect_eq(bf_errno_data(-EPROTO), EIO, "a corrupt database");
    cr_expect_eq(bf_errno_data(-EFBIG), EFBIG);
    cr_expect_eq(bf_errno_data(-ENXIO), ENXIO);
    cr_expect_eq(bf_errno_data(-ENOMEM), ENOMEM);
    cr_expect_eq(bf_errno_write(-ENOSPC), ENOSPC, "the staging area is full");
    cr_expect_eq(bf_errno_write(-EDQUOT), EDQUOT);
    cr_expect_eq(bf_errno_write(-EIO), EIO);
    cr_expect_eq(bf_errno_write(-ENOENT), EIO, "a file gone under an open fd");
    cr_expect_eq(bf_errno_write(-EPROTO), EIO, "a corrupt database");
    cr_expect_eq(bf_errno_write(-EFBIG), EFBIG);
    cr_expect_eq(bf_errno_ns(-ENOENT), ENOENT);
    cr_expect_eq(bf_errno_ns(-EEXIST), EEXIST);
    cr_expect_eq(bf_errno_ns(-ENOSPC), ENOSPC);
    cr_expect_eq(bf_errno_ns(-EPROTO), EIO);
    cr_expect_eq(bf_errno_ns(-ECONNRESET), EIO);
    cr_expect_eq(bf_errno_ioctl(-EBUSY), EBUSY);
    cr_expect_eq(bf_errno_ioctl(-EAGAIN), EAGAIN);
    cr_expect_eq(bf_errno_ioctl(-EFAULT), EFAULT);
    cr_expect_eq(bf_errno_ioctl(-ESHUTDOWN), ESHUTDOWN);
    cr_expect_eq(bf_errno_ioctl(-ENOSPC), ENOSPC, "a writeout on a full disk");
    cr_expect_eq(bf_errno_ioctl(-ESTALE), ESTALE, "a writeout refused by a conflict");
    cr_expect_eq(bf_errno_data(-ESTALE), EIO, "a load: the core falls back, never read(2)'s");
    cr_expect_eq(bf_errno_ioctl(-ENOENT), EIO, "not in ioctl_bigfile(2)");
    cr_expect_eq(bf_errno_ioctl(-EPROTO), EIO);
}
