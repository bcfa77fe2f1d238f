/* SPDX-License-Identifier: MIT */
/* bigfilefs — backends: every statement of the PostgreSQL engine, with its
 * parameters' types and the connections it is prepared on (pg_internal.h).
 * The schema they run on is at the top of pg_schema.c; the order of the
 * commit section's statements, and why it is correct, at the top of pg.c.
 *
 * Every object is named with its schema (the connections' search_path is
 * pg_catalog, pg_temp). Integer parameters are int8, sent binary.
 */
#include "backends/pg_internal.h"

#define PG_STR_(x) #x
#define PG_STR(x) PG_STR_(x)

/* The columns of a files row, as pg_row_info decodes them. */
#define FILE_COLS "id, name, blksize, size, mode, uid, gid, mtime_ns, ctime_ns"

/* Whether session row `s` is live, with the dead-grace in ms as parameter
 * `g`: its liveness lock is held, or it showed a sign of life within the
 * grace, or the server itself started within the grace (a restart drops
 * every lock: the sessions need a moment to take theirs again). */
#define LIVE(s, g)                                                                       \
    "(" s ".seen >= now() - " g " * interval '1 millisecond'"                            \
    " OR pg_postmaster_start_time() >= now() - " g " * interval '1 millisecond'"         \
    " OR EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"   \
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())" \
    " AND l.classid = " PG_STR(PG_CLASS_LIVE) " AND l.objid = " s ".id AND l.objsubid = 2))"

/* The newest version of each block of file $1 from block $2 on. */
#define CURRENT_FROM                                                                 \
    "SELECT DISTINCT ON (blk) blk, serial, session, content FROM bigfilefs.blockmap" \
    " WHERE file = $1 AND blk >= $2 ORDER BY blk, serial DESC"

/* Versions deleted by a statement's CTE `d` (RETURNING content): their
 * contents become garbage for the housekeeping. */
#define TO_GARBAGE                                     \
    "INSERT INTO bigfilefs.uploads (content, session)" \
    " SELECT content, 0 FROM d WHERE content IS NOT NULL ON CONFLICT DO NOTHING"

/* Whether serial `p` is in the kept history: from <= p <= the serial. */
#define KEPT(p)                                                                      \
    "(" p " >= (SELECT value FROM bigfilefs.meta WHERE key = 'history_from') AND " p \
    " <= (SELECT serial FROM bigfilefs.counter))"

/* The columns of a file_states row as pg_row_info decodes them (ctime: as
 * mtime, which is all a state keeps). */
#define STATE_COLS "file, name, blksize, size, mode, uid, gid, mtime_ns, mtime_ns"

