// The whole plan at scale on the real server: the demo application at N rows x 1536 (default
// 1,000,000), the backfill-first plan, the local provider, --with-worker. Records the wall time
// of each batch, the runner's peak memory (GNU time's maximum resident set), the server's disk
// (table, TOAST, indexes, WAL written) and every criterion, against the targets: the
// whole plan under 20 minutes, the runner under 1 GB, validate under 3 minutes.
//   npx tsx bench/scale.ts [--rows 1000000] [--max-build-mb 12000]
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { Session } from '../src/checkpoint/session.ts'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import pg from 'pg'
import { stringify } from 'yaml'
import { loadPlan } from '../src/plan/loadPlan.ts'
import { freshBenchDatabase } from './lib/benchDatabase.ts'
import { buildCli } from './lib/buildCli.ts'

await buildCli()

const arg = (name: string, fallback: number) => Number(process.argv[process.argv.indexOf(name) + 1] ?? 0) || fallback
const rows = arg('--rows', 1_000_000)
const root = join(import.meta.dirname, '..')
const bin = join(root, 'bin/runner.js')
const log = (m: string) => process.stderr.write(`${m}\n`)
const work = mkdtempSync(join(tmpdir(), 'bench-scale-'))

const url = await freshBenchDatabase(`runner_bench_scale_${rows}`)
log(`demo init: ${rows.toLocaleString('en-US')} rows ...`)
let started = performance.now()
await execa('node', [bin, 'demo', 'init', '--rows', String(rows), '--database', url, '--labels', join(work, 'labels.json')], {
  stderr: 'inherit',
})
const initSeconds = (performance.now() - started) / 1000

const plan = structuredClone(loadPlan(join(root, 'plans/feature-1-backfill-first.yaml')).plan) as any
plan.embedding.provider = 'local'
// As the index batch advises when the graph outgrows the plan's cap: raised to fit it (the
// runner still caps the build at half the machine's free memory).
plan.index.max_maintenance_work_mem_mb = arg('--max-build-mb', 12_000)
plan.validate.labelled_queries = join(work, 'labels.json')
const planPath = join(work, 'plan.yaml')
writeFileSync(planPath, stringify(plan))

const db = new pg.Client({ connectionString: url })
await db.connect()
const walBefore = (await db.query('SELECT pg_current_wal_lsn()::text AS l')).rows[0].l
log('the plan ...')
started = performance.now()
const run = await execa(
  '/usr/bin/time',
  ['-f', '%e %M', 'node', bin, 'start', planPath, '--with-worker', '--sessions-dir', join(work, 'sessions')],
  {
    cwd: work,
    env: { DATABASE_URL: url, RUNNER_CACHE_DIR: join(root, '.runner/cache') },
    reject: false,
    stderr: 'pipe',
  },
)
const wall = (performance.now() - started) / 1000
process.stderr.write(run.stderr.split('\n').slice(-12).join('\n'))
const [, peakKb] = run.stderr.trim().split('\n').at(-1)!.split(' ').map(Number)
const wal = (await db.query('SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::float8 AS b', [walBefore])).rows[0].b as number
const { rows: disk } = await db.query<{ t: string; heap: number; toast: number; indexes: number }>(
  `SELECT c.relname AS t, pg_relation_size(c.oid)::float8 AS heap, coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0)::float8 AS toast,
          pg_indexes_size(c.oid)::float8 AS indexes
   FROM pg_class c WHERE c.relname IN ('atoms', 'messages', 'topics') AND c.relnamespace = 'public'::regnamespace ORDER BY 1`,
)
await db.end()

const session = Session.findLatest(join(work, 'sessions'))!
const state = JSON.parse(readFileSync(join(session, 'coordination-state.json'), 'utf8'))
const seconds = (b: any) => (b.started_at && b.ended_at ? (Date.parse(b.ended_at) - Date.parse(b.started_at)) / 1000 : Number.NaN)
const gb = (bytes: number) => `${(bytes / 2 ** 30).toFixed(2)} GB`
const validate = state.batches.find((b: any) => b.step === 'validate' || b.id === 'validate')
process.stdout.write(
  [
    `## The whole plan at ${rows.toLocaleString('en-US')} rows x 1536: backfill-first, local provider, --with-worker`,
    '',
    `Exit code ${run.exitCode}; session status ${state.status}. Demo set-up (not part of the plan): ${initSeconds.toFixed(1)} s.`,
    '',
    '| batch | status | seconds |',
    '| --- | --- | --- |',
    ...state.batches.map((b: any) => `| ${b.id} | ${b.status} | ${seconds(b).toFixed(1)} |`),
    `| **whole plan** (target < 1,200 s) | | **${wall.toFixed(0)}** |`,
    '',
    `Runner peak memory: ${(peakKb! / 1024).toFixed(0)} MB (target < 1,024 MB). Validate: ${seconds(validate).toFixed(0)} s (target < 180 s). WAL written during the plan: ${gb(wal)}.`,
    '',
    '| table | heap | TOAST | indexes |',
    '| --- | --- | --- | --- |',
    ...disk.map((d) => `| ${d.t} | ${gb(d.heap)} | ${gb(d.toast)} | ${gb(d.indexes)} |`),
    '',
    '| criterion | threshold | measured | result |',
    '| --- | --- | --- | --- |',
    ...(state.criteria ?? []).map(
      (c: any) => `| ${c.description} | ${c.threshold} | ${c.measured.replace(/\|/g, '/')} | ${c.passed ? 'pass' : 'FAIL'} |`,
    ),
    '',
    `Command: \`npx tsx bench/scale.ts --rows ${rows} --max-build-mb ${plan.index.max_maintenance_work_mem_mb}\``,
    '',
  ].join('\n'),
)
