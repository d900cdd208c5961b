// Workers SIGKILLed at random under a steady insert load, against the same load with no
// kill, in the same run: rows embedded more than once, the longest a row waited for its
// embedding, and jobs lost (rows never embedded, or dead-lettered: must be 0).
//   npx tsx bench/workerChaos.ts [--seconds 20] [--rate 40] [--workers 3]
import { writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { execa, type ResultPromise } from 'execa'
import pg from 'pg'
import { stringify } from 'yaml'
import { startFakeOpenAI } from '../test/helpers/fakeOpenAI.ts'
import { BENCH_SERVER, urlFor } from './lib/benchDatabase.ts'
import { buildCli } from './lib/buildCli.ts'

await buildCli()

const arg = (name: string, fallback: number) => Number(process.argv[process.argv.indexOf(name) + 1] ?? 0) || fallback
const seconds = arg('--seconds', 20)
const rate = arg('--rate', 40)
const workers = arg('--workers', 3)
const bin = join(import.meta.dirname, '../bin/runner.js')

interface Outcome {
  inserted: number
  kills: number
  embeddedTwice: number
  longestWaitSeconds: number
  p95WaitSeconds: number
  lost: number
  deadLettered: number
}

async function once(kill: boolean, seed: number): Promise<Outcome> {
  const name = `bench_worker_chaos_${kill ? 'kill' : 'calm'}`
  const admin = new pg.Client({ connectionString: BENCH_SERVER })
  await admin.connect()
  await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`)
  await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`)
  await admin.end()
  const url = urlFor(name)
  const db = new pg.Client({ connectionString: url })
  await db.connect()
  const fake = await startFakeOpenAI()
  fake.delayMs = 30
  const running = new Set<ResultPromise>()
  try {
    await db.query(`CREATE EXTENSION vector; CREATE TABLE docs (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL,
      inserted_at timestamptz NOT NULL DEFAULT clock_timestamp(), embedding vector(16))`)
    const plan = {
      id: 'worker-chaos',
      title: 'Worker chaos',
      target: {
        database_url_env: 'DATABASE_URL',
        tables: [{ table: 'docs', key: 'id', text_columns: ['body'], embedding_column: 'embedding', distance: 'cosine' }],
      },
      embedding: { provider: 'openai', model: 'text-embedding-3-small', dimensions: 16, batch_size: 32 },
      worker: { batch_size: 16, heartbeat_seconds: 0.5, lease_seconds: 30, poll_ms: 200, max_attempts: 5 },
      batches: [{ id: 'pipeline', title: 'Pipeline', agent: 'fastapi-backend-expert', step: 'pipeline' }],
    }
    const planPath = join(tmpdir(), `${name}.yaml`)
    writeFileSync(planPath, stringify(plan))
    const env = { DATABASE_URL: url, OPENAI_API_KEY: fake.key, OPENAI_BASE_URL: fake.url }
    const installed = await execa('node', [bin, 'start', planPath, '--sessions-dir', join(tmpdir(), `${name}-sessions`)], {
      env,
      reject: false,
      all: true,
    })
    if (installed.exitCode !== 0) throw new Error(`installing the pipeline failed:\n${installed.all}`)
    const startWorker = () => {
      const child = execa('node', [bin, 'worker', planPath], { env, reject: false })
      running.add(child)
      void child.finally(() => running.delete(child))
    }
    for (let i = 0; i < workers; i++) startWorker()
    // The load starts once every worker is up: start-up time is not what is measured.
    for (;;) {
      const { rows } = await db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM runner.workers WHERE last_seen > now() - interval '2 seconds'`,
      )
      if (rows[0]!.n >= workers) break
      await sleep(100)
    }

    let random = seed
    const next = () => (random = (random * 1103515245 + 12345) % 2147483648) / 2147483648
    let inserted = 0
    let kills = 0
    let nextKill = Date.now() + 1000 + next() * 2000
    const until = Date.now() + seconds * 1000
    while (Date.now() < until) {
      // A steady load: `rate` rows a second, in ten small inserts.
      await db.query(`INSERT INTO docs (body) SELECT 'row ' || $1::int || '-' || g || ' of the load' FROM generate_series(1, $2::int) g`, [
        inserted,
        Math.ceil(rate / 10),
      ])
      inserted += Math.ceil(rate / 10)
      if (kill && Date.now() > nextKill && running.size > 0) {
        const victim = [...running][Math.floor(next() * running.size)]!
        victim.kill('SIGKILL')
        kills++
        startWorker()
        nextKill = Date.now() + 1000 + next() * 2000
      }
      await sleep(100)
    }
    const drainedBy = Date.now() + 60_000
    for (;;) {
      const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM docs WHERE embedding IS NULL')
      if (rows[0]!.n === 0 || Date.now() > drainedBy) break
      await sleep(200)
    }
    for (const child of running) child.kill('SIGTERM')
    await Promise.all([...running])
    const lost = (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM docs WHERE embedding IS NULL')).rows[0]!.n
    const deadLettered = (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM runner.embedding_failures')).rows[0]!.n
    const waits = (
      await db.query<{ s: number }>(
        `SELECT extract(epoch FROM m.embedded_at - d.inserted_at)::float8 AS s FROM docs d JOIN runner.embedding_meta m ON m.table_name = 'public.docs' AND m.row_key = d.id::text ORDER BY 1`,
      )
    ).rows.map((r) => r.s)
    const bodies = (await db.query<{ body: string }>('SELECT body FROM docs')).rows.map((r) => r.body)
    return {
      inserted,
      kills,
      embeddedTwice: bodies.filter((b) => (fake.embedded.get(b) ?? 0) > 1).length,
      longestWaitSeconds: waits.at(-1) ?? Number.NaN,
      p95WaitSeconds: waits[Math.max(0, Math.ceil(waits.length * 0.95) - 1)] ?? Number.NaN,
      lost,
      deadLettered,
    }
  } finally {
    for (const child of running) child.kill('SIGKILL')
    await fake.close()
    await db.end()
  }
}

const calm = await once(false, 1)
const chaos = await once(true, 7)
const row = (label: string, o: Outcome) =>
  `| ${label} | ${o.inserted.toLocaleString('en-US')} | ${o.kills} | ${o.embeddedTwice} | ${o.p95WaitSeconds.toFixed(2)} s | ${o.longestWaitSeconds.toFixed(2)} s | ${o.lost} | ${o.deadLettered} |`
process.stdout.write(
  [
    `## Workers SIGKILLed at random under load: ${workers} workers, ${rate} inserts/s for ${seconds} s`,
    '',
    '| run | rows inserted | workers killed | rows embedded twice | insert to embedding p95 | longest | rows never embedded | dead-lettered |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    row('no kill (baseline)', calm),
    row('kills every 1 to 3 s', chaos),
    '',
    `Under kills the longest wait was ${(chaos.longestWaitSeconds / calm.longestWaitSeconds).toFixed(1)}x the baseline's (a killed worker's jobs wait for three missed heartbeats, 1.5 s, then are claimed); ${chaos.lost + chaos.deadLettered === 0 ? 'no job was lost' : `**${chaos.lost + chaos.deadLettered} jobs lost**`}. Command: \`npx tsx bench/workerChaos.ts --seconds ${seconds} --rate ${rate} --workers ${workers}\``,
    '',
  ].join('\n'),
)
