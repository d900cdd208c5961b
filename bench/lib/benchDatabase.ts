import pg from 'pg'

// A database on the real server for benchmarks: `items` with clustered unit-ish vectors
// (40 centres plus noise, like embeddings of a corpus with 40 subjects). Built in SQL, so
// nothing large crosses the wire; reused when it already has the requested size.

export const BENCH_SERVER = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'

export function urlFor(database: string): string {
  const url = new URL(BENCH_SERVER)
  url.pathname = `/${database}`
  return url.toString()
}

export async function ensureBenchDatabase(name: string, rows: number, dimensions: number, log: (m: string) => void): Promise<string> {
  const admin = new pg.Client({ connectionString: BENCH_SERVER })
  await admin.connect()
  const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])
  if (exists.rowCount === 0) await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`)
  await admin.end()
  const url = urlFor(name)
  const db = new pg.Client({ connectionString: url })
  await db.connect()
  try {
    await db.query('CREATE EXTENSION IF NOT EXISTS vector')
    const has = await db.query(`SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 'items'`)
    if (has.rows[0].n === 1) {
      const count = await db.query('SELECT count(*)::int AS n, count(embedding)::int AS e FROM items')
      if (count.rows[0].n === rows && count.rows[0].e === rows) return url
      await db.query('DROP TABLE items')
    }
    log(`generating ${rows.toLocaleString('en-US')} x ${dimensions} clustered vectors in ${name} ...`)
    const started = Date.now()
    await db.query(`DROP TABLE IF EXISTS centres;
      CREATE TABLE centres AS SELECT c, (SELECT array_agg(random() - 0.5) FROM generate_series(1, ${dimensions}) g WHERE c > 0) AS v FROM generate_series(1, 40) c`)
    await db.query(`CREATE TABLE items (id bigint PRIMARY KEY, body text NOT NULL, embedding vector(${dimensions}))`)
    await db.query(
      `INSERT INTO items SELECT i, 'item ' || i, (SELECT array_agg(ce.v[g] + 0.2 * (random() - 0.5)) FROM generate_series(1, ${dimensions}) g)::vector
       FROM generate_series(1, $1::int) i JOIN centres ce ON ce.c = 1 + i % 40`,
      [rows],
    )
    await db.query('VACUUM ANALYZE items')
    log(`  generated in ${((Date.now() - started) / 1000).toFixed(0)} s`)
    return url
  } finally {
    await db.end()
  }
}

/** A database of this name on the benchmark server, dropped first if it exists; its URL. */
export async function freshBenchDatabase(name: string): Promise<string> {
  const admin = new pg.Client({ connectionString: BENCH_SERVER })
  await admin.connect()
  await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`)
  await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`)
  await admin.end()
  return urlFor(name)
}
