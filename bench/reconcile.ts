// The cost of reconciliation: one full sweep of a table (every row's text hashed and compared
// with its recorded hash, by key in chunks), and its effect on a concurrent insert load,
// against the same load with no sweep, in the same run.
//   npx tsx bench/reconcile.ts [--rows 100000] [--chunk 5000] [--seconds 10]
import { connectPostgres } from '../src/db/connectPostgres.ts'
import { runnerSchema } from '../src/db/runnerSchema/objects.ts'
import { resolveTargets } from '../src/db/target.ts'
import { installPipeline } from '../src/pipeline/installPipeline.ts'
import { queueStaleRows } from '../src/pipeline/queue.ts'
import { loadPlan } from '../src/plan/loadPlan.ts'
import { freshBenchDatabase, urlFor } from './lib/benchDatabase.ts'
import { writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stringify } from 'yaml'

const arg = (name: string, fallback: number) => Number(process.argv[process.argv.indexOf(name) + 1] ?? 0) || fallback
const rows = arg('--rows', 100_000)
const chunk = arg('--chunk', 5000)
const seconds = arg('--seconds', 10)
const log = (m: string) => process.stderr.write(`${m}\n`)

const name = 'bench_reconcile'
await freshBenchDatabase(name)
const db = await connectPostgres(urlFor(name))
const planPath = join(tmpdir(), 'bench-reconcile.yaml')
writeFileSync(
  planPath,
  stringify({
    id: 'bench-reconcile',
    title: 'Reconciliation cost',
    target: { tables: [{ table: 'docs', key: 'id', text_columns: ['body'], embedding_column: 'embedding', distance: 'cosine' }] },
    embedding: { provider: 'local', model: 'bench', dimensions: 16 },
    batches: [{ id: 'pipeline', title: 'Pipeline', agent: 'fastapi-backend-expert', step: 'pipeline' }],
  }),
)
const { plan } = loadPlan(planPath)
try {
  log(`generating ${rows.toLocaleString('en-US')} embedded rows with their recorded hashes ...`)
  await db.exec(
    `CREATE EXTENSION vector; CREATE TABLE docs (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL, embedding vector(16))`,
  )
  await db.query(
    `INSERT INTO docs (body, embedding) SELECT 'a row of text number ' || g || ' about ' || md5(g::text), (SELECT array_agg(random()) FROM generate_series(1, 16))::vector FROM generate_series(1, $1::int) g`,
    [rows],
  )
  const rs = runnerSchema('runner')
  const targets = await resolveTargets(db, plan)
  await installPipeline(db, rs, targets)
  const t = targets[0]!
  await db.query(
    `INSERT INTO runner.embedding_meta (table_name, row_key, content_hash, model) SELECT 'public.docs', id::text, ${t.hash()}, 'bench' FROM docs`,
  )
  // 1% of the rows changed behind the trigger: what a sweep must find.
  const stale = Math.ceil(rows / 100)
  await db.exec(
    `ALTER TABLE docs DISABLE TRIGGER USER; UPDATE docs SET body = body || ' (edited)' WHERE id % 100 = 0; ALTER TABLE docs ENABLE TRIGGER USER`,
  )
  await db.exec('VACUUM ANALYZE docs')

  const sweep = async () => {
    let after: string | null = null
    let queued = 0
    let chunks = 0
    const started = performance.now()
    do {
      const r = await queueStaleRows(db, rs, t, after, chunk)
      after = r.last
      queued += r.queued
      chunks++
    } while (after !== null)
    return { seconds: (performance.now() - started) / 1000, queued, chunks }
  }
  const inserts = async (whileSweeping: boolean) => {
    await db.exec('TRUNCATE runner.embedding_queue')
    let inserted = 0
    let sweeping = whileSweeping
    const background = (async () => {
      while (sweeping) await sweep()
    })()
    const until = performance.now() + seconds * 1000
    while (performance.now() < until) {
      await db.query(`INSERT INTO docs (body) SELECT 'inserted under load ' || g FROM generate_series(1, 100) g`)
      inserted += 100
    }
    sweeping = false
    await background
    return inserted / seconds
  }

  const first = await sweep()
  const calm = await inserts(false)
  const loaded = await inserts(true)
  process.stdout.write(
    [
      `## Reconciliation on ${rows.toLocaleString('en-US')} rows, in chunks of ${chunk.toLocaleString('en-US')}`,
      '',
      '| measure | figure |',
      '| --- | --- |',
      `| one full sweep (every row hashed and compared) | ${first.seconds.toFixed(2)} s in ${first.chunks} chunks, ${(rows / first.seconds).toFixed(0)} rows/s, ${((first.seconds / first.chunks) * 1000).toFixed(0)} ms a chunk |`,
      `| stale rows it found and queued | ${first.queued} of the ${stale} changed behind the trigger |`,
      `| inserts of 100 rows, no sweep (baseline) | ${calm.toFixed(0)} rows/s |`,
      `| the same, with sweeps running back to back | ${loaded.toFixed(0)} rows/s (${(loaded / calm).toFixed(2)} of the baseline) |`,
      '',
      `A worker sweeps once per worker.reconcile_seconds (300 by default) and one chunk at a time between batches, so the load it adds is far below the back-to-back case. Command: \`npx tsx bench/reconcile.ts --rows ${rows} --chunk ${chunk} --seconds ${seconds}\``,
      '',
    ].join('\n'),
  )
} finally {
  await db.close()
}
