import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import pg from 'pg'
import { from as copyFrom } from 'pg-copy-streams'
import { encodeCopyBinary } from './copyBinary.ts'

// A database on the real server for benchmarks: `items` with clustered unit-ish vectors
// (40 centres plus noise, like embeddings of a corpus with 40 subjects), made here and sent
// by binary COPY (making them in SQL took 385 s per 100,000 rows); reused when it already has
// the requested size.

const CENTRES = 40
const COPY_ROWS = 4000

export const BENCH_SERVER = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'

export function urlFor(database: string): string {
  const url = new URL(BENCH_SERVER)
  url.pathname = `/${database}`
  return url.toString()
}

/** A database of this name on the benchmark server, created when it does not exist (its contents kept when it does); its URL. */
export async function benchDatabase(name: string): Promise<string> {
  const admin = new pg.Client({ connectionString: BENCH_SERVER })
  await admin.connect()
  const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])
  if (exists.rowCount === 0) await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`)
  await admin.end()
  return urlFor(name)
}

export async function ensureBenchDatabase(name: string, rows: number, dimensions: number, log: (m: string) => void): Promise<string> {
  const url = await benchDatabase(name)
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
    // Row i belongs to centre 1 + i % 40 (the centres table's c); each coordinate is its
    // centre's plus uniform noise of width 0.2.
    const centres = Array.from({ length: CENTRES }, () => Array.from({ length: dimensions }, () => Math.random() - 0.5))
    await db.query('DROP TABLE IF EXISTS centres; CREATE TABLE centres (c int PRIMARY KEY, v float8[] NOT NULL)')
    for (const [i, v] of centres.entries()) await db.query('INSERT INTO centres VALUES ($1, $2)', [i + 1, v])
    await db.query(`CREATE TABLE items (id bigint PRIMARY KEY, body text NOT NULL, embedding vector(${dimensions}))`)
    for (let from = 1; from <= rows; from += COPY_ROWS) {
      const chunk = []
      for (let i = from; i < Math.min(from + COPY_ROWS, rows + 1); i++) {
        const centre = centres[i % CENTRES]!
        chunk.push([BigInt(i), `item ${i}`, centre.map((x) => x + 0.2 * (Math.random() - 0.5))])
      }
      await pipeline(Readable.from([encodeCopyBinary(chunk)]), db.query(copyFrom('COPY items FROM STDIN WITH (FORMAT binary)')))
      if ((from - 1) % (COPY_ROWS * 25) === 0) log(`  ${(from - 1).toLocaleString('en-US')} rows`)
    }
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
