/* bigfilefs — backends: the SQLite backend (interim: being written; the
 * dispatch in backend.c already routes paths here). */
#include <errno.h>
#include <stdio.h>

#include "backends/sqlite.h"

int bf_sqlite_open(const char *path, unsigned flags, bf_db **out, char *errbuf, size_t errlen)
{
    (void)flags;
    *out = NULL;
    if (errbuf && errlen)
        snprintf(errbuf, errlen, "%s: the SQLite backend is not in this build yet", path);
    return -ENOSYS;
}
