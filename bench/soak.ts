// A worker run as a service for a long while: its memory over time, under a steady load of the
// application's edits against the fake OpenAI server (real SDK, real HTTP), in another process
// so that only the worker is in this one. Prints RSS and the heap after a full garbage
// collection every interval; flat means no listener, timer or buffer grows with requests.
//   npx tsx bench/soak.ts [--minutes 10] [--rate 20] [--every 30] [--database bench_soak]
// (it runs itself again under node --expose-gc: the heap is read after a full collection)
import { setTimeout as sleep } from 'node:timers/promises'
import { execa } from 'execa'
import pg from 'pg'
import { connectPostgres } from '../src/db/connectPostgres.ts'
import { resolveTargets } from '../src/db/target.ts'
import { createOpenAIProvider } from '../src/embeddings/openaiProvider.ts'
import { installPipeline } from '../src/pipeline/installPipeline.ts'
import { runWorker } from '../src/pipeline/runWorker.ts'
import { planSchema } from '../src/plan/schema.ts'
import { runnerSchema } from '../src/db/runnerSchema/objects.ts'
import { freshBenchDatabase } from './lib/benchDatabase.ts'

const gc = (globalThis as { gc?: () => void }).gc
if (!gc) {
  const again = await execa(process.execPath, ['--expose-gc', '--import', 'tsx', import.meta.filename, ...process.argv.slice(2)], {
    stdio: 'inherit',
    reject: false,
  })
  process.exit(again.exitCode ?? 1)
}
const arg = (name: string, fallback: number) => Number(process.argv[process.argv.indexOf(name) + 1] ?? 0) || fallback
const minutes = arg('--minutes', 10)
const rate = arg('--rate', 20)
const every = arg('--every', 30)
// (another database name lets two soaks, say before and after a change, run side by side)
const named = process.argv.indexOf('--database')
const database = named > 0 ? process.argv[named + 1]! : 'bench_soak'
const ROWS = 2000
const DIMS = 1536

const url = await freshBenchDatabase(database)
const setup = new pg.Client({ connectionString: url })
await setup.connect()
await setup.query(`CREATE EXTENSION vector; CREATE TABLE docs (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text, embedding vector(${DIMS}));
  INSERT INTO docs (body) SELECT 'note ' || g FROM generate_series(1, ${ROWS}) g`)
await setup.end()

const plan = planSchema.parse({
  id: 'soak',
  title: 'soak',
  target: { tables: [{ table: 'docs', key: 'id', text_columns: ['body'], embedding_column: 'embedding', distance: 'cosine' }] },
  embedding: { provider: 'openai', model: 'text-embedding-ada-002', dimensions: DIMS },
  worker: { reconcile_seconds: 60 },
  batches: [{ id: 'pipeline', title: 'p', agent: 'a', step: 'pipeline' }],
})
const db = await connectPostgres(url, { applicationName: 'runner worker' })
const targets = await resolveTargets(db, plan)
await installPipeline(db, runnerSchema('runner'), targets)

const load = execa('node', ['--import', 'tsx', 'bench/lib/soakLoad.ts', url, String(rate), String(ROWS)], {
  cwd: `${import.meta.dirname}/..`,
})
const fake = await new Promise<{ url: string; key: string }>((resolve) =>
  load.stdout!.once('data', (d: Buffer) => resolve(JSON.parse(String(d)))),
)
const provider = createOpenAIProvider({ model: 'text-embedding-ada-002', dimensions: DIMS, apiKey: fake.key, baseURL: fake.url })
const stop = new AbortController()
const collect = gc!
const worker = runWorker({
  db,
  plan,
  targets,
  provider,
  writes: { suppressTriggers: true },
  signal: stop.signal,
  log: () => {},
  statsIntervalMs: 3_600_000,
})

const mb = (bytes: number) => bytes / 1024 / 1024
const samples: { minute: number; rss: number; heap: number; requests: number; embedded: number }[] = []
const started = performance.now()
console.log(`worker soak: ${minutes} min, ${rate} edits/s, ${ROWS} rows x ${DIMS} dims, fake OpenAI on loopback`)
console.log('| minute | RSS MB | heap after GC MB | provider requests | rows embedded |')
console.log('| --- | --- | --- | --- | --- |')
while (performance.now() - started < minutes * 60_000) {
  await sleep(every * 1000)
  collect()
  const memory = process.memoryUsage()
  const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM runner.embedding_meta')
  const sample = {
    minute: (performance.now() - started) / 60_000,
    rss: mb(memory.rss),
    heap: mb(memory.heapUsed),
    requests: provider.stats.requests,
    embedded: rows[0]!.n,
  }
  samples.push(sample)
  console.log(
    `| ${sample.minute.toFixed(1)} | ${sample.rss.toFixed(1)} | ${sample.heap.toFixed(1)} | ${sample.requests} | ${sample.embedded} |`,
  )
}
stop.abort()
await worker
load.kill()
await load.catch(() => {})
await db.close()
// After warm-up (the first two minutes), flat means within 10% of the warm-up's last sample.
const warm = samples.filter((s) => s.minute >= Math.min(2, minutes / 2))
const base = warm[0]!
const spread = (pick: (s: (typeof samples)[number]) => number) => (Math.max(...warm.map(pick)) - Math.min(...warm.map(pick))) / pick(base)
console.log(
  `after warm-up: heap after GC ${base.heap.toFixed(1)} to ${warm.at(-1)!.heap.toFixed(1)} MB (spread ${(100 * spread((s) => s.heap)).toFixed(1)}% of the first), RSS ${base.rss.toFixed(1)} to ${warm.at(-1)!.rss.toFixed(1)} MB (spread ${(100 * spread((s) => s.rss)).toFixed(1)}%), over ${warm.at(-1)!.requests - base.requests} requests`,
)
console.log(`command: npx tsx bench/soak.ts --minutes ${minutes} --rate ${rate} --every ${every}`)
