/* SPDX-License-Identifier: MIT */
/* bigfilefs daemon — extended attributes: the user.* namespace.
 *
 * A file's user.* attributes are stored with it in the database
 * (bf_db_getxattr ..., backend.h) and changed at once, like its name; they
 * are where bigfilefs.array() keeps dtype and shape, and where users keep
 * their own metadata. The limits are Linux's (the kernel enforces them
 * before us too): names of at most 255 bytes (ERANGE), values of at most
 * 64 KiB (E2BIG), a buffer too small for the answer ERANGE, size 0 asks
 * for the size. Every other namespace (security.*, system.*, trusted.*) is
 * ENOTSUP, answered here without the database: the kernel asks for
 * security.capability before many writes. The root directory has none.
 * A view file (views.h) shows its file's current attributes (they are not
 * versioned) and changes none (EROFS); a view directory has none.
 *
 * Handlers run on the request threads and call the backend directly, as
 * the namespace operations do; no lock of the daemon is held.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "fs/errors.h"
#include "fs/fs.h"

#define USER_PREFIX "user."

/* Whether name is served here: user.* with something after the prefix. */
static bool user_name(const char *name)
{
    return strncmp(name, USER_PREFIX, sizeof(USER_PREFIX) - 1) == 0 &&
           name[sizeof(USER_PREFIX) - 1] != '\0';
}

/* The file id of ino, or 0 for a directory (no attributes): the root, a
 * view directory, or a view inode the daemon no longer knows. */
static uint64_t file_id(struct bf_fs *fs, fuse_ino_t ino)
{
    if (bf_ino_is_view(ino)) {
        bf_vnode *vn = bf_views_get(fs->views, ino);
        uint64_t id = vn ? bf_vnode_id(vn) : 0;

        if (vn)
            bf_views_put(fs->views, vn);
        return id;
    }
    return ino == BF_ROOT_INO ? 0 : (uint64_t)ino - 1;
}

void bf_fs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                    size_t size, int flags)
{
    struct bf_fs *fs = fuse_req_userdata(req);
    unsigned f = 0;
    int r;

    if (bf_ino_is_view(ino)) {
        fuse_reply_err(req, EROFS);
        return;
    }
    if (!user_name(name) || !file_id(fs, ino)) {
        fuse_reply_err(req, ENOTSUP);
        return;
    }
    if (flags & ~(XATTR_CREATE | XATTR_REPLACE)) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    if (flags & XATTR_CREATE)
        f |= BF_XATTR_CREATE;
    if (flags & XATTR_REPLACE)
        f |= BF_XATTR_REPLACE;
    r = bf_db_setxattr(fs->db, file_id(fs, ino), name, value, size, f);
    fuse_reply_err(req, r < 0 ? bf_errno_xattr(r) : 0);
}

/* Answer a getxattr/listxattr whose outcome is r, len bytes of buf: the
 * size when the caller asked for it (size 0), else the bytes. */
static void reply_sized(fuse_req_t req, int r, const void *buf, size_t size, size_t len)
{
    if (r < 0)
        fuse_reply_err(req, bf_errno_xattr(r));
    else if (size == 0)
        fuse_reply_xattr(req, len);
    else
        fuse_reply_buf(req, buf, len);
}

void bf_fs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    struct bf_fs *fs = fuse_req_userdata(req);
    size_t len = 0;
    void *buf = NULL;
    uint64_t id;
    int r;

    if (!user_name(name)) {
        fuse_reply_err(req, ENOTSUP);
        return;
    }
    if (!(id = file_id(fs, ino))) {
        fuse_reply_err(req, ENODATA);
        return;
    }
    if (size > BF_XATTR_SIZE_MAX)
        size = BF_XATTR_SIZE_MAX; /* no value is larger */
    if (size && !(buf = malloc(size))) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    r = bf_db_getxattr(fs->db, id, name, buf, size, &len);
    reply_sized(req, r, buf, size, len);
    free(buf);
}

void bf_fs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    struct bf_fs *fs = fuse_req_userdata(req);
    uint64_t id = file_id(fs, ino);
    size_t len = 0;
    char *buf = NULL;
    int r = 0;

    if (size && !(buf = malloc(size))) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    if (id)
        r = bf_db_listxattr(fs->db, id, buf, size, &len);
    reply_sized(req, r, buf, size, len);
    free(buf);
}

void bf_fs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    struct bf_fs *fs = fuse_req_userdata(req);
    int r;

    if (bf_ino_is_view(ino)) {
        fuse_reply_err(req, EROFS);
        return;
    }
    if (!user_name(name)) {
        fuse_reply_err(req, ENOTSUP);
        return;
    }
    r = file_id(fs, ino) ? bf_db_removexattr(fs->db, file_id(fs, ino), name) : -ENODATA;
    fuse_reply_err(req, r < 0 ? bf_errno_xattr(r) : 0);
}
