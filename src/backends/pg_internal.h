/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: what the PostgreSQL engine's files share (private
 * to pg*.c).
 *
 *   pg_conn.c      connections and their deadlines: connecting, the one
 *                  wait of every libpq call, prepared statements, binary
 *                  parameters and results, pipelines, errors, the reader
 *                  pool, the conninfo's redaction;
 *   pg_sql.c       every statement the engine prepares, by connection;
 *   pg_schema.c    looking at a database before using it, refusing it or
 *                  creating the schema;
 *   pg.c           the content operations, the commit section, namespace
 *                  commits, open and close;
 *   pg_session.c   the session's locks and liveness, holds and purges,
 *                  the watcher's connection and reads, the housekeeping;
 *   pg_xattr.c     extended attributes, and their table;
 *   pg_history.c   point-in-time views: file states, pins, retention,
 *                  reading at a serial, a file's log, the history's steps
 *                  of the housekeeping.
 *
 * The schema and the rules are written at the top of pg_schema.c and pg.c;
 * docs/design/PG-ENGINE.md has the reasons and the measurements.
 *
 * Deadlines: a connection of each kind runs with the server's
 * statement_timeout of its kind (PG_*_TIMEOUT_S); the client waits that
 * long plus PG_CLIENT_MARGIN_S for any result (poll(2) on the socket),
 * then declares the connection broken and closes it. Connecting is bounded
 * by the conninfo's connect_timeout (default PG_CONNECT_TIMEOUT_S).
 *
 * Locks of the engine, in the order they are taken: wlock (the writer) and
 * vlock (the watcher's connection) never nest; hlock (the held files and
 * the pinned serials), plock (the reader pool) and elock (the reconnect
 * count) are leaves.
 */
#ifndef BIGFILEFS_BACKENDS_PG_INTERNAL_H
#define BIGFILEFS_BACKENDS_PG_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "backends/engine.h"
#include "backends/pg.h"

/* Advisory locks, in the two-key form (PG_CLASS, what): */
#define PG_CLASS 1111883776      /* 0x42460000, "BF" */
#define PG_CLASS_LIVE 1111883777 /* (PG_CLASS_LIVE, session id): that session's liveness */
#define PG_LOCK_SCHEMA 1         /* creating the schema */
#define PG_LOCK_MODE 2           /* the mount mode: exclusive, or shared */
#define PG_LOCK_TRIM 3           /* one session's housekeeping at a time */

#define PG_CONNECT_TIMEOUT_S 10
#define PG_READER_TIMEOUT_S 30
#define PG_WRITER_TIMEOUT_S 60
#define PG_WATCHER_TIMEOUT_S 30
#define PG_CLIENT_MARGIN_S 5
#define PG_SERVER_MIN 130000 /* PostgreSQL 13 */

/* The kinds of connection; a statement is prepared on the kinds it is for. */
enum pgc_kind {
    PGC_READER,
    PGC_WRITER,
    PGC_WATCHER,
};

#define PGK_R (1u << PGC_READER)
#define PGK_W (1u << PGC_WRITER)
#define PGK_V (1u << PGC_WATCHER)
/* ... and only when the database has the xattrs table (pg_db.xattrs): a
 * read-only session on a database no read-write one opened since the
 * table came has none, and must not fail to prepare its other statements. */
#define PGK_X (1u << 3)

/* The xattrs table (pg_xattr.c): in the schema, and created if absent. */
#define PG_XATTRS_TABLE                                            \
    "bigfilefs.xattrs (file bigint NOT NULL, name bytea NOT NULL," \
    " value bytea NOT NULL, PRIMARY KEY (file, name))"

/* The statements (pg_sql.c). Parameter types: one letter each, i int8,
 * I int8[], b bool, B bytea, t text. */
