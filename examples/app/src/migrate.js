// Idempotent schema setup: `node src/migrate.js` (the deploy runs it once per
// release before restarting the API) or `import { migrate }`.
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { loadConfigOrExit } from './config.js';
import { createPool } from './db.js';
import * as log from './log.js';

// Arbitrary constant key for the advisory lock that serialises concurrent
// migrations (two hosts deploying at once): CREATE TABLE IF NOT EXISTS alone
// can still fail with a unique violation on pg_type when raced.
const MIGRATION_LOCK_KEY = 727365746501; // "recete" + 1

// Every statement must be safe while the release before it still serves
// (deploy.yml migrates once, before the first new instance starts, and old
// and new instances then run side by side): expand, then contract. Add
// tables, nullable columns or columns with a constant default; never rename
// or drop what the running release reads. A column the new release stops using is dropped by the release
// AFTER it, once no instance of the old one runs.
const SCHEMA = [
  `CREATE TABLE IF NOT EXISTS items (
     id bigserial PRIMARY KEY,
     name text NOT NULL,
     payload jsonb,
     created_by text,
     created_at timestamptz DEFAULT now()
   )`,
  // Expand: a nullable column that releases before it neither read nor
  // write (INSERTs that omit it still work), so it is added while they serve.
  `ALTER TABLE IF EXISTS items ADD COLUMN IF NOT EXISTS updated_at timestamptz`,
  // Expand: a constant default, so existing rows get 1 without a table
  // rewrite (PostgreSQL 11+) and INSERTs of releases before it, which omit
  // it, still work. Bumped by every PUT; the item cache compares it.
  `ALTER TABLE IF EXISTS items ADD COLUMN IF NOT EXISTS version bigint NOT NULL DEFAULT 1`,
  `CREATE TABLE IF NOT EXISTS job_results (
     job_id text PRIMARY KEY,
     result jsonb NOT NULL,
     worker text NOT NULL,
     processed_at timestamptz DEFAULT now()
   )`,
];

/**
 * Apply the schema. `db` is a pg Pool (or anything with connect()).
 * The transaction-scoped lock (pg_advisory_xact_lock) is released at COMMIT
 * and works through PgBouncer in transaction mode, unlike a session lock.
 */
export async function migrate(db) {
  const client = await db.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
    for (const stmt of SCHEMA) await client.query(stmt);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

async function main() {
  const config = loadConfigOrExit(process.env, { role: 'migrate' });
  log.setLogContext({ component: 'migrate', instance: config.instance, version: config.version });
  const pool = createPool(config.databaseUrl, { max: 1, name: 'migrate', poolers: config.databaseHosts, preferKey: config.instance });
  try {
    await migrate(pool);
    log.info('schema is up to date');
  } catch (err) {
    log.error('migration failed', { err });
    process.exitCode = 1;
  } finally {
    await pool.end();
  }
}

// Run only when executed directly, not when imported. Compare real paths:
// the release may be started through a symlink (…/current/src/migrate.js).
function isMain() {
  if (!process.argv[1]) return false;
  try {
    return fs.realpathSync(process.argv[1]) === fs.realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) await main();
