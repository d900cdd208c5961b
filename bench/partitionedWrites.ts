// The backfill's writes on a table partitioned by time, PRIMARY KEY (id, created_at): the
// runner's own write statement (writeEmbeddings), one batch at a time, through the partitioned
// parent (the key alone cannot prune: every partition is joined) against through the leaf
// partition that holds the rows (what the backfill does), in the same run, on the same rows.
//   npx tsx bench/partitionedWrites.ts [--partitions 24] [--rows-per-partition 10000] [--batches 20]
import { connectPostgres } from '../src/db/connectPostgres.ts'
import { bindColumnModels } from '../src/db/runnerSchema/columnModels.ts'
import { runnerSchema } from '../src/db/runnerSchema/objects.ts'
import { resolveTargets } from '../src/db/target.ts'
import { installPipeline } from '../src/pipeline/installPipeline.ts'
import { writeEmbeddings } from '../src/pipeline/writeEmbeddings.ts'
import { planSchema } from '../src/plan/schema.ts'
import { freshBenchDatabase, urlFor } from './lib/benchDatabase.ts'

const arg = (name: string, fallback: number) => Number(process.argv[process.argv.indexOf(name) + 1] ?? 0) || fallback
const partitions = arg('--partitions', 24)
const perPartition = arg('--rows-per-partition', 10_000)
const batches = arg('--batches', 20)
const BATCH = arg('--batch', 256)
const DIMS = 16
const log = (m: string) => process.stderr.write(`${m}\n`)

const name = 'bench_partitioned_writes'
await freshBenchDatabase(name)
const db = await connectPostgres(urlFor(name))
log(`generating ${partitions} partitions x ${perPartition.toLocaleString('en-US')} rows ...`)
await db.exec(`CREATE EXTENSION vector;
  CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY, created_at timestamptz NOT NULL, body text NOT NULL, embedding vector(${DIMS}),
    PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at)`)
for (let m = 0; m < partitions; m++) {
  await db.exec(
    `CREATE TABLE notes_${m} PARTITION OF notes FOR VALUES FROM ('2024-01-01'::date + interval '${m} month') TO ('2024-01-01'::date + interval '${m + 1} month')`,
  )
}
await db.exec(`INSERT INTO notes (created_at, body)
  SELECT '2024-01-01'::timestamptz + (g % ${partitions}) * interval '1 month' + interval '1 day', 'note ' || g FROM generate_series(1, ${partitions * perPartition}) g`)
await db.exec('VACUUM ANALYZE notes') // VACUUM cannot share a multi-statement string (an implicit transaction)

const plan = planSchema.parse({
  id: 'bench',
  title: 'bench',
  target: { tables: [{ table: 'notes', key: 'id', text_columns: ['body'], embedding_column: 'embedding', distance: 'cosine' }] },
  embedding: { provider: 'local', model: 'bench', dimensions: DIMS },
  batches: [{ id: 'b', title: 'b', agent: 'a', step: 'backfill' }],
})
const rs = runnerSchema(plan.target.runner_schema)
const [parent] = await resolveTargets(db, plan)
await installPipeline(db, rs, [parent!])
await bindColumnModels(db, rs, [parent!], { name: 'bench', model: 'bench', dimensions: DIMS })
const leaf = parent!.partition('"public"."notes_5"')
const vector = Array.from({ length: DIMS }, (_, i) => Math.sin(i))

/** Writes `batches` batches of the leaf's NULL rows through `through`; rows per second. */
async function measure(through: typeof parent): Promise<{ rate: number; msPerBatch: number }> {
  let rows = 0
  const started = performance.now()
  for (let b = 0; b < batches; b++) {
    const page = await leaf.readNullPage(db, null, BATCH)
    const written = await writeEmbeddings(
      db,
      rs,
      through!,
      page.map((r) => ({ key: r.key, hash: r.hash, vector })),
      'bench',
      { suppressTriggers: true },
    )
    rows += written.written.length
  }
  const seconds = (performance.now() - started) / 1000
  return { rate: rows / seconds, msPerBatch: (seconds * 1000) / batches }
}

const viaParent = await measure(parent)
const viaLeaf = await measure(leaf)
await db.close()
const fmt = (n: number) => Math.round(n).toLocaleString('en-US')
process.stdout.write(
  [
    `## Backfill writes on a table partitioned by time: ${partitions} partitions x ${perPartition.toLocaleString('en-US')} rows, batches of ${BATCH}`,
    '',
    '| written through | rows/s | ms a batch |',
    '| --- | --- | --- |',
    `| the partitioned parent (baseline) | ${fmt(viaParent.rate)} | ${viaParent.msPerBatch.toFixed(1)} |`,
    `| the leaf partition (the backfill) | ${fmt(viaLeaf.rate)} | ${viaLeaf.msPerBatch.toFixed(1)} |`,
    '',
    `Through the partition: ${(viaLeaf.rate / viaParent.rate).toFixed(1)}x the parent's rate (the parent joins every partition for each batch, so its cost grows with the whole table). Command: \`npx tsx bench/partitionedWrites.ts --partitions ${partitions} --rows-per-partition ${perPartition} --batches ${batches} --batch ${BATCH}\``,
    '',
  ].join('\n'),
)
