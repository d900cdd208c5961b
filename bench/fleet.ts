// The backfill a worker fleet shares (backfill.mode: queue): `runner start` queues the demo's
// NULL rows and waits while 1, 2, 4 and 8 `runner worker` processes drain them, each against
// the OpenAI protocol on loopback (the tests' fake server, through the real SDK) answering every
// request after --delay-ms: a provider bound, as a paid provider at its rate limit per key is,
// not a CPU bound. Each figure is a ratio against one worker in the same run; the direct
// backfill (one process) is measured too, as a reference.
//   npx tsx bench/fleet.ts [--rows 20000] [--delay-ms 200] [--workers 1,2,4,8]
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa, type ResultPromise } from 'execa'
import pg from 'pg'
import { stringify } from 'yaml'
import { Session } from '../src/checkpoint/session.ts'
import { loadPlan } from '../src/plan/loadPlan.ts'
import { startFakeOpenAI } from '../test/helpers/fakeOpenAI.ts'
import { freshBenchDatabase } from './lib/benchDatabase.ts'
import { buildCli } from './lib/buildCli.ts'

await buildCli()

const argOf = (name: string) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : undefined)
const rows = Number(argOf('--rows') ?? 20_000)
const delayMs = Number(argOf('--delay-ms') ?? 200)
const fleets = (argOf('--workers') ?? '1,2,4,8').split(',').map(Number)
const root = join(import.meta.dirname, '..')
const cli = join(root, 'bin/runner.js')
const log = (m: string) => process.stderr.write(`${m}\n`)
const dir = mkdtempSync(join(tmpdir(), 'bench-fleet-'))

const url = await freshBenchDatabase(`runner_bench_fleet_${rows}`)
log(`seeding ${rows} demo rows ...`)
await execa('node', [cli, 'demo', 'init', '--rows', String(rows), '--database', url], { cwd: root, stderr: 'inherit' })

const shipped = loadPlan(join(root, 'plans/feature-1.yaml')).plan as any
const batches = shipped.batches
  .filter((b: any) => ['pipeline', 'backfill'].includes(b.step))
  .map((b: any) => ({ ...b, depends_on: b.depends_on.filter((d: string) => d !== 'diagnose' && d !== 'index') }))
const planFor = (mode: 'direct' | 'queue', steps = ['pipeline', 'backfill']) => {
  const path = join(dir, `${mode}-${steps.join('-')}.yaml`)
  writeFileSync(
    path,
    stringify({
      ...shipped,
      embedding: { ...shipped.embedding, provider: 'openai' },
      backfill: { mode },
      worker: { ...shipped.worker, reconcile_seconds: null },
      batches: batches.filter((b: any) => steps.includes(b.step)),
    }),
  )
  return path
}

const fake = await startFakeOpenAI()
fake.delayMs = delayMs
const env = { DATABASE_URL: url, OPENAI_API_KEY: fake.key, OPENAI_BASE_URL: fake.url }
const db = new pg.Client({ connectionString: url })
await db.connect()
const reset = async () => {
  await db.query('DROP SCHEMA IF EXISTS runner CASCADE')
  for (const table of ['atoms', 'messages', 'topics']) await db.query(`UPDATE ${table} SET embedding = NULL`)
  await db.query('VACUUM ANALYZE atoms, messages, topics')
}
const count = async (sql: string) => (await db.query<{ n: number }>(sql)).rows[0]!.n

/** One backfill: its output's rows written and seconds (for the fleet, the wait from the last row queued to the queue drained). */
async function backfill(mode: 'direct' | 'queue', workers: number): Promise<{ written: number; seconds: number; requests: number }> {
  await reset()
  const plan = planFor(mode)
  const running: ResultPromise[] = []
  if (workers > 0) {
    // The pipeline (the queue and the workers' registry) first, so the workers register before anything is queued.
    await execa('node', [cli, 'start', planFor(mode, ['pipeline']), '--sessions-dir', mkdtempSync(join(dir, 'sessions-'))], { env })
    for (let i = 0; i < workers; i++) running.push(execa('node', [cli, 'worker', plan], { env, reject: false }))
    const deadline = Date.now() + 60_000
    while ((await count('SELECT count(*)::int AS n FROM runner.workers').catch(() => 0)) < workers) {
      if (Date.now() > deadline) throw new Error(`the ${workers} workers did not register within 60 s`)
      await new Promise((r) => setTimeout(r, 200))
    }
  }
  const requestsBefore = fake.requests.length
  const sessions = mkdtempSync(join(dir, 'sessions-'))
  const run = await execa('node', [cli, 'start', plan, '--sessions-dir', sessions], { env, reject: false, all: true })
  for (const worker of running) worker.kill('SIGTERM')
  await Promise.all(running)
  if (run.exitCode !== 0) throw new Error(`runner start (${mode}, ${workers} workers) failed: ${run.all?.slice(-800)}`)
  const session = Session.findLatest(sessions)!
  const state = JSON.parse(readFileSync(join(session, 'coordination-state.json'), 'utf8'))
  const batch = state.batches.find((b: any) => b.step === 'backfill')
  const output = JSON.parse(readFileSync(join(session, batch.output_path), 'utf8'))
  const written = output.tables.reduce((s: number, t: any) => s + t.written, 0)
  const seconds = output.fleet ? output.fleet.waited_seconds : output.seconds
  return { written, seconds, requests: fake.requests.length - requestsBefore }
}

const results: { label: string; workers: number; written: number; seconds: number; requests: number }[] = []
for (const workers of fleets) {
  log(`the fleet backfill with ${workers} worker(s) ...`)
  const r = await backfill('queue', workers)
  results.push({ label: `queue, ${workers} worker process${workers > 1 ? 'es' : ''}`, workers, ...r })
  log(`  ${r.written} rows in ${r.seconds.toFixed(1)} s`)
}
log('the direct backfill (one process) ...')
const direct = await backfill('direct', 0)
results.push({ label: 'direct, one process (reference)', workers: 0, ...direct })
await db.end()
await fake.close()

const one = results.find((r) => r.workers === 1)
const rate = (r: { written: number; seconds: number }) => r.written / r.seconds
console.log(
  `## The backfill a worker fleet shares: ${rows.toLocaleString('en-US')} demo rows x 1536, a provider answering each request in ${delayMs} ms\n`,
)
console.log('| backfill | rows written | seconds | rows/s | ratio to one worker | provider requests |')
console.log('| --- | --- | --- | --- | --- | --- |')
for (const r of results) {
  console.log(
    `| ${r.label} | ${r.written.toLocaleString('en-US')} | ${r.seconds.toFixed(1)} | ${rate(r).toFixed(0)} | ${one ? (rate(r) / rate(one)).toFixed(2) : '-'} | ${r.requests} |`,
  )
}
console.log(
  `\nEach worker runs one lane with the plan's worker.batch_size (${shipped.worker.batch_size}) texts a request; the direct backfill sends embedding.batch_size (${shipped.embedding.batch_size}) a batch, up to embedding.concurrency requests at once. For the fleet, the seconds are the batch's wait from the last row queued to the queue drained. Command: \`npx tsx bench/fleet.ts --rows ${rows} --delay-ms ${delayMs} --workers ${fleets.join(',')}\``,
)
