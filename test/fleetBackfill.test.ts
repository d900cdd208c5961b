import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { ResultPromise } from 'execa'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import type { Database } from '../src/db/database.ts'
import { createTarget, serverUrl, tempDir, type TestTarget } from './helpers/databases.ts'
import { type FakeOpenAI, fakeVector, startFakeOpenAI } from './helpers/fakeOpenAI.ts'
import { chainedBatches, testPlan, writePlan } from './helpers/plans.ts'
import { runCli } from './helpers/runCli.ts'
import { sessionFolders } from './helpers/sessions.ts'
import { waitFor } from './helpers/waitFor.ts'

// backfill.mode: queue on the real server: `runner start` queues the NULL rows and waits while
// real `runner worker` processes drain them through the real OpenAI SDK, answered by the fake
// server on loopback, which counts each text it embedded.

const DIMS = 8
const ROWS = 1200

describe.skipIf(!serverUrl)('the backfill a worker fleet shares (backfill.mode: queue, real server)', () => {
  let target: TestTarget
  let db: Database
  let fake: FakeOpenAI
  const dir = tempDir()
  const children: ResultPromise[] = []

  const textOf = (id: number) => `note ${id} about ${id % 7 === 0 ? 'tomatoes' : 'bread'}`
  function writeFleetPlan(backfill: Record<string, unknown> = {}) {
    const p = testPlan({ urlEnv: 'DATABASE_URL' }) as any
    p.target.tables = [{ table: 'notes', key: 'id', text_columns: ['body'], embedding_column: 'embedding', distance: 'cosine' }]
    p.embedding = { provider: 'openai', model: 'text-embedding-3-small', dimensions: DIMS, batch_size: 100 }
    // Workers beat every half second: one killed is taken for dead within 1.5 s.
    p.worker = { batch_size: 40, poll_ms: 200, lease_seconds: 30, heartbeat_seconds: 0.5, reconcile_seconds: null }
    p.backfill = { mode: 'queue', queue_chunk: 500, ...backfill }
    p.batches = chainedBatches('pipeline', 'backfill')
    return writePlan(dir, p, `plan-${Math.random().toString(36).slice(2)}.yaml`)
  }
  const env = () => ({ DATABASE_URL: target.url!, OPENAI_API_KEY: fake.key, OPENAI_BASE_URL: fake.url })
  const sessionsDir = () => join(dir, `sessions-${Math.random().toString(36).slice(2)}`)
  function startWorker(planPath: string) {
    const child = runCli(['worker', planPath], { env: env() })
    children.push(child)
    return child
  }
  const count = async (sql: string) => (await db.query<{ n: number }>(sql)).rows[0]!.n
  function backfillOutput(sessions: string) {
    const session = join(sessions, sessionFolders(sessions).at(-1)!)
    const state = JSON.parse(readFileSync(join(session, 'coordination-state.json'), 'utf8'))
    const batch = state.batches.find((b: { step: string }) => b.step === 'backfill')
    return { state, output: batch.output_path ? JSON.parse(readFileSync(join(session, batch.output_path), 'utf8')) : null }
  }
  /** Every row holds the embedding of its own text, recorded once in the runner's metadata; nothing is left queued or failed. */
  async function expectEveryRowEmbeddedOnce() {
    const { rows } = await db.query<{ id: number; e: string | null }>('SELECT id, embedding::text AS e FROM notes ORDER BY id')
    const wrong = rows.filter((r) => {
      const e = r.e ? (JSON.parse(r.e) as number[]) : null
      return !e || fakeVector(textOf(r.id), DIMS).some((v, i) => Math.abs(v - e[i]!) > 1e-5)
    })
    expect(wrong.map((r) => r.id)).toEqual([])
    expect(await count(`SELECT count(*)::int AS n FROM runner.embedding_meta WHERE table_name = 'public.notes'`)).toBe(ROWS)
    expect(await count('SELECT count(*)::int AS n FROM runner.embedding_queue')).toBe(0)
    expect(await count('SELECT count(*)::int AS n FROM runner.embedding_failures')).toBe(0)
  }

  beforeAll(async () => {
    target = await createTarget('postgres')
    db = await target.open()
  })
  beforeEach(async () => {
    fake = await startFakeOpenAI()
    await db.exec(`DROP SCHEMA IF EXISTS runner CASCADE; DROP TABLE IF EXISTS notes; CREATE EXTENSION IF NOT EXISTS vector;
      CREATE TABLE notes (id bigint PRIMARY KEY, body text, embedding vector(${DIMS}))`)
    await db.query(
      `INSERT INTO notes (id, body) SELECT g, $1 || g || ' about ' || CASE WHEN g % 7 = 0 THEN 'tomatoes' ELSE 'bread' END FROM generate_series(1, $2::int) g`,
      ['note ', ROWS],
    )
  })
  afterAll(async () => {
    for (const child of children) child.kill('SIGKILL')
    await fake?.close()
    await db?.close()
    await target?.drop()
  })

  it('queues the rows and waits while two workers drain them; one SIGKILLed mid-batch costs at most its batch again, and every row is written once', async () => {
    const planPath = writeFleetPlan()
    const sessions = sessionsDir()
    fake.delayMs = 100 // a provider bound: each answer takes 100 ms
    const startedAt = Date.now()
    const start = runCli(['start', planPath, '--sessions-dir', sessions], { env: env() })
    const doomed = startWorker(planPath)
    const survivor = startWorker(planPath)
    // Once a few batches are done, the first worker is killed while it holds a batch (its id is host:pid:…).
    await waitFor('a few batches embedded', async () => fake.requests.length >= 6, 30_000)
    await waitFor('the first worker to hold a batch', async () =>
      count(`SELECT count(*)::int AS n FROM runner.embedding_queue WHERE locked_by LIKE '%:${doomed.pid}:%'`),
    )
    doomed.kill('SIGKILL')
    const result = await start
    const wallSeconds = (Date.now() - startedAt) / 1000
    expect(result.exitCode, result.all).toBe(0)
    expect((await doomed).signal).toBe('SIGKILL')

    await expectEveryRowEmbeddedOnce()
    // The provider saw each text once, but for the killed worker's batch (at most worker.batch_size texts again).
    const again = [...fake.embedded.entries()].filter(([text, n]) => text.startsWith('note ') && n > 1).length
    expect(again).toBeGreaterThan(0) // the killed worker's batch was in flight: its rows were embedded again by the survivor
    expect(again).toBeLessThanOrEqual(40)
    expect([...fake.embedded.keys()].filter((t) => t.startsWith('note ')).length).toBe(ROWS)

    const { output } = backfillOutput(sessions)
    expect(output.mode).toBe('queue')
    expect(output.fleet.queued).toBe(ROWS)
    expect(output.fleet.workers.length).toBe(2)
    // The wait is counted once, however often it was saved on the way.
    expect(output.fleet.waited_seconds).toBeGreaterThan(0.5)
    expect(output.fleet.waited_seconds).toBeLessThan(wallSeconds)
    expect(output.tables[0]).toMatchObject({ table: 'public.notes', written: ROWS, failed: 0, remaining_null: 0 })
    expect(result.all).toMatch(/1,200 rows queued for the workers/)
    expect(result.all).toMatch(/by 2 worker\(s\) from the queue/)
    survivor.kill('SIGTERM')
    expect((await survivor).exitCode).toBe(0)
  })

  it('queues a table partitioned by time and keyed (id, ts) partition by partition, and one worker embeds every row', async () => {
    await db.exec(`CREATE TABLE events (id bigint NOT NULL, ts timestamptz NOT NULL, body text, embedding vector(${DIMS}), PRIMARY KEY (id, ts)) PARTITION BY RANGE (ts);
      CREATE TABLE events_2026_01 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
      CREATE TABLE events_2026_02 PARTITION OF events FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
      CREATE TABLE events_2026_03 PARTITION OF events FOR VALUES FROM ('2026-03-01') TO ('2026-04-01');
      INSERT INTO events (id, ts, body) SELECT g, '2026-01-01'::timestamptz + (g % 90) * interval '1 day', 'event ' || g FROM generate_series(1, 600) g`)
    const p = testPlan({ urlEnv: 'DATABASE_URL' }) as any
    p.target.tables = [{ table: 'events', key: ['id', 'ts'], text_columns: ['body'], embedding_column: 'embedding', distance: 'cosine' }]
    p.embedding = { provider: 'openai', model: 'text-embedding-3-small', dimensions: DIMS, batch_size: 100 }
    p.worker = { batch_size: 50, poll_ms: 200, heartbeat_seconds: 0.5, reconcile_seconds: null }
    p.backfill = { mode: 'queue', queue_chunk: 70 }
    p.batches = chainedBatches('pipeline', 'backfill')
    const planPath = writePlan(dir, p, 'partitioned.yaml')
    const sessions = sessionsDir()
    const worker = startWorker(planPath)
    const result = await runCli(['start', planPath, '--sessions-dir', sessions], { env: env() })
    expect(result.exitCode, result.all).toBe(0)
    const { rows } = await db.query<{ id: number; e: string | null }>('SELECT id, embedding::text AS e FROM events')
    const wrong = rows.filter(
      (r) => !r.e || fakeVector(`event ${r.id}`, DIMS).some((v, i) => Math.abs(v - (JSON.parse(r.e!) as number[])[i]!) > 1e-5),
    )
    expect(wrong.map((r) => r.id)).toEqual([])
    expect(rows).toHaveLength(600)
    expect(await count('SELECT count(*)::int AS n FROM runner.embedding_queue')).toBe(0)
    const { output, state } = backfillOutput(sessions)
    expect(output.fleet.queued).toBe(600)
    expect(output.tables[0]).toMatchObject({ table: 'public.events', written: 600, remaining_null: 0 })
    // Each partition was queued on its own, to its end.
    const progress = JSON.parse(readFileSync(join(sessions, sessionFolders(sessions).at(-1)!, 'batch-progress.json'), 'utf8'))
    const cursor = progress.backfill.cursor
    expect(Object.keys(cursor.fleet.after).sort()).toEqual(
      ['events_2026_01', 'events_2026_02', 'events_2026_03'].map((p) => `public.events "public"."${p}"`),
    )
    expect(Object.values(cursor.fleet.after)).toEqual([null, null, null])
    expect(state.batches.every((b: { status: string }) => b.status === 'completed')).toBe(true)
    worker.kill('SIGTERM')
    await worker
  })

  it('stops, resumable, when no worker is alive, and a resume with a worker running finishes without queuing anything twice', async () => {
    const planPath = writeFleetPlan({ no_worker_seconds: 2 })
    const sessions = sessionsDir()
    const first = await runCli(['start', planPath, '--sessions-dir', sessions], { env: env() })
    expect(first.exitCode, first.all).not.toBe(0)
    expect(first.all).toMatch(
      /1,200 rows wait in "runner"\."embedding_queue" and no worker has been alive for 2 s .*runner worker <plan>.*runner resume/s,
    )
    expect(first.all).not.toMatch(/\n\s+at /) // a clear error, not a stack trace
    expect(await count('SELECT count(*)::int AS n FROM runner.embedding_queue')).toBe(ROWS)
    expect(await count('SELECT count(*)::int AS n FROM notes WHERE embedding IS NOT NULL')).toBe(0)
    expect(fake.embedded.size).toBe(1) // the provider's probe only: the backfill itself embedded nothing

    const worker = startWorker(planPath)
    const resumed = await runCli(['resume', '--sessions-dir', sessions], { env: env() })
    expect(resumed.exitCode, resumed.all).toBe(0)
    await expectEveryRowEmbeddedOnce()
    expect([...fake.embedded.entries()].filter(([t, n]) => t.startsWith('note ') && n !== 1)).toEqual([])
    const { output } = backfillOutput(sessions)
    expect(output.fleet.queued).toBe(ROWS) // not twice: the resume's queuing found its cursor at the end
    expect(output.tables[0].written).toBe(ROWS)
    worker.kill('SIGTERM')
    await worker
  })
})

