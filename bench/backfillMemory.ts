// The backfill's peak memory at two table sizes, whole processes (GNU time's maximum resident
// set): `runner start` of the pipeline and backfill batches on the demo app, with a paid
// provider's path (the OpenAI protocol through the real SDK, answered by the tests' fake server
// on loopback, so every batch is saved in the runner's schema before it is written). Baselines
// in the same run: the same command with the pipeline batch alone (the process with everything
// loaded and connected, embedding nothing), and, with --before REV, the backfill of the runner
// as it was at that git revision. Memory that grows with the table shows as a peak that grows
// from the smaller size to the larger. Also the same backfill under `node --optimize-for-size`
// (V8 collecting eagerly, for a memory-tight machine: NODE_OPTIONS=--optimize-for-size).
//   npx tsx bench/backfillMemory.ts [--rows 20000,100000] [--before REV]
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import pg from 'pg'
import { stringify } from 'yaml'
import { loadPlan } from '../src/plan/loadPlan.ts'
import { startFakeOpenAI } from '../test/helpers/fakeOpenAI.ts'
import { freshBenchDatabase } from './lib/benchDatabase.ts'
import { buildCli, buildCliAt } from './lib/buildCli.ts'
import { measureProcess } from './lib/measureProcess.ts'

await buildCli()

const sizesArg = process.argv[process.argv.indexOf('--rows') + 1]
const sizes = (process.argv.includes('--rows') && sizesArg ? sizesArg : '20000,100000').split(',').map(Number)
const beforeRevision = process.argv.includes('--before') ? process.argv[process.argv.indexOf('--before') + 1] : undefined
const root = join(import.meta.dirname, '..')
const beforeCli = beforeRevision ? await buildCliAt(beforeRevision) : undefined
const log = (m: string) => process.stderr.write(`${m}\n`)
const dir = mkdtempSync(join(tmpdir(), 'bench-backfill-memory-'))
const shipped = loadPlan(join(root, 'plans/feature-1.yaml')).plan as any
const planWith = (steps: string[]) => {
  const path = join(dir, `${steps.join('-')}.yaml`)
  const batches = shipped.batches
    .filter((b: any) => steps.includes(b.step))
    .map((b: any) => ({ ...b, depends_on: b.depends_on.filter((d: string) => steps.includes(d)) }))
  writeFileSync(path, stringify({ ...shipped, embedding: { ...shipped.embedding, provider: 'openai' }, batches }))
  return path
}

const fake = await startFakeOpenAI()
type Measured = { s: number; mb: number }
const results: { rows: number; floor: Measured; backfill: Measured; small: Measured; before?: Measured }[] = []
for (const rows of sizes) {
  const url = await freshBenchDatabase(`runner_bench_backfill_memory_${rows}`)
  log(`${rows} rows: seeding ...`)
  await execa('node', ['bin/runner.js', 'demo', 'init', '--rows', String(rows), '--database', url], { cwd: root, stderr: 'inherit' })
  const env = { DATABASE_URL: url, OPENAI_API_KEY: fake.key, OPENAI_BASE_URL: fake.url, PATH: process.env.PATH ?? '' }
  const start = (plan: string, cli = join(root, 'bin/runner.js')) => [
    'node',
    cli,
    'start',
    plan,
    '--sessions-dir',
    mkdtempSync(join(dir, 's-')),
  ]
  // Each backfill starts from the same state: every embedding NULL, no runner schema.
  const reset = async () => {
    const db = new pg.Client({ connectionString: url })
    await db.connect()
    await db.query('DROP SCHEMA IF EXISTS runner CASCADE')
    for (const table of ['atoms', 'messages', 'topics']) await db.query(`UPDATE ${table} SET embedding = NULL`)
    await db.end()
  }
  log(`${rows} rows: the pipeline batch alone (the floor) ...`)
  const floor = await measureProcess(start(planWith(['pipeline'])), env, dir)
  log(`${rows} rows: pipeline and backfill ...`)
  const backfill = await measureProcess(start(planWith(['pipeline', 'backfill'])), env, dir)
  log(`${rows} rows: pipeline and backfill, node --optimize-for-size ...`)
  await reset()
  const small = await measureProcess(['node', '--optimize-for-size', ...start(planWith(['pipeline', 'backfill'])).slice(1)], env, dir)
  let before: Measured | undefined
  if (beforeCli) {
    log(`${rows} rows: pipeline and backfill, the runner at ${beforeRevision} ...`)
    await reset()
    before = await measureProcess(start(planWith(['pipeline', 'backfill']), beforeCli), env, dir)
  }
  results.push({ rows, floor, backfill, small, before })
  log(
    `  floor ${floor.mb.toFixed(0)} MB, backfill ${backfill.mb.toFixed(0)} MB in ${backfill.s.toFixed(1)} s${before ? `, before ${before.mb.toFixed(0)} MB in ${before.s.toFixed(1)} s` : ''}`,
  )
}
await fake.close()

const rowsOf = (n: number) => n.toLocaleString('en-US')
const smallest = results[0]!
console.log(`## The backfill's peak memory: demo app, OpenAI protocol on loopback, batches of ${shipped.embedding.batch_size}\n`)
const was = beforeRevision ? ` | the runner at ${beforeRevision} | now against it (memory, time)` : ''
console.log(
  `| rows | the pipeline batch alone (floor) | pipeline and backfill | above the floor | ratio to the smallest size | seconds | node --optimize-for-size | against the default (memory, time)${was} |`,
)
console.log(`| --- | --- | --- | --- | --- | --- | --- | ---${beforeRevision ? ' | --- | ---' : ''} |`)
for (const r of results) {
  const then = r.before
    ? ` | ${r.before.mb.toFixed(0)} MB in ${r.before.s.toFixed(1)} s | ${(r.backfill.mb / r.before.mb).toFixed(2)}, ${(r.backfill.s / r.before.s).toFixed(2)}`
    : ''
  console.log(
    `| ${rowsOf(r.rows)} | ${r.floor.mb.toFixed(0)} MB | ${r.backfill.mb.toFixed(0)} MB | ${(r.backfill.mb - r.floor.mb).toFixed(0)} MB | ${(r.backfill.mb / smallest.backfill.mb).toFixed(2)} | ${r.backfill.s.toFixed(1)} | ${r.small.mb.toFixed(0)} MB in ${r.small.s.toFixed(1)} s | ${(r.small.mb / r.backfill.mb).toFixed(2)}, ${(r.small.s / r.backfill.s).toFixed(2)}${then} |`,
  )
}
console.log(
  `\nWhole processes, peak resident set by GNU time; the rows are the demo's atoms, messages and topics. Command: \`npx tsx bench/backfillMemory.ts --rows ${sizes.join(',')}${beforeRevision ? ` --before ${beforeRevision}` : ''}\``,
)
