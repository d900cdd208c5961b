// Backfill throughput with the local provider on the demo app, with and without the HNSW
// index already built (the seed builds the index first; inserts into a graph cost more),
// against the bound of its two stages measured bare in the same run, and
// insert-to-embedding latency with one `runner worker` running. Real server, one run.
// Then the same backfill with a provider like a remote one: the OpenAI protocol, spoken by the
// tests' fake server on loopback answering each request after --remote-ms (default 150 ms),
// through the real SDK, against that provider's own rate measured the same way.
//   npx tsx bench/backfill.ts [--rows N] [--remote-ms MS]
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { Session } from '../src/checkpoint/session.ts'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { execa } from 'execa'
import pg from 'pg'
import { stringify } from 'yaml'
import { loadPlan } from '../src/plan/loadPlan.ts'
import { createLocalProvider } from '../src/embeddings/localProvider.ts'
import { percentiles } from '../src/steps/validate/measureSearch.ts'
import { describeStages } from '../src/steps/backfill/backfillStep.ts'
import { BENCH_SERVER, urlFor } from './lib/benchDatabase.ts'
import { buildCli } from './lib/buildCli.ts'
import { createOpenAIProvider } from '../src/embeddings/openaiProvider.ts'
import { startFakeOpenAI } from '../test/helpers/fakeOpenAI.ts'

await buildCli()

const arg = (name: string, fallback: number) => Number(process.argv[process.argv.indexOf(name) + 1] ?? 0) || fallback
const rows = arg('--rows', 100_000)
const remoteMs = arg('--remote-ms', 150)
const name = `runner_bench_backfill_${rows}`
const url = urlFor(name)
const log = (m: string) => process.stderr.write(`${m}\n`)
const admin = new pg.Client({ connectionString: BENCH_SERVER })
await admin.connect()
await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
await admin.query(`CREATE DATABASE ${name}`)
await admin.end()
await execa('node', ['bin/runner.js', 'demo', 'init', '--rows', String(rows), '--database', url, '--labels', 'bench/.data/labels.json'], {
  stderr: 'inherit',
})

const dir = join('bench/.data', `backfill-${Date.now()}`)
mkdirSync(dir, { recursive: true })
const shipped = loadPlan('plans/feature-1.yaml').plan as any
const planFor = (steps: string[], provider = 'local') => {
  const path = join(dir, `${steps.join('-')}-${provider}.yaml`)
  const batches = shipped.batches
    .filter((b: any) => steps.includes(b.step))
    .map((b: any) => ({ ...b, depends_on: b.depends_on.filter((d: string) => steps.includes(d)) }))
  writeFileSync(path, stringify({ ...shipped, embedding: { ...shipped.embedding, provider }, batches }))
  return path
}
async function runPlan(steps: string[], provider = 'local', env: Record<string, string> = {}): Promise<any> {
  const sessions = join(dir, `sessions-${steps.join('-')}-${Date.now()}`)
  await execa('node', ['bin/runner.js', 'start', planFor(steps, provider), '--sessions-dir', sessions], {
    env: { DATABASE_URL: url, ...env },
    stderr: 'inherit',
  })
  const session = Session.findLatest(sessions)!
  const state = JSON.parse(readFileSync(join(session, 'coordination-state.json'), 'utf8'))
  const backfill = state.batches.find((b: any) => b.step === 'backfill')
  return backfill ? JSON.parse(readFileSync(join(session, backfill.output_path), 'utf8')) : undefined
}

const db = new pg.Client({ connectionString: url })
await db.connect()
log('backfill without a vector index ...')
const bare = await runPlan(['pipeline', 'backfill'])

// The bound of an overlapped backfill is its slower stage, each measured bare in this run and
// overlapped, as the backfill runs them (this machine's two cores are shared by both, and by the
// server's own work): this process embeds every text once with the local provider while the
// server writes the same vectors again and again with one UPDATE ... FROM a staging table (the
// fastest write the database allows); each rate is counted over that window.
const { rows: textRows } = await db.query(
  `SELECT concat_ws(' ', title, content) AS t FROM atoms UNION ALL SELECT content FROM messages UNION ALL SELECT concat_ws(' ', name, description) FROM topics`,
)
const texts = textRows.map((r) => r.t as string)
await db.query('CREATE TEMP TABLE staging AS SELECT id, embedding FROM atoms; ANALYZE staging')
/** A provider's bare rate over these texts, 256 a request, while the server writes bare beside it; each rate over that window. */
async function measureBound(embed: (batch: string[]) => Promise<unknown>, sample: string[]) {
  const started = performance.now()
  let embedding = true
  let written = 0
  let lastWrite = started
  const writes = (async () => {
    while (embedding) {
      written += (await db.query('UPDATE atoms t SET embedding = s.embedding FROM staging s WHERE s.id = t.id')).rowCount ?? 0
      lastWrite = performance.now()
    }
  })()
  for (let i = 0; i < sample.length; i += 256) {
    await embed(sample.slice(i, i + 256))
    await new Promise(setImmediate) // lets the writes' answers in
  }
  const embedRate = sample.length / ((performance.now() - started) / 1000)
  embedding = false
  await writes
  const writeRate = written / ((lastWrite - started) / 1000)
  return { embedRate, writeRate, bound: Math.min(embedRate, writeRate) }
}
log('the bound: bare embedding and bare writes of the same rows, overlapped ...')
const provider = createLocalProvider({ dimensions: 1536 })
const { embedRate, writeRate, bound } = await measureBound((batch) => provider.embed(batch), texts)
const resetEmbeddings = () =>
  db.query(
    'UPDATE atoms SET embedding = NULL; UPDATE messages SET embedding = NULL; UPDATE topics SET embedding = NULL; TRUNCATE runner.embedding_meta; TRUNCATE runner.column_models',
  )

