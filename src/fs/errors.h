/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — the errno boundary.
 *
 * The core and the backends return negative errno values that say what
 * went wrong inside (a backend's -EIO, -ENOSPC, -EPROTO for a corrupt
 * database, -ENOENT for a file gone from the database, ...). What a process
 * gets from read(2), rename(2) or ioctl(2) must instead be an errno its
 * manual page lists for that call. These functions are the one place where
 * one becomes the other; every FUSE handler answers a core or backend error
 * through them. They take the negative internal error and return the
 * positive errno for fuse_reply_err().
 *
 * A rule, per kind of request:
 *  - data (READ, WRITE, LSEEK): a failing backend is EIO — read(2) fails
 *    with EIO, a mapped access gets SIGBUS — and so is a file gone from the
 *    database under an open descriptor (ENOENT means nothing to read(2));
 *    only EINVAL, EFBIG, ENXIO (SEEK_DATA/SEEK_HOLE past the data), ENOMEM
 *    and EROFS keep their meaning. A WRITE (bf_errno_write) also keeps
 *    ENOSPC and EDQUOT: the staging area of blocks spilled past the dirty
 *    budget is full (fileh.h, "Spilling"); write(2) documents both, and
 *    the user can free space, write out or discard.
 *  - namespace (LOOKUP, CREATE, MKNOD, UNLINK, RENAME, SETATTR, OPEN,
 *    GETATTR, OPENDIR): the errors those calls document keep their meaning
 *    (ENOENT, EEXIST, ENAMETOOLONG, EINVAL, EPERM, EACCES, EROFS, ENOTDIR,
 *    EISDIR, ENOTEMPTY, EBUSY, EFBIG, ENOSPC, EDQUOT, ENOMEM); anything else
 *    (a failing or corrupt database) is EIO.
 *  - ioctl (<bigfile/ioctl.h>): the errors ioctl_bigfile(2) lists keep
 *    their meaning (EINVAL, EBUSY, EAGAIN, EBADF, EROFS, EFAULT, ENOTTY,
 *    ENOTEMPTY, ENOSPC, EDQUOT, ENOMEM, ESHUTDOWN, ESTALE: a writeout
 *    refused because another mount committed what its changes are based
 *    on, and EPERM: HISTORY's SET_KEEP or GC by a user other than the
 *    mount's owner or root); anything else — a failing backend, a file gone from the
 *    database, a kernel notification that failed (kernel.h, D5) — is EIO.
 *  - extended attributes (GETXATTR, SETXATTR, LISTXATTR, REMOVEXATTR):
 *    ENODATA, ERANGE, E2BIG, EEXIST, ENOTSUP, EINVAL, EROFS, ENOENT,
 *    ENOSPC, EDQUOT and ENOMEM keep their meaning, as getxattr(2) and
 *    setxattr(2) document them; anything else is EIO.
 * err must be negative; 0 is not an error and is returned as 0.
 *
 * No state, any thread.
 */
#ifndef BIGFILEFS_FS_ERRORS_H
#define BIGFILEFS_FS_ERRORS_H

int bf_errno_data(int err);
int bf_errno_write(int err);
int bf_errno_ns(int err);
int bf_errno_ioctl(int err);
int bf_errno_xattr(int err);

#endif /* BIGFILEFS_FS_ERRORS_H */
