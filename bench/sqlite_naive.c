/*
 * sqlite_naive.c - the anchor for bench/queue (perf-anchors.md a5): a bare SQLite file
 * in WAL mode with synchronous=FULL, N ready rows preloaded, then one claim
 * transaction and one complete transaction per item (two commits, two fsyncs), from
 * one thread. This is what a queue without group commit costs on this disk.
 *
 *   bt-bench-sqlite-naive DBFILE N   ->   one JSON line: items/s, p50/p99 claim latency
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time (user + system) this process has used, in microseconds. */
static double cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static void must(sqlite3 *db, int rc, const char *what)
{
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "sqlite_naive: %s: %s\n", what, sqlite3_errmsg(db));
        exit(1);
    }
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s DBFILE N\n", argv[0]);
        return 2;
    }
    int n = atoi(argv[2]);
    sqlite3 *db = NULL;
    must(db, sqlite3_open(argv[1], &db), "open");
    must(db,
         sqlite3_exec(db,
                      "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                      "DROP TABLE IF EXISTS jobs;"
                      "CREATE TABLE jobs(id INTEGER PRIMARY KEY, state TEXT, payload TEXT,"
                      " updated_at INTEGER);"
                      "CREATE INDEX jobs_state ON jobs(state, id);",
                      NULL, NULL, NULL),
         "schema");
    sqlite3_stmt *ins, *claim, *done;
    must(db, sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), "begin");
    must(db,
         sqlite3_prepare_v2(db,
                            "INSERT INTO jobs(state, payload, updated_at) VALUES('ready', ?, 0)",
                            -1, &ins, NULL),
         "prepare");
    for (int i = 0; i < n; i++) {
        sqlite3_bind_text(ins, 1, "{\"kind\":\"noop\",\"title\":\"benchmark item payload\"}", -1,
                          SQLITE_STATIC);
        must(db, sqlite3_step(ins), "insert");
        sqlite3_reset(ins);
    }
    must(db, sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), "commit");
    must(db,
         sqlite3_prepare_v2(db,
                            "UPDATE jobs SET state='running', updated_at=?1 WHERE id=(SELECT id "
                            "FROM jobs WHERE state='ready' ORDER BY id LIMIT 1) RETURNING id",
                            -1, &claim, NULL),
         "prepare");
    must(db,
         sqlite3_prepare_v2(db, "UPDATE jobs SET state='done', updated_at=?2 WHERE id=?1", -1,
                            &done, NULL),
         "prepare");
    double *lat = calloc((size_t)n, sizeof *lat);
    int got = 0;
    double t0 = now_s(), cpu0 = cpu_us();
    for (;;) {
        double c0 = now_s();
        sqlite3_bind_int64(claim, 1, (sqlite3_int64)c0);
        int rc = sqlite3_step(claim);
        must(db, rc, "claim");
        if (rc != SQLITE_ROW) {
            sqlite3_reset(claim);
            break;
        }
        sqlite3_int64 id = sqlite3_column_int64(claim, 0);
        must(db, sqlite3_step(claim), "claim");
        sqlite3_reset(claim); /* autocommit: the claim's commit (and fsync) happens here */
        lat[got++] = now_s() - c0;
        sqlite3_bind_int64(done, 1, id);
        sqlite3_bind_int64(done, 2, 1);
        must(db, sqlite3_step(done), "complete");
        sqlite3_reset(done);
    }
    double el = now_s() - t0, cpu = cpu_us() - cpu0;
    qsort(lat, (size_t)got, sizeof *lat, cmp_d);
    printf("{\"bench\":\"sqlite_naive\",\"sync\":\"FULL\",\"items\":%d,\"seconds\":%.3f,"
           "\"items_per_s\":%.0f,\"claim_p50_ms\":%.3f,\"claim_p99_ms\":%.3f,"
           "\"cpu_us_per_item\":%.2f}\n",
           got, el, got / el, got ? lat[got / 2] * 1e3 : 0.0,
           got ? lat[(size_t)(got * 0.99)] * 1e3 : 0.0, got ? cpu / got : 0.0);
    free(lat);
    sqlite3_finalize(ins);
    sqlite3_finalize(claim);
    sqlite3_finalize(done);
    sqlite3_close(db);
    return got == n ? 0 : 1;
}