const struct pg_stmt pg_stmts[PS_NSTMT] = {
    [PS_BEGIN] = { "BEGIN", "", PGK_W | PGK_V },
    [PS_COMMIT] = { "COMMIT", "", PGK_W | PGK_V },
    [PS_ROLLBACK] = { "ROLLBACK", "", PGK_W | PGK_V },

    /* ---- readers ---- */
    /* The newest version of ($1, $2) with serial <= $3, and 'collected'
     * (one statement: one snapshot). No version: serial NULL. A hole:
     * content NULL. */
    [PS_LOAD] = { "SELECT v.serial, v.content, v.data, g.value FROM bigfilefs.meta g"
                  " LEFT JOIN LATERAL (SELECT m.serial, m.content, c.data"
                  " FROM bigfilefs.blockmap m LEFT JOIN bigfilefs.contents c ON c.id = m.content"
                  " WHERE m.file = $1 AND m.blk = $2 AND m.serial <= $3"
                  " ORDER BY m.serial DESC LIMIT 1) v ON true WHERE g.key = 'collected'",
                  "iii", PGK_R },
    [PS_BYNAME] = { "SELECT " FILE_COLS " FROM bigfilefs.files WHERE name = $1", "t", PGK_R },
    [PS_BYID] = { "SELECT " FILE_COLS " FROM bigfilefs.files WHERE id = $1", "i", PGK_R },
    [PS_BYID_SERIAL] = { "SELECT " FILE_COLS ", (SELECT serial FROM bigfilefs.counter)"
                         " FROM bigfilefs.files WHERE id = $1",
                         "i", PGK_R },
    [PS_LIST] = { "SELECT " FILE_COLS " FROM bigfilefs.files WHERE name IS NOT NULL ORDER BY name",
                  "", PGK_R },
    [PS_NEXTBLK] = { "SELECT blk FROM (" CURRENT_FROM ") c WHERE content IS NOT NULL LIMIT 1", "ii",
                     PGK_R },
    [PS_NBLOCKS] = { "SELECT count(*) FROM (SELECT DISTINCT ON (blk) content"
                     " FROM bigfilefs.blockmap WHERE file = $1 ORDER BY blk, serial DESC) c"
                     " WHERE content IS NOT NULL",
                     "i", PGK_R },
    [PS_SERIAL] = { "SELECT serial FROM bigfilefs.counter", "", PGK_R | PGK_W | PGK_V },

    /* ---- the writer: uploads and the commit section ---- */
    [PS_SYNC_ON] = { "SET LOCAL synchronous_commit = on", "", PGK_W },
    [PS_NOTIFY] = { "NOTIFY bigfilefs", "", PGK_W },
    /* An upload: a content row owned by session $2 until linked. */
    [PS_UPLOAD] = { "WITH c AS (INSERT INTO bigfilefs.contents (id, data)"
                    " VALUES (nextval('bigfilefs.content_ids'), $1) RETURNING id)"
                    " INSERT INTO bigfilefs.uploads (content, session) SELECT id, $2 FROM c"
                    " RETURNING content",
                    "Bi", PGK_W },
    /* Uploads of session $2 no longer wanted: garbage. */
    [PS_GIVEUP] = { "UPDATE bigfilefs.uploads SET session = 0"
                    " WHERE content = ANY($1) AND session = $2",
                    "Ii", PGK_W },
    /* (1) The serial: the counter row's lock orders the commits. */
    [PS_LOCK] = { "UPDATE bigfilefs.counter SET serial = serial + 1 RETURNING serial", "", PGK_W },
    /* (2) The file's state, and whether session $2 is the only one. */
    [PS_STATE] = { "SELECT size, size_serial, size_session, content_serial, content_session,"
                   " NOT EXISTS (SELECT 1 FROM bigfilefs.sessions WHERE id <> $2)"
                   " FROM bigfilefs.files WHERE id = $1",
                   "ii", PGK_W },
    /* (3) The current versions of the stored blocks $2 (sorted) of file $1. */
    [PS_CUR] = { "SELECT u.blk, c.serial, c.session, c.content IS NOT NULL"
                 " FROM unnest($2::int8[]) WITH ORDINALITY AS u(blk, i)"
                 " JOIN LATERAL (SELECT m.serial, m.session, m.content FROM bigfilefs.blockmap m"
                 " WHERE m.file = $1 AND m.blk = u.blk ORDER BY m.serial DESC LIMIT 1) c ON true"
                 " ORDER BY u.i",
                 "iI", PGK_W },
    /* (4) The current versions of the blocks a truncate to $2 drops. */
    [PS_CUR_FROM] = { "SELECT blk, serial, session, content IS NOT NULL FROM (" CURRENT_FROM ") c",
                      "ii", PGK_W },
    /* (5) The new versions: blocks $2 at serial $3 by session $4, contents
     * $5 (0: a hole). */
    [PS_ADDVERSIONS] = { "INSERT INTO bigfilefs.blockmap (file, blk, serial, session, content)"
                         " SELECT $1, u.blk, $3, $4, nullif(u.content, 0)"
                         " FROM unnest($2::int8[], $5::int8[]) AS u(blk, content)",
                         "iIiiI", PGK_W },
    /* (6) The uploads $1 of session $2 are linked: no longer uploads. All
     * $3 of them must be there (else the session was taken for dead, or a
     * server crash lost them): an error aborts the commit. */
    [PS_LINK] = { "WITH d AS (DELETE FROM bigfilefs.uploads WHERE content = ANY($1) AND session = "
                  "$2"
                  " RETURNING 1) SELECT CASE WHEN count(*) = $3 THEN count(*) ELSE"
                  " ('bigfilefs: ' || ($3 - count(*)) || ' of the uploads are gone')::int8 END"
                  " FROM d",
                  "Iii", PGK_W },
    /* (7) The file's row: size $2 (NULL: unchanged), whether the size
     * changed ($3), serial $4, session $5, time $6. */
    [PS_SETWRITE] = { "UPDATE bigfilefs.files SET size = coalesce($2, size),"
                      " size_serial = CASE WHEN $3 THEN $4 ELSE size_serial END,"
                      " size_session = CASE WHEN $3 THEN $5 ELSE size_session END,"
                      " content_serial = $4, content_session = $5, meta_serial = $4,"
                      " mtime_ns = $6, ctime_ns = $6 WHERE id = $1",
                      "iibiii", PGK_W },
    /* (8) The commit-log row. */
    [PS_LOG] = { "INSERT INTO bigfilefs.commit_log (serial, session, kind, file, file2, time_ns,"
                 " size, trunc, blocks, name, name2, flags)"
                 " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                 "iiiiiiiiBtti", PGK_W },
    /* Alone on the database, after commit $3 of file $1, and keeping no
     * history (retention 0, no pin; history_from locked first,
     * PS_FROM_LOCK): the versions it replaced of blocks $2, and the holes
     * it made, go; their contents are garbage; 'collected' and
     * 'history_from' move to $3. */
    [PS_ALONE_DEL] = { "WITH ok AS (SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM bigfilefs.pins)"
                       " AND (SELECT value FROM bigfilefs.meta WHERE key = 'history_keep_ns') <= "
                       "0),"
                       " d AS (DELETE FROM bigfilefs.blockmap m USING unnest($2::int8[]) AS u(blk)"
                       " WHERE EXISTS (SELECT 1 FROM ok) AND m.file = $1 AND m.blk = u.blk"
                       " AND (m.serial < $3 OR (m.serial = $3 AND m.content IS NULL))"
                       " RETURNING m.content),"
                       " g AS (" TO_GARBAGE ")"
                       " UPDATE bigfilefs.meta SET value = greatest(value, $3)"
                       " WHERE key IN ('collected', 'history_from') AND EXISTS (SELECT 1 FROM ok)",
                       "iIi", PGK_W },
    /* Waits for a transaction that holds the counter row (an in-doubt
     * commit of ours whose connection broke) to end. */
    [PS_COUNTER_SHARE] = { "SELECT serial FROM bigfilefs.counter FOR SHARE", "", PGK_W | PGK_V },
    [PS_INDOUBT] = { "SELECT 1 FROM bigfilefs.commit_log WHERE serial = $1 AND session = $2", "ii",
                     PGK_W },

    /* ---- the writer: namespace commits and holds ---- */
    [PS_NEXTID] = { "SELECT nextval('bigfilefs.file_ids')", "", PGK_W },
    [PS_WBYNAME] = { "SELECT id FROM bigfilefs.files WHERE name = $1", "t", PGK_W },
    [PS_EXISTS] = { "SELECT 1 FROM bigfilefs.files WHERE id = $1", "i", PGK_W },
    [PS_INSERT] = { "INSERT INTO bigfilefs.files (id, name, blksize, size, mode, uid, gid,"
                    " mtime_ns, ctime_ns, content_serial, content_session, size_serial,"
                    " size_session, meta_serial)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10, $9, $10, $9)",
                    "itiiiiiiii", PGK_W },
    [PS_SETNAME] = { "UPDATE bigfilefs.files SET name = $2, ctime_ns = $3, meta_serial = $4"
                     " WHERE id = $1",
                     "itii", PGK_W },
    [PS_SETATTR] = { "UPDATE bigfilefs.files SET mode = coalesce($2, mode), uid = coalesce($3, "
                     "uid),"
                     " gid = coalesce($4, gid), mtime_ns = coalesce($5, mtime_ns),"
                     " ctime_ns = $6, meta_serial = $7 WHERE id = $1",
                     "iiiiiii", PGK_W },
    [PS_SETBLK] = { "UPDATE bigfilefs.files SET blksize = $2, ctime_ns = $3, meta_serial = $4"
                    " WHERE id = $1",
                    "iiii", PGK_W },
    [PS_LOCKFILE] = { "SELECT size FROM bigfilefs.files WHERE id = $1 FOR UPDATE", "i", PGK_W },
    [PS_HASBLK] = { "SELECT 1 FROM (SELECT DISTINCT ON (blk) content FROM bigfilefs.blockmap"
                    " WHERE file = $1 ORDER BY blk, serial DESC) c WHERE content IS NOT NULL LIMIT "
                    "1",
                    "i", PGK_W },
    /* Whether a live session other than $2 holds file $1 (grace $3). */
    [PS_HELD_OTHERS] = { "SELECT 1 FROM bigfilefs.holds h JOIN bigfilefs.sessions s"
                         " ON s.id = h.session WHERE h.file = $1 AND h.session <> $2"
                         " AND " LIVE("s", "$3") " LIMIT 1",
                         "iii", PGK_W },
    /* file_open with a hold: the row locked against a purge, then read
     * with the serial (in a snapshot taken after the lock), then held. */
    [PS_ROWLOCK] = { "SELECT 1 FROM bigfilefs.files WHERE id = $1 FOR SHARE", "i", PGK_W },
    [PS_ROW_SERIAL] = { "SELECT " FILE_COLS ", (SELECT serial FROM bigfilefs.counter)"
                        " FROM bigfilefs.files WHERE id = $1",
                        "i", PGK_W },
    [PS_HOLD] = { "INSERT INTO bigfilefs.holds (session, file)"
                  " SELECT $1, id FROM bigfilefs.files WHERE id = $2 ON CONFLICT DO NOTHING",
                  "ii", PGK_W },
    [PS_UNHOLD] = { "DELETE FROM bigfilefs.holds WHERE session = $1 AND file = $2", "ii", PGK_W },
    /* A purge: the nameless row locked (an open waits for it, then finds
     * it gone), then — in a snapshot taken after the lock — deleted unless
     * a live session holds it, with its versions (their contents become
     * garbage), its holds and its extended attributes. Returns the number of files deleted. */
    [PS_NAMELESS_LOCK] = { "SELECT 1 FROM bigfilefs.files WHERE id = $1 AND name IS NULL FOR "
                           "UPDATE",
                           "i", PGK_W | PGK_V },
    [PS_PURGE] = { "WITH f AS (DELETE FROM bigfilefs.files WHERE id = $1 AND name IS NULL"
                   " AND NOT EXISTS (SELECT 1 FROM bigfilefs.holds h JOIN bigfilefs.sessions s"
                   " ON s.id = h.session WHERE h.file = $1 AND " LIVE(
                       "s",
                       "$2") ")"
                             /* its name went at or before history_from: no view needs it */
                             " AND NOT EXISTS (SELECT 1 FROM bigfilefs.file_states t WHERE t.file "
                             "= $1"
                             " AND t.serial > (SELECT value FROM bigfilefs.meta WHERE key = "
                             "'history_from'))"
                             " RETURNING id),"
                             " d AS (DELETE FROM bigfilefs.blockmap WHERE file IN (SELECT id FROM "
                             "f)"
                             " RETURNING content),"
                             " g AS (" TO_GARBAGE "),"
                             " h AS (DELETE FROM bigfilefs.holds WHERE file IN (SELECT id FROM f)),"
                             " t AS (DELETE FROM bigfilefs.file_states WHERE file IN (SELECT id "
                             "FROM f)),"
                             " x AS (DELETE FROM bigfilefs.xattrs WHERE file IN (SELECT id FROM f))"
                             " SELECT count(*) FROM f",
                   "ii", PGK_W | PGK_V | PGK_X },

    /* ---- extended attributes (pg_xattr.c) ---- */
    [PS_XA_GET] = { "SELECT value FROM bigfilefs.xattrs WHERE file = $1 AND name = $2", "iB",
                    PGK_R | PGK_X },
    [PS_XA_LIST] = { "SELECT name FROM bigfilefs.xattrs WHERE file = $1 ORDER BY name", "i",
                     PGK_R | PGK_X },
    /* Attribute $2 of file $1 set to $3, unless it exists and $4 (create
     * only); whether the file exists, and whether it was set. The file's
     * row is locked against a purge (which locks it first, PS_NAMELESS_LOCK,
     * then deletes in a snapshot that sees what was set before). */
    [PS_XA_SET] = { "WITH f AS (SELECT id FROM bigfilefs.files WHERE id = $1 FOR KEY SHARE),"
                    " s AS (INSERT INTO bigfilefs.xattrs (file, name, value)"
                    " SELECT id, $2, $3 FROM f ON CONFLICT (file, name)"
                    " DO UPDATE SET value = excluded.value WHERE NOT $4 RETURNING 1)"
                    " SELECT EXISTS (SELECT 1 FROM f), EXISTS (SELECT 1 FROM s)",
                    "iBBb", PGK_W | PGK_X },
    /* Only if it exists: a row when it was replaced. */
    [PS_XA_REPLACE] = { "UPDATE bigfilefs.xattrs SET value = $3 WHERE file = $1 AND name = $2"
                        " RETURNING 1",
                        "iBB", PGK_W | PGK_X },
    [PS_XA_REMOVE] = { "DELETE FROM bigfilefs.xattrs WHERE file = $1 AND name = $2 RETURNING 1",
                       "iB", PGK_W | PGK_X },

    /* ---- history (pg_history.c) ---- */
    /* history_from, the serial, the retention, and the lowest serial a
     * live session pins (grace $1; NULL: none): one snapshot. */
    [PS_HISTORY] = { "SELECT (SELECT value FROM bigfilefs.meta WHERE key = 'history_from'),"
                     " (SELECT serial FROM bigfilefs.counter),"
                     " (SELECT value FROM bigfilefs.meta WHERE key = 'history_keep_ns'),"
                     " (SELECT min(p.serial) FROM bigfilefs.pins p JOIN bigfilefs.sessions s"
                     " ON s.id = p.session WHERE " LIVE("s", "$1") ")",
                     "i", PGK_R },
    /* Whether serial $2 is kept, and file $1's state at it (columns NULL:
     * it did not exist then). */
    [PS_STATE_AT] = { "SELECT k.ok, t." STATE_COLS " FROM (SELECT " KEPT(
                          "$2") " AS ok) k"
                                " LEFT JOIN LATERAL (SELECT * FROM bigfilefs.file_states"
                                " WHERE file = $1 AND serial <= $2 ORDER BY serial DESC LIMIT 1) t "
                                "ON k.ok",
                      "ii", PGK_R },
    /* ... the state of the file named $1 at serial $2: a state with that
     * name that is still its file's newest at $2. */
    [PS_BYNAME_AT] = { "SELECT k.ok, t." STATE_COLS " FROM (SELECT " KEPT(
                           "$2") " AS ok) k"
                                 " LEFT JOIN LATERAL (SELECT s.* FROM bigfilefs.file_states s"
                                 " WHERE s.name = $1 AND s.serial <= $2 AND NOT EXISTS (SELECT 1"
                                 " FROM bigfilefs.file_states n WHERE n.file = s.file"
                                 " AND n.serial > s.serial AND n.serial <= $2)"
                                 " ORDER BY s.serial DESC LIMIT 1) t ON k.ok",
                       "ti", PGK_R },
    /* ... the states of the files that had a name at serial $1, in name
     * order (one row of NULLs when none). */
    [PS_LIST_AT] = { "SELECT k.ok, t." STATE_COLS " FROM (SELECT " KEPT(
                         "$1") " AS ok) k"
                               " LEFT JOIN LATERAL (SELECT * FROM (SELECT DISTINCT ON (file) *"
                               " FROM bigfilefs.file_states WHERE serial <= $1 ORDER BY file, "
                               "serial DESC) c"
                               " WHERE name IS NOT NULL) t ON k.ok ORDER BY t.name",
                     "i", PGK_R },
    /* File $1's commits with a serial below $2 in the kept history, newest
     * first, at most $3, with the file's state after each. */
    [PS_FILELOG] = { "SELECT l.serial, l.kind, l.time_ns, l.file2, l.trunc, l.blocks, l.flags,"
                     " t.size, t.name FROM bigfilefs.commit_log l"
                     " LEFT JOIN bigfilefs.file_states t ON t.file = $1 AND t.serial = l.serial"
                     " WHERE (l.file = $1 OR l.file2 = $1) AND l.serial < $2"
                     " AND l.serial >= (SELECT value FROM bigfilefs.meta WHERE key = "
                     "'history_from')"
                     " ORDER BY l.serial DESC LIMIT $3",
                     "iii", PGK_R },
    /* In a commit's transaction: file $1's state after commit $2, from its
     * row. */
    [PS_STATE_W] = { "INSERT INTO bigfilefs.file_states (file, serial, name, blksize, size, mode,"
                     " uid, gid, mtime_ns) SELECT id, $2, name, blksize, size, mode, uid, gid,"
                     " mtime_ns FROM bigfilefs.files WHERE id = $1",
                     "ii", PGK_W },
    [PS_KEEP] = { "UPDATE bigfilefs.meta SET value = $1 WHERE key = 'history_keep_ns'", "i",
                  PGK_W },
    /* A pin: history_from share-locked first (an advance waits, or is
     * seen), then session $1's pin of $2 if it is kept (a row). */
    [PS_FROM_SHARE] = { "SELECT value FROM bigfilefs.meta WHERE key = 'history_from' FOR SHARE", "",
                        PGK_W },
    [PS_PIN] = { "INSERT INTO bigfilefs.pins (session, serial) SELECT $1, $2 WHERE " KEPT(
                     "$2") " ON CONFLICT (session, serial) DO UPDATE SET serial = excluded.serial"
                           " RETURNING 1",
                 "ii", PGK_W },
    [PS_UNPIN] = { "DELETE FROM bigfilefs.pins WHERE session = $1 AND serial = $2", "ii", PGK_W },
    /* history_from locked (a pin waits, or is seen by what follows); with
     * $1, only if file $1 is nameless (a purge's). */
    [PS_FROM_LOCK] = { "SELECT value FROM bigfilefs.meta WHERE key = 'history_from' AND ($1 = 0"
                       " OR EXISTS (SELECT 1 FROM bigfilefs.files WHERE id = $1 AND name IS NULL))"
                       " FOR UPDATE",
                       "i", PGK_W | PGK_V },
    /* Advance history_from (docs/HISTORY.md section 3): now $1 (ns), grace
     * $2; with $3, only if file $3 is nameless. Returns its value after. */
    [PS_ADVANCE] = { "UPDATE bigfilefs.meta m SET value = greatest(m.value, least("
                     " CASE WHEN k.value <= 0 THEN (SELECT serial FROM bigfilefs.counter)"
                     " ELSE coalesce((SELECT max(serial) FROM bigfilefs.commit_log"
                     " WHERE serial > m.value AND time_ns <= $1 - k.value), m.value) END,"
                     " coalesce((SELECT min(p.serial) FROM bigfilefs.pins p JOIN "
                     "bigfilefs.sessions s"
                     " ON s.id = p.session WHERE " LIVE(
                         "s",
                         "$2") "), 9223372036854775807)))"
                               " FROM bigfilefs.meta k WHERE m.key = 'history_from' AND k.key = "
                               "'history_keep_ns'"
                               " AND ($3 = 0 OR EXISTS (SELECT 1 FROM bigfilefs.files WHERE id = $3"
                               " AND name IS NULL)) RETURNING m.value",
                     "iii", PGK_W | PGK_V },
    /* The states older than their file's newest state <= $1 go. */
    [PS_STATES_TRIM] = { "DELETE FROM bigfilefs.file_states s WHERE s.serial < $1 AND EXISTS"
                         " (SELECT 1 FROM bigfilefs.file_states n WHERE n.file = s.file"
                         " AND n.serial > s.serial AND n.serial <= $1)",
                         "i", PGK_V },
    [PS_UNPIN_ALL] = { "DELETE FROM bigfilefs.pins WHERE session = $1", "i", PGK_V },

    /* ---- the watcher's connection: the session ---- */
    [PS_NEXTSESSION] = { "SELECT nextval('bigfilefs.session_ids')", "", PGK_V },
    [PS_LOCK_LIVE] = { "SELECT pg_try_advisory_lock(" PG_STR(PG_CLASS_LIVE) ", $1::int4)", "i",
                       PGK_V },
    [PS_LOCK_MODE_EX] = { "SELECT pg_try_advisory_lock(" PG_STR(PG_CLASS) ", " PG_STR(
                              PG_LOCK_MODE) ")",
                          "", PGK_V },
    [PS_LOCK_MODE_SH] = { "SELECT pg_try_advisory_lock_shared(" PG_STR(PG_CLASS) ", " PG_STR(
                              PG_LOCK_MODE) ")",
                          "", PGK_V },
    [PS_LISTEN] = { "LISTEN bigfilefs", "", PGK_V },
    /* Registered at the serial of the counter row, read under a share lock
     * of it: a commit in progress finishes first (so that no commit made
     * "alone" can free a version this session's start may read). */
    [PS_SESSION_ADD] = { "INSERT INTO bigfilefs.sessions (id, pid, host, started_ns, applied, "
                         "shared)"
                         " SELECT $1, $2, $3, $4, serial, $5 FROM bigfilefs.counter FOR SHARE"
                         " RETURNING applied",
                         "iitib", PGK_V },
    /* Registered again, as it was (it was taken for dead while cut off). */
    [PS_SESSION_READD] = { "INSERT INTO bigfilefs.sessions (id, pid, host, started_ns, applied, "
                           "shared)"
                           " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                           "iitiib", PGK_V },
    /* The session's sign of life and applied serial; no row: it was taken
     * for dead. */
    [PS_SESSION_SEEN] = { "UPDATE bigfilefs.sessions SET applied = greatest(applied, $2), seen = "
                          "now()"
                          " WHERE id = $1 RETURNING applied",
                          "ii", PGK_V },
    [PS_ORPHANS] = { "UPDATE bigfilefs.uploads SET session = 0 WHERE session = $1", "i", PGK_V },
    [PS_UNHOLD_ALL] = { "DELETE FROM bigfilefs.holds WHERE session = $1", "i", PGK_V },
    [PS_SESSION_DEL] = { "DELETE FROM bigfilefs.sessions WHERE id = $1", "i", PGK_V },
    [PS_REPIN] = { "INSERT INTO bigfilefs.pins (session, serial)"
                   " SELECT $1, unnest($2::int8[]) ON CONFLICT DO NOTHING",
                   "iI", PGK_V },
    [PS_REHOLD] = { "INSERT INTO bigfilefs.holds (session, file)"
                    " SELECT $1, id FROM bigfilefs.files WHERE id = ANY($2) ON CONFLICT DO NOTHING",
                    "iI", PGK_V },
    /* The log past $1 (at most $2 rows) with the serial and 'log_trimmed'
     * of the same snapshot: at least one row (log columns NULL if none). */
    [PS_LOGREAD] = { "SELECT c.serial, t.value, l.serial, l.session, l.kind, l.file, l.file2,"
                     " l.time_ns, l.size, l.trunc, l.blocks, l.name, l.name2, l.flags"
                     " FROM bigfilefs.counter c CROSS JOIN bigfilefs.meta t"
                     " LEFT JOIN LATERAL (SELECT * FROM bigfilefs.commit_log WHERE serial > $1"
                     " ORDER BY serial LIMIT $2) l ON true"
                     " WHERE t.key = 'log_trimmed' ORDER BY l.serial",
                     "ii", PGK_V },

    /* ---- the watcher's connection: the housekeeping ---- */
    [PS_DEAD] = { "SELECT s.id FROM bigfilefs.sessions s WHERE s.id <> $1 AND NOT " LIVE("s", "$2"),
                  "ii", PGK_V },
    /* serial, log_trimmed, gc_done, collected, and the lowest applied
     * serial of the other sessions (NULL: none). */
    [PS_TRIM_STATE] = { "SELECT (SELECT serial FROM bigfilefs.counter),"
                        " (SELECT value FROM bigfilefs.meta WHERE key = 'log_trimmed'),"
                        " (SELECT value FROM bigfilefs.meta WHERE key = 'gc_done'),"
                        " (SELECT value FROM bigfilefs.meta WHERE key = 'collected'),"
                        " (SELECT min(applied) FROM bigfilefs.sessions WHERE id <> $1)",
                        "i", PGK_V },
    [PS_TRIMLOCK_TRY] = { "SELECT pg_try_advisory_lock(" PG_STR(PG_CLASS) ", " PG_STR(
                              PG_LOCK_TRIM) ")",
                          "", PGK_V },
    [PS_TRIMLOCK] = { "SELECT pg_advisory_lock(" PG_STR(PG_CLASS) ", " PG_STR(PG_LOCK_TRIM) ")", "",
                      PGK_V },
    [PS_TRIMUNLOCK] = { "SELECT pg_advisory_unlock(" PG_STR(PG_CLASS) ", " PG_STR(PG_LOCK_TRIM) ")",
                        "", PGK_V },
    /* Write commits in ($1, $2], at most $3: what each changed. */
    [PS_GC_ROWS] = { "SELECT serial, file, blocks FROM bigfilefs.commit_log"
                     " WHERE serial > $1 AND serial <= $2 AND kind = 1 AND blocks IS NOT NULL"
                     " ORDER BY serial LIMIT $3",
                     "iii", PGK_V },
    /* The versions that (file, blk, serial) triplets $1, $2, $3 superseded
     * go, their contents become garbage; gc_done moves to $4, and
     * 'collected' too if a version went. */
    [PS_GC_DEL] = { "WITH d AS (DELETE FROM bigfilefs.blockmap m"
                    " USING unnest($1::int8[], $2::int8[], $3::int8[]) AS u(file, blk, serial)"
                    " WHERE m.file = u.file AND m.blk = u.blk AND m.serial < u.serial"
                    " RETURNING m.content),"
                    " g AS (" TO_GARBAGE ")"
                    " UPDATE bigfilefs.meta SET value = greatest(value, $4)"
                    " WHERE key = 'gc_done' OR (key = 'collected' AND EXISTS (SELECT 1 FROM d))",
                    "IIIi", PGK_V },
    /* The versions marked superseded at or before $1 go (see PS_MARK). */
    [PS_GC_MARKED] = { "WITH d AS (DELETE FROM bigfilefs.blockmap WHERE superseded <= $1"
                       " RETURNING content),"
                       " g AS (" TO_GARBAGE ")"
                       " UPDATE bigfilefs.meta SET value = greatest(value, $1)"
                       " WHERE key = 'collected' AND EXISTS (SELECT 1 FROM d)",
                       "i", PGK_V },
    /* Before the log rows of the triplets go with the versions they
     * superseded still needed: mark each such version with the first
     * serial that superseded it. */
    [PS_MARK] = { "UPDATE bigfilefs.blockmap m SET superseded = s.serial"
                  " FROM (SELECT v.file, v.blk, v.serial AS version, min(u.serial) AS serial"
                  " FROM unnest($1::int8[], $2::int8[], $3::int8[]) AS u(file, blk, serial)"
                  " JOIN bigfilefs.blockmap v ON v.file = u.file AND v.blk = u.blk"
                  " AND v.serial < u.serial WHERE v.superseded IS NULL"
                  " GROUP BY v.file, v.blk, v.serial) s"
                  " WHERE m.file = s.file AND m.blk = s.blk AND m.serial = s.version",
                  "III", PGK_V },
    /* The log rows up to $1 go; log_trimmed moves there, and gc_done to $2. */
    [PS_LOG_TRIM] = { "WITH d AS (DELETE FROM bigfilefs.commit_log WHERE serial <= $1)"
                      " UPDATE bigfilefs.meta SET value = greatest(value,"
                      " CASE key WHEN 'log_trimmed' THEN $1 ELSE $2 END)"
                      " WHERE key IN ('log_trimmed', 'gc_done')",
                      "ii", PGK_V },
    [PS_NAMELESS] = { "SELECT id FROM bigfilefs.files WHERE name IS NULL", "", PGK_V },
    /* Up to $1 garbage contents go (each may be big). */
    [PS_GARBAGE] = { "WITH u AS (DELETE FROM bigfilefs.uploads WHERE content IN"
                     " (SELECT content FROM bigfilefs.uploads WHERE session = 0 LIMIT $1)"
                     " AND session = 0 RETURNING content),"
                     " c AS (DELETE FROM bigfilefs.contents WHERE id IN (SELECT content FROM u)"
                     " RETURNING 1) SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM c)",
                     "i", PGK_V },
};