describe('backfill.mode: queue on the embedded database', () => {
  it('is refused before any change: no worker can reach a database only this process opens', async () => {
    const dir = tempDir()
    const p = testPlan({ embeddedPath: join(dir, 'embedded') }) as any
    p.target.tables = [{ table: 'atoms', key: 'id', text_columns: ['title', 'content'], embedding_column: 'embedding', distance: 'cosine' }]
    p.embedding = { provider: 'local', model: 'local', dimensions: 1536 }
    p.backfill = { mode: 'queue' }
    p.batches = chainedBatches('pipeline', 'backfill')
    const planPath = writePlan(dir, p)
    const sessions = join(dir, 'sessions')
    const result = await runCli(['start', planPath, '--sessions-dir', sessions], { env: { TEST_TARGET_URL: '' }, cwd: dir })
    expect(result.exitCode, result.all).toBe(2)
    expect(result.all).toMatch(
      /backfill\.mode: queue needs workers that reach the database, and the embedded database is opened by this process alone/,
    )
    const state = JSON.parse(readFileSync(join(sessions, sessionFolders(sessions)[0]!, 'coordination-state.json'), 'utf8'))
    // The refusal stops the first batch that would write, before it writes: the pipeline batch fails with it, the backfill never starts.
    expect(state.batches.map((b: { status: string }) => b.status)).toEqual(['failed', 'pending'])
    expect(result.all).toMatch(/nothing was changed/)
  })
})
