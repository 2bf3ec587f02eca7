/*
 * pg_schema.h - the PostgreSQL backend's versioned migrations (internal to src/store/).
 *
 * bt_pg_migrations[i] brings a database from version i to version i + 1; the version
 * a database is at is the highest row of its schema_migrations table. Each migration
 * is one multi-statement SQL text run in one transaction.
 */
#ifndef BT_PG_SCHEMA_H
#define BT_PG_SCHEMA_H

extern const char *const bt_pg_migrations[];
extern const int bt_pg_migration_count;

#endif
