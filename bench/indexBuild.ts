// The index batch against a bare CREATE INDEX with the same settings, and against the server's
// default maintenance_work_mem, in one run on the real server.
//   npx tsx bench/indexBuild.ts [--rows N]     (default 100000 x 1536)
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { Session } from '../src/checkpoint/session.ts'
import { join } from 'node:path'
import { execa } from 'execa'
import pg from 'pg'
import { stringify } from 'yaml'
import { ensureBenchDatabase } from './lib/benchDatabase.ts'
import { buildCli } from './lib/buildCli.ts'

await buildCli()

const rows = Number(process.argv[process.argv.indexOf('--rows') + 1] ?? 0) || 100_000
const dims = 1536
const log = (m: string) => process.stderr.write(`${m}\n`)
const url = await ensureBenchDatabase(`runner_bench_${rows}`, rows, dims, log)
const db = new pg.Client({ connectionString: url })
await db.connect()
const dropIndexes = () => db.query(`DROP INDEX IF EXISTS items_embedding_hnsw`)

async function bare(memMb: number | null): Promise<number> {
  await dropIndexes()
  await db.query(memMb ? `SET maintenance_work_mem = '${memMb}MB'` : 'RESET maintenance_work_mem')
  const started = performance.now()
  await db.query(
    `CREATE INDEX CONCURRENTLY items_embedding_hnsw ON items USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)`,
  )
  const seconds = (performance.now() - started) / 1000
  await db.query('RESET maintenance_work_mem')
  return seconds
}

async function runnerIndexBatch(): Promise<{ seconds: number; wallSeconds: number; memMb: number }> {
  await dropIndexes()
  const dir = join('bench/.data', `index-${Date.now()}`)
  mkdirSync(dir, { recursive: true })
  const plan = {
    id: 'bench-index',
    title: 'Index benchmark',
    target: { tables: [{ table: 'items', key: 'id', text_columns: ['body'], embedding_column: 'embedding', distance: 'cosine' }] },
    embedding: { provider: 'local', model: 'local', dimensions: dims },
    batches: [
      { id: 'diagnose', title: 'Diagnose', agent: 'vector-search-engineer', step: 'diagnose', guards: { read_only: true } },
      { id: 'index', title: 'Index', agent: 'database-reliability-engineer', step: 'index', depends_on: ['diagnose'] },
    ],
  }
  writeFileSync(join(dir, 'plan.yaml'), stringify(plan))
  const started = performance.now()
  await execa('node', ['bin/runner.js', 'start', join(dir, 'plan.yaml'), '--sessions-dir', join(dir, 'sessions')], {
    env: { DATABASE_URL: url },
    stderr: 'inherit',
  })
  const wallSeconds = (performance.now() - started) / 1000
  const session = Session.findLatest(join(dir, 'sessions'))!
  const output = JSON.parse(readFileSync(join(session, 'batches/02-index/output.json'), 'utf8'))
  return { seconds: output.indexes[0].build_seconds, wallSeconds, memMb: output.indexes[0].maintenance_work_mem_mb }
}

const runner = await runnerIndexBatch()
const same = await bare(runner.memMb)
const defaults = await bare(null)
const defaultMem = (await db.query(`SELECT current_setting('maintenance_work_mem') AS m`)).rows[0].m
await db.end()

const lines = [
  `## Index build: ${rows.toLocaleString('en-US')} x ${dims}, hnsw m=16 ef_construction=64, cosine`,
  '',
  '| build | seconds | ratio to the bare build with the same memory |',
  '| --- | --- | --- |',
  `| runner index batch (maintenance_work_mem ${runner.memMb} MB; CREATE INDEX statement alone) | ${runner.seconds.toFixed(1)} | ${(runner.seconds / same).toFixed(3)} |`,
  `| runner index batch, whole process (start, diagnose, build, validate) | ${runner.wallSeconds.toFixed(1)} | ${(runner.wallSeconds / same).toFixed(3)} |`,
  `| bare CREATE INDEX CONCURRENTLY, maintenance_work_mem ${runner.memMb} MB | ${same.toFixed(1)} | 1.000 |`,
  `| bare CREATE INDEX CONCURRENTLY, server default maintenance_work_mem (${defaultMem}) | ${defaults.toFixed(1)} | ${(defaults / same).toFixed(2)} |`,
  '',
  `Default memory against the runner: ${(defaults / runner.seconds).toFixed(1)}x slower. Command: \`npx tsx bench/indexBuild.ts --rows ${rows}\``,
  '',
]
process.stdout.write(`${lines.join('\n')}\n`)