log(`the backfill again, with a provider answering in ${remoteMs} ms (the OpenAI protocol on loopback) ...`)
await resetEmbeddings()
const fake = await startFakeOpenAI()
fake.delayMs = remoteMs
const remote = await runPlan(['pipeline', 'backfill'], 'openai', { OPENAI_API_KEY: fake.key, OPENAI_BASE_URL: fake.url })
const sdk = createOpenAIProvider({ model: shipped.embedding.model, dimensions: 1536, apiKey: fake.key, baseURL: fake.url })
// 40 requests spread evenly over the table give the provider's rate on the same mix of texts
// (the first 40 would be long atoms only); the whole table at 150 ms a request would add minutes.
const batchCount = Math.ceil(texts.length / 256)
const spread = Array.from({ length: Math.min(40, batchCount) }, (_, i) => Math.floor((i * batchCount) / Math.min(40, batchCount)))
const remoteBound = await measureBound(
  (batch) => sdk.embed(batch),
  spread.flatMap((b) => texts.slice(b * 256, b * 256 + 256)),
)
await fake.close()

await resetEmbeddings()
log('building the indexes, then the backfill again ...')
await runPlan(['diagnose', 'index'])
const indexed = await runPlan(['pipeline', 'backfill'])
const rate = (o: any) => o.tables.reduce((s: number, t: any) => s + t.written, 0) / o.seconds

log('insert-to-embedding latency with one worker ...')
const worker = execa('node', ['bin/runner.js', 'worker', planFor(['pipeline', 'backfill'])], { env: { DATABASE_URL: url }, reject: false })
await sleep(3000)
const delays: number[] = []
for (let i = 0; i < 200; i++) {
  const started = performance.now()
  const { rows: inserted } = await db.query(`INSERT INTO atoms (topic_id, title, content) VALUES (1, 'Latency probe', $1) RETURNING id`, [
    `probe ${i} simmer the sauce`,
  ])
  for (;;) {
    const { rows: r } = await db.query('SELECT embedding IS NOT NULL AS done FROM atoms WHERE id = $1', [inserted[0].id])
    if (r[0].done) break
    await sleep(1)
  }
  delays.push(performance.now() - started)
  await sleep(20)
}
worker.kill('SIGTERM')
await worker
await db.end()
const d = percentiles(delays)
const lines = [
  `## Backfill and auto-embedding: demo app, ${rows.toLocaleString('en-US')} rows, local provider, real server`,
  '',
  '| backfill | rows | seconds | rows per second | ratio |',
  '| --- | --- | --- | --- | --- |',
  `| without a vector index | ${bare.estimate.rows} | ${bare.seconds.toFixed(1)} | ${rate(bare).toFixed(0)} | 1.00 |`,
  `| with the HNSW indexes built first (the seed's order) | ${indexed.estimate.rows} | ${indexed.seconds.toFixed(1)} | ${rate(indexed).toFixed(0)} | ${(rate(indexed) / rate(bare)).toFixed(2)} |`,
  '',
  `The bound for an overlapped backfill without an index, both stages measured bare in this run, overlapped as the backfill runs them: while the local provider embedded the same texts at ${embedRate.toFixed(0)} texts/s on one core, \`UPDATE ... FROM\` a staging table wrote the same vectors at ${writeRate.toFixed(0)} rows/s; the slower, ${bound.toFixed(0)}/s, is the bound. The backfill without an index reached ${((100 * rate(bare)) / bound).toFixed(0)}% of it (target 80%).`,
  '',
  `Where the backfill without an index spent its time (from its session's output): ${describeStages(bare.stages, bare.seconds)}`,
  '',
  `With a provider like a remote one (the OpenAI protocol through the real SDK, answered on loopback after ${remoteMs} ms a request of 256 texts): the backfill wrote ${rate(remote).toFixed(0)} rows/s, ${((100 * rate(remote)) / remoteBound.bound).toFixed(0)}% of that provider's own rate measured the same way (${remoteBound.embedRate.toFixed(0)} texts/s while the server wrote ${remoteBound.writeRate.toFixed(0)} rows/s beside it). ${describeStages(remote.stages, remote.seconds)}`,
  '',
  `Insert-to-embedding latency, one \`runner worker\`, 200 inserts one at a time (polled every ms): p50 ${d.p50.toFixed(1)} ms, p95 ${d.p95.toFixed(1)} ms, p99 ${d.p99.toFixed(1)} ms.`,
  '',
  `Command: \`npx tsx bench/backfill.ts --rows ${rows}${remoteMs === 150 ? '' : ` --remote-ms ${remoteMs}`}\``,
  '',
]
process.stdout.write(`${lines.join('\n')}\n`)