enum pg_stmt_id {
    /* transactions, on the writer and the watcher's connection */
    PS_BEGIN,
    PS_COMMIT,
    PS_ROLLBACK,
    /* readers */
    PS_LOAD,
    PS_BYNAME,
    PS_BYID,
    PS_BYID_SERIAL,
    PS_LIST,
    PS_NEXTBLK,
    PS_NBLOCKS,
    PS_SERIAL,
    /* the writer: uploads and the commit section */
    PS_SYNC_ON,
    PS_NOTIFY,
    PS_UPLOAD,
    PS_GIVEUP,
    PS_LOCK,
    PS_STATE,
    PS_CUR,
    PS_CUR_FROM,
    PS_ADDVERSIONS,
    PS_LINK,
    PS_SETWRITE,
    PS_LOG,
    PS_ALONE_DEL,
    PS_COUNTER_SHARE,
    PS_INDOUBT,
    /* the writer: namespace commits, holds */
    PS_NEXTID,
    PS_WBYNAME,
    PS_EXISTS,
    PS_INSERT,
    PS_SETNAME,
    PS_SETATTR,
    PS_SETBLK,
    PS_LOCKFILE,
    PS_HASBLK,
    PS_HELD_OTHERS,
    PS_ROWLOCK,
    PS_ROW_SERIAL,
    PS_HOLD,
    PS_UNHOLD,
    PS_NAMELESS_LOCK,
    PS_PURGE,
    /* extended attributes: readers, the writer */
    PS_XA_GET,
    PS_XA_LIST,
    PS_XA_SET,
    PS_XA_REPLACE,
    PS_XA_REMOVE,
    /* history (pg_history.c): readers, the writer, the watcher's */
    PS_HISTORY,
    PS_STATE_AT,
    PS_BYNAME_AT,
    PS_LIST_AT,
    PS_FILELOG,
    PS_STATE_W,
    PS_KEEP,
    PS_FROM_SHARE,
    PS_PIN,
    PS_UNPIN,
    PS_FROM_LOCK,
    PS_ADVANCE,
    PS_STATES_TRIM,
    PS_UNPIN_ALL,
    /* the watcher's connection: the session */
    PS_NEXTSESSION,
    PS_LOCK_LIVE,
    PS_LOCK_MODE_EX,
    PS_LOCK_MODE_SH,
    PS_LISTEN,
    PS_SESSION_ADD,
    PS_SESSION_READD,
    PS_SESSION_SEEN,
    PS_ORPHANS,
    PS_UNHOLD_ALL,
    PS_SESSION_DEL,
    PS_REHOLD,
    PS_REPIN,
    PS_LOGREAD,
    /* the watcher's connection: the housekeeping */
    PS_DEAD,
    PS_TRIM_STATE,
    PS_TRIMLOCK_TRY,
    PS_TRIMLOCK,
    PS_TRIMUNLOCK,
    PS_GC_ROWS,
    PS_GC_DEL,
    PS_GC_MARKED,
    PS_MARK,
    PS_LOG_TRIM,
    PS_NAMELESS,
    PS_GARBAGE,
    PS_NSTMT
};

struct pg_stmt {
    const char *sql;
    const char *types; /* one letter a parameter (above) */
    unsigned kinds;    /* PGK_* */
};

extern const struct pg_stmt pg_stmts[PS_NSTMT];

/* A connection: NULL when closed (it is opened at its next use). Used by
 * one thread at a time, under the lock of its owner (wlock, vlock, or the
 * pool's busy flag). */
struct pgc {
    PGconn *c;
    enum pgc_kind kind;
};

struct pg_reader {
    struct pgc c;
    bool busy;
};

/* Parameters of one statement, binary. */
#define PGP_MAX 12
struct pgp {
    int n;
    const char *v[PGP_MAX];
    int len[PGP_MAX];
    int fmt[PGP_MAX];
    unsigned char num[PGP_MAX][8];
};

/* One statement of a pipeline, and its result (NULL when it was not run). */
struct pgq {
    int stmt;
    const struct pgp *p;
    PGresult *res;
};

struct pg_db {
    bf_db base;
    char *label;               /* "pg:" and the conninfo without its password: for messages */
    const char **keys, **vals; /* the connection parameters: our defaults, then dbname=conninfo */
    char *conninfo;            /* the user's (never logged) */
    int connect_timeout_s;
    struct bf_pg_options popt;
    bool xattrs; /* the database has the xattrs table (set at open, then constant) */

    /* the writer (NULL .c and unused when read-only) */
    pthread_mutex_t wlock;
    struct pgc w;
    int64_t *giveup; /* uploads to give up at the writer's next use (wlock) */
    size_t ngiveup, capgiveup;

    /* the reader pool */
    pthread_mutex_t plock;
    pthread_cond_t pcond;
    struct pg_reader rd[BF_PG_READERS_MAX];
    int nrd;

    /* pg_session.c: the watcher's connection and the session */
    pthread_mutex_t vlock;
    struct pgc v;
    int epfd;                  /* the watcher waits on it: v's socket and notefd */
    int notefd;                /* eventfd: a notification came in while v was busy */
    int vsock;                 /* v's socket in epfd (-1: none) */
    bool note;                 /* a notification is waiting for changed() (vlock) */
    int64_t last_read_ns;      /* the last log_read (vlock): the timer fallback */
    int64_t retry_at_ns;       /* when v may be opened again (vlock) */
    int64_t backoff_ns;        /* the next wait before reopening v (vlock) */
    bool catch_up;             /* v was opened again: look at the log (vlock) */
    uint64_t applied_recorded; /* the applied serial in our sessions row (vlock) */
    bool fenced;               /* atomic: writes refused (the mount-mode lock was lost) */
    struct bf_counter reconnects;

    pthread_mutex_t hlock; /* the files the session holds, to hold again (re-registration) */
    uint64_t *held;
    size_t nheld, capheld;
    uint64_t *pinned; /* ... and the serials its views pin (hlock) */
    size_t npinned, cappinned;
};

static inline struct pg_db *PG(bf_db *db)
{
    return (struct pg_db *)db;
}

/* ---- pg_conn.c --------------------------------------------------------------- */

/* Parameters: append one. The bytes of pgp_bytes and pgp_text are not
 * copied (they must live until the statement is sent). */
void pgp_i64(struct pgp *p, int64_t v);
void pgp_u64(struct pgp *p, uint64_t v); /* > INT64_MAX: INT64_MAX */
void pgp_bool(struct pgp *p, bool v);
void pgp_null(struct pgp *p);
void pgp_bytes(struct pgp *p, const void *b, size_t len);
void pgp_text(struct pgp *p, const char *s);

/* An int8[] in the binary array format, of n values (malloc'd, *len bytes;
 * NULL when out of memory). */
char *pg_array(const int64_t *v, size_t n, int *len);

/* Result values (binary): an integer column of any width (NULL: 0), a bool,
 * whether a value is NULL. */
int64_t pgr_i64(const PGresult *r, int row, int col);
bool pgr_bool(const PGresult *r, int row, int col);
bool pgr_null(const PGresult *r, int row, int col);

/* Open connection c (of its kind) now: connect within the connect timeout,
 * set the session's settings, prepare the kind's statements. On failure c
 * stays closed and, with errbuf, errbuf says why. */
int pgc_open(struct pg_db *d, struct pgc *c, char *errbuf, size_t errlen);

/* pgc_open, with the statements prepared only with `prepare` (a
 * connection that looks at a database before its schema exists), and
 * pgc_prepare to prepare them later (on failure c is closed). */
int pgc_open_ex(struct pg_db *d, struct pgc *c, bool prepare, char *errbuf, size_t errlen);
int pgc_prepare(struct pg_db *d, struct pgc *c, char *errbuf, size_t errlen);

/* Open c (a reader or the writer) if it is closed or found broken (the
 * server ended it while it was idle: a restart, pg_terminate_backend). */
int pgc_ensure(struct pg_db *d, struct pgc *c);

void pgc_close(struct pgc *c);

/* Run statement `stmt` with parameters p (NULL: none) on c and wait for
 * its result. *res (if not NULL) gets it (the caller PQclear()s it). On
 * failure the error is logged with `what` (but for an expected one:
 * -EEXIST), and a broken connection is closed. */
int pgc_run(struct pg_db *d, struct pgc *c, int stmt, const struct pgp *p, PGresult **res,
            const char *what);

/* Run n statements in one pipeline (one round trip). Each q[i].res gets its
 * result, NULL from the first failure on (the server skips the rest). The
 * caller PQclear()s them (pgq_clear). Returns the first failure. *lost (if
 * not NULL) says that the connection broke (the server may or may not have
 * run the statements). */
int pgc_pipeline(struct pg_db *d, struct pgc *c, struct pgq *q, int n, const char *what,
                 bool *lost);
void pgq_clear(struct pgq *q, int n);

/* Run one SQL text with the simple protocol (several statements allowed),
 * no parameters; its last result to *res if not NULL. For the schema. */
int pgc_simple(struct pg_db *d, struct pgc *c, const char *sql, PGresult **res, const char *what);

/* The errno for a failed result (its SQLSTATE) or a broken connection. */
int pg_errno(const PGresult *r, const PGconn *c);

/* A reader connection from the pool (opened if needed), and back. */
int pg_reader_get(struct pg_db *d, struct pg_reader **out);
void pg_reader_put(struct pg_db *d, struct pg_reader *r);

/* Set up d's connection parameters from conninfo (our defaults first, then
 * the user's, which override them). -EINVAL (errbuf says why, without the
 * conninfo), -ENOMEM. */
int pg_conn_setup(struct pg_db *d, const char *conninfo, char *errbuf, size_t errlen);
void pg_conn_free(struct pg_db *d);

/* ---- pg.c ---------------------------------------------------------------------- */

/* The writer, for one short transaction or upload: take wlock and make
 * sure the connection is open (give up what earlier failures left to give
 * up); -EIO (then unlocked). pg_w_end releases it. */
int pg_w_begin(struct pg_db *d);
void pg_w_end(struct pg_db *d);

/* Run reader statement `stmt` with p on a reader of the pool; *res gets
 * the result (NULL when no reader could be had: the caller PQclear()s it
 * in any case). */
int pg_reader_run(struct pg_db *d, int stmt, const struct pgp *p, PGresult **res, const char *what);

/* ---- pg_schema.c ------------------------------------------------------------- */

/* Look at d's database through c (the watcher's connection, open) and make
 * sure it holds our schema: create it in an empty database (with
 * BF_DB_CREATE, never read-only), refuse anything else, changing nothing;
 * then the xattrs table (pg_xattr_table). errbuf says why. */
int pg_schema_prepare(struct pg_db *d, struct pgc *c, unsigned flags, char *errbuf, size_t errlen);

/* ---- pg_xattr.c ---------------------------------------------------------------- */

/* Through c (the watcher's connection, open, none of our statements
 * prepared) on a database with our schema of the current version: set
 * d->xattrs, creating the table first when it is absent and the session
 * is read-write. errbuf says why it could not. */
int pg_xattr_table(struct pg_db *d, struct pgc *c, unsigned flags, char *errbuf, size_t errlen);

/* The engine operations of the same names (engine.h). */
int pg_getxattr(bf_db *db, uint64_t id, const char *name, void **value, size_t *len);
int pg_listxattr(bf_db *db, uint64_t id, char **names, size_t *len);
int pg_setxattr(bf_db *db, uint64_t id, const char *name, const void *value, size_t len,
                unsigned flags);
int pg_removexattr(bf_db *db, uint64_t id, const char *name);

/* ---- pg_history.c -------------------------------------------------------------- */

/* The engine operations of the same names (engine.h). */
int pg_history(bf_db *db, struct bf_history *out);
int pg_history_keep(bf_db *db, int64_t keep_ns);
int pg_pin(bf_db *db, uint64_t serial, bool on);
int pg_list_at(bf_db *db, uint64_t serial, int (*cb)(void *arg, const struct bf_fileinfo *fi),
               void *arg);
int pg_lookup_at(bf_db *db, uint64_t serial, const char *name, struct bf_fileinfo *out);
int pg_getinfo_at(bf_db *db, uint64_t serial, uint64_t id, struct bf_fileinfo *out);
int pg_file_log(bf_db *db, uint64_t id, uint64_t before, size_t max,
                int (*cb)(void *arg, const struct bf_log_entry *e), void *arg);

/* The housekeeping's history steps, on the watcher's connection (vlock
 * held, the trim lock taken): advance history_from (*from = its value
 * after: from' of docs/HISTORY.md section 3), in a transaction of its own
 * that locks it and then reads the pins; and trim the file states older
 * than each file's newest state <= from. */
int pg_history_advance(struct pg_db *d, struct pgc *c, int64_t *from);
int pg_history_trim_states(struct pg_db *d, struct pgc *c, int64_t from);

/* ---- pg_session.c ------------------------------------------------------------ */

/* Take the mount-mode lock on the watcher's connection, and for a
 * read-write session register it; db->session, db->start_serial. */
int pg_session_start(struct pg_db *d, char *errbuf, size_t errlen);

/* End the session (close): its uploads become garbage, its holds and row
 * go; close the watcher's connection (which releases its locks). */
void pg_session_end(struct pg_db *d);

/* The watcher's descriptor: set it up (-errno) and free it. */
int pg_watch_init(struct pg_db *d);
void pg_watch_fini(struct pg_db *d);

/* The held files (for holding them again after a re-registration). */
int pg_held_add(struct pg_db *d, uint64_t id);
void pg_held_del(struct pg_db *d, uint64_t id);

/* The serials the session pins (to pin them again likewise). */
int pg_pinned_add(struct pg_db *d, uint64_t serial);
void pg_pinned_del(struct pg_db *d, uint64_t serial);

/* The engine operations of the same names (engine.h). */
int pg_changed(bf_db *db, bool *yes);
int pg_change_fd(bf_db *db);
int pg_log_read(bf_db *db, uint64_t after, size_t max,
                int (*fn)(void *arg, const struct bf_commit_rec *rec), void *arg, uint64_t *current,
                uint64_t *trimmed);
int pg_trim(bf_db *db, uint64_t applied, bool all);
int pg_release(bf_db *db, uint64_t id);
int pg_purge(bf_db *db, uint64_t id);

/* file_open's part for the session's first handle of file id: hold the
 * file, atomically with reading its row (*fi) and the serial (*serial). */
int pg_hold_open(struct pg_db *d, uint64_t id, struct bf_fileinfo *fi, uint64_t *serial);

/* Decode a files row (id, name, blksize, size, mode, uid, gid, mtime_ns,
 * ctime_ns from column `col`) into fi. -EIO (logged) for a name that cannot
 * be passed on. */
int pg_row_info(struct pg_db *d, const PGresult *r, int row, int col, struct bf_fileinfo *fi);

#endif /* BIGFILEFS_BACKENDS_PG_INTERNAL_H */
