import { readFileSync, existsSync } from 'node:fs'
import { sessionFolders } from './helpers/sessions.ts'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { ResultPromise } from 'execa'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import type { Database } from '../src/db/database.ts'
import { loadPlan } from '../src/plan/loadPlan.ts'
import { installPipeline } from '../src/pipeline/installPipeline.ts'
import { runnerSchema } from '../src/db/runnerSchema/objects.ts'
import { resolveTargets } from '../src/db/target.ts'
import { createTarget, serverUrl, tempDir, type TestTarget } from './helpers/databases.ts'
import { fakeVector, startFakeOpenAI, type FakeOpenAI } from './helpers/fakeOpenAI.ts'
import { testPlan, writePlan, chainedBatches } from './helpers/plans.ts'
import { runCli } from './helpers/runCli.ts'
import { waitFor } from './helpers/waitFor.ts'

// The auto-embedding pipeline on the real server: real `runner worker` processes, the real
// OpenAI SDK against a fake server on loopback that counts what it embedded.

const DIMS = 8

describe.skipIf(!serverUrl)('the auto-embedding pipeline (real server)', () => {
  let target: TestTarget
  let db: Database
  let fake: FakeOpenAI
  const dir = tempDir()
  const children: ResultPromise[] = []

  function plan(worker: Record<string, number> = {}, batches?: unknown[]) {
    const p = testPlan({ urlEnv: 'DATABASE_URL' })
    p.target.tables = [{ table: 'docs', key: 'id', text_columns: ['title', 'body'], embedding_column: 'embedding', distance: 'cosine' }]
    p.embedding = { provider: 'openai', model: 'text-embedding-3-small', dimensions: DIMS, batch_size: 100 } as any
    ;(p as any).worker = { poll_ms: 200, lease_seconds: 30, ...worker }
    if (batches) p.batches = batches as any
    return p
  }
  const env = () => ({ DATABASE_URL: target.url!, OPENAI_API_KEY: fake.key, OPENAI_BASE_URL: fake.url })
  function startWorker(planPath: string, args: string[] = []) {
    const child = runCli(['worker', planPath, ...args], { env: env() })
    children.push(child)
    return child
  }
  const embeddingOf = async (id: number) => {
    const { rows } = await db.query<{ e: string | null }>('SELECT embedding::text AS e FROM docs WHERE id = $1', [id])
    return rows[0]?.e ? (JSON.parse(rows[0].e) as number[]) : null
  }
  const isEmbeddingOf = (e: number[] | null, text: string) =>
    e !== null && fakeVector(text, DIMS).every((v, i) => Math.abs(v - e[i]!) < 1e-5)
  const count = async (sql: string) => (await db.query<{ n: number }>(sql)).rows[0]!.n
  /** A worker whose next request answers slowly, with a batch of five new rows in that request. */
  async function startWorkerWithBatchInFlight(planPath: string, slowMs: number, prefix: string) {
    const worker = startWorker(planPath)
    await workerListening()
    const before = fake.arrived
    fake.faults.push({ type: 'slow', ms: slowMs })
    await db.query(`INSERT INTO docs (id, title, body) SELECT g, $1 || ' ' || g, 'x' FROM generate_series(1, 5) g`, [prefix])
    await waitFor('the batch to be in flight', async () => fake.arrived > before)
    return { worker } // wrapped: an async function would await the child process itself
  }
  /** A started worker is ready once its LISTEN connection shows in pg_stat_activity. */
  const workerListening = () =>
    waitFor(
      'the worker to listen',
      async () =>
        (await count(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'runner worker' AND datname = current_database() AND query ILIKE 'LISTEN%'`,
        )) > 0,
    )

  beforeAll(async () => {
    target = await createTarget('postgres')
    db = await target.open()
  })
  beforeEach(async () => {
    fake = await startFakeOpenAI()
    await db.exec(`DROP SCHEMA IF EXISTS runner CASCADE; DROP TABLE IF EXISTS docs; CREATE EXTENSION IF NOT EXISTS vector;
      CREATE TABLE docs (id bigint PRIMARY KEY, title text NOT NULL, body text, category text, embedding vector(${DIMS}))`)
  })
  afterAll(async () => {
    for (const child of children) child.kill('SIGKILL')
    await fake?.close()
    await db?.close()
    await target?.drop()
  })

  async function install(p = plan()) {
    const path = writePlan(dir, p, `plan-${Math.random().toString(36).slice(2)}.yaml`)
    const { plan: loaded } = loadPlan(path)
    await installPipeline(db, runnerSchema(loaded.target.runner_schema), await resolveTargets(db, loaded))
    return path
  }

  it('embeds an INSERT, replaces the embedding on an UPDATE of the text, and queues nothing for other columns', async () => {
    const planPath = await install()
    const worker = startWorker(planPath)
    await db.query(`INSERT INTO docs (id, title, body) VALUES (1, 'Tomato sauce', 'Simmer it slowly')`)
    await waitFor('the insert to be embedded', async () => isEmbeddingOf(await embeddingOf(1), 'Tomato sauce Simmer it slowly'))

    await db.query(`UPDATE docs SET body = 'Simmer it for an hour' WHERE id = 1`)
    expect(await embeddingOf(1)).toBeNull() // the stale embedding is gone in the writer's own transaction
    await waitFor('the update to be embedded', async () => isEmbeddingOf(await embeddingOf(1), 'Tomato sauce Simmer it for an hour'))

    const requests = fake.requests.length
    await db.query(`UPDATE docs SET category = 'cooking' WHERE id = 1`)
    await db.query(`UPDATE docs SET body = body WHERE id = 1`) // same text
    expect(await count('SELECT count(*)::int AS n FROM runner.embedding_queue')).toBe(0)
    expect(isEmbeddingOf(await embeddingOf(1), 'Tomato sauce Simmer it for an hour')).toBe(true)

    await db.query('DELETE FROM docs WHERE id = 1')
    worker.kill('SIGTERM')
    const result = await worker
    expect(result.exitCode, result.all).toBe(0)
    expect(result.all).toMatch(/worker stopped: 2 embedded/)
    expect(fake.requests.length).toBe(requests)
  })

  it('four workers drain 10,000 jobs with each row embedded exactly once', async () => {
    const planPath = await install(plan({ batch_size: 200 }))
    await db.exec(`INSERT INTO docs (id, title, body) SELECT g, 'doc ' || g, 'body of ' || g FROM generate_series(1, 10000) g`)
    expect(await count('SELECT count(*)::int AS n FROM runner.embedding_queue')).toBe(10000)
    fake.delayMs = 5
    const workers = [0, 1, 2, 3].map(() => startWorker(planPath, ['--until-empty']))
    const results = await Promise.all(workers)
    for (const r of results) expect(r.exitCode, r.all).toBe(0)
    expect(await count('SELECT count(*)::int AS n FROM docs WHERE embedding IS NULL')).toBe(0)
    expect(await count('SELECT count(*)::int AS n FROM runner.embedding_queue')).toBe(0)
    const counts = [...fake.embedded].filter(([t]) => t.startsWith('doc '))
    expect(counts).toHaveLength(10000)
    // Named, with the workers' own logs, if it ever fails again (it did once in CI under load, and never here in a row of runs).
    const twice = counts.filter(([, n]) => n > 1).map(([text, n]) => `${text} x${n}`)
    expect(twice, results.map((r) => r.all).join('\n---\n')).toEqual([])
    const perWorker = results.map((r) => Number(/worker stopped: (\d+) embedded/.exec(r.all)![1]))
    expect(perWorker.reduce((a, b) => a + b, 0)).toBe(10000)
    expect(perWorker.filter((n) => n > 0).length).toBeGreaterThan(1) // the work was shared
  })

  it('ends with the embedding of the new text when the text changes while the old one is being embedded', async () => {
    const planPath = await install()
    const worker = startWorker(planPath)
    await workerListening()
    const before = fake.arrived
    fake.faults.push({ type: 'slow', ms: 1500 })
    await db.query(`INSERT INTO docs (id, title, body) VALUES (7, 'Old title', 'old body')`)
    await waitFor('the old text to be in flight', async () => fake.arrived > before)
    await db.query(`UPDATE docs SET title = 'New title' WHERE id = 7`)
    await waitFor('the new text to be embedded', async () => isEmbeddingOf(await embeddingOf(7), 'New title old body'))
    await sleep(1700) // the slow answer for the old text has arrived and been refused by now
    expect(isEmbeddingOf(await embeddingOf(7), 'New title old body')).toBe(true)
    expect(fake.embedded.get('Old title old body')).toBe(1)
    worker.kill('SIGTERM')
    await worker
  })

  it('a worker killed with SIGKILL mid-batch leaves jobs that another finishes after the lease expires', async () => {
    const planPath = await install(plan({ lease_seconds: 2 }))
    const { worker: first } = await startWorkerWithBatchInFlight(planPath, 10_000, 'doc')
    first.kill('SIGKILL')
    await first
    const locked = await count(`SELECT count(*)::int AS n FROM runner.embedding_queue WHERE locked_by IS NOT NULL AND attempts = 1`)
    expect(locked).toBe(5)
    const killedAt = Date.now()
    const second = startWorker(planPath)
    await waitFor(
      'the second worker to finish the jobs',
      async () => (await count('SELECT count(*)::int AS n FROM docs WHERE embedding IS NULL')) === 0,
    )
    expect(Date.now() - killedAt).toBeGreaterThanOrEqual(1500)
    second.kill('SIGTERM')
    await second
  })

  it('sends a row the provider always refuses to the failed-jobs table, and completes the rest', async () => {
    const planPath = await install(plan({ max_attempts: 2 }))
    fake.badInputs.add('poison')
    const worker = startWorker(planPath)
    await db.exec(`INSERT INTO docs (id, title, body) VALUES (1, 'fine', 'one'), (2, 'this is poison', 'two'), (3, 'fine', 'three')`)
    await waitFor(
      'the bad row to fail for good',
      async () => (await count('SELECT count(*)::int AS n FROM runner.embedding_failures')) === 1,
      20_000,
    ).catch(async (error) => {
      worker.kill('SIGTERM')
      console.log((await worker).all, await db.query('SELECT * FROM runner.embedding_queue'))
      throw error
    })
    const { rows } = await db.query<{ row_key: string; attempts: number; last_error: string }>(
      'SELECT row_key, attempts, last_error FROM runner.embedding_failures',
    )
    expect(rows[0]).toMatchObject({ row_key: '2', attempts: 2 })
    expect(rows[0]!.last_error).toMatch(/^400: .*is not allowed/)
    expect(await count('SELECT count(*)::int AS n FROM docs WHERE embedding IS NULL')).toBe(1)
    expect(await count('SELECT count(*)::int AS n FROM runner.embedding_queue')).toBe(0)
    worker.kill('SIGTERM')
    await worker
  })

  it('waits out its database connections being cut, re-listens, and goes on embedding in the same process', async () => {
    const planPath = await install()
    const worker = startWorker(planPath)
    await workerListening()
    const cut = await count(
      `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = 'runner worker' AND datname = current_database()`,
    )
    expect(cut).toBeGreaterThanOrEqual(1)
    await db.query(`INSERT INTO docs (id, title, body) VALUES (900, 'after the cut', 'x')`)
    await waitFor('the row to be embedded', async () => isEmbeddingOf(await embeddingOf(900), 'after the cut x'))
    await workerListening()
    expect(worker.exitCode).toBeNull() // the same process, still running
    worker.kill('SIGTERM')
    const result = await worker
    expect(result.exitCode, result.all).toBe(0)
    expect(result.all).not.toMatch(/\n\s+at /)
  })

  it('on SIGTERM finishes the batch in flight, writes it, and exits 0', async () => {
    const planPath = await install()
    const { worker } = await startWorkerWithBatchInFlight(planPath, 1500, 'term')
    worker.kill('SIGTERM')
    const result = await worker
    expect(result.exitCode, result.all).toBe(0)
    expect(await count('SELECT count(*)::int AS n FROM docs WHERE embedding IS NULL')).toBe(0)
    expect(await count('SELECT count(*)::int AS n FROM runner.embedding_queue')).toBe(0)
  })

  it('recovers from the provider being down for a while without losing a job', async () => {
    const planPath = await install()
    const worker = startWorker(planPath)
    await workerListening()
    for (let i = 0; i < 4; i++) fake.faults.push({ type: 'status', status: 503 })
    await db.exec(`INSERT INTO docs (id, title, body) SELECT g, 'outage ' || g, 'x' FROM generate_series(1, 20) g`)
    await waitFor(
      'every row to be embedded after the outage',
      async () => (await count('SELECT count(*)::int AS n FROM docs WHERE embedding IS NULL')) === 0,
      60_000,
    )
    expect(fake.requests.filter((r) => r.status === 503)).toHaveLength(4)
    expect(await count('SELECT count(*)::int AS n FROM runner.embedding_failures')).toBe(0)
    expect(await count('SELECT count(*)::int AS n FROM runner.embedding_queue')).toBe(0)
    worker.kill('SIGTERM')
    await worker
  })

  it('a backfill killed with SIGKILL at a random moment, then resumed, ends with 0 NULL and at most the batch being embedded repeated', async () => {
    const p = plan({}, chainedBatches('pipeline', 'backfill'))
    const planPath = writePlan(dir, p, 'backfill.yaml')
    await db.exec(`INSERT INTO docs (id, title, body) SELECT g, 'row ' || g, 'text' FROM generate_series(1, 3000) g`)
    fake.delayMs = 30
    const sessions = join(dir, `sessions-${Date.now()}`)
    const run = runCli(['start', planPath, '--sessions-dir', sessions], { env: env() })
    const progress = async () => {
      if (!existsSync(sessions) || sessionFolders(sessions).length === 0) return 0
      const file = join(sessions, sessionFolders(sessions)[0]!, 'batch-progress.json')
      return existsSync(file) ? Number(JSON.parse(readFileSync(file, 'utf8')).backfill?.cursor?.written?.['public.docs'] ?? 0) : 0
    }
    await waitFor('the backfill to be under way', async () => (await progress()) >= 300)
    await sleep(Math.random() * 300)
    run.kill('SIGKILL')
    await run
    expect(await count('SELECT count(*)::int AS n FROM docs WHERE embedding IS NULL')).toBeGreaterThan(0)

    const resumed = await runCli(['resume', '--sessions-dir', sessions], { env: env() })
    expect(resumed.exitCode, resumed.all).toBe(0)
    expect(await count('SELECT count(*)::int AS n FROM docs WHERE embedding IS NULL')).toBe(0)
    const rows = [...fake.embedded].filter(([t]) => t.startsWith('row '))
    expect(rows).toHaveLength(3000)
    const repeated = rows.reduce((s, [, n]) => s + n - 1, 0)
    // What was in flight and not yet saved: the one batch being embedded (100 rows).
    expect(repeated).toBeLessThanOrEqual(100)
  })

  it('a write that fails loses no embedding: the resume writes what was saved without asking the provider again', async () => {
    const p = plan({}, chainedBatches('pipeline', 'backfill'))
    // The second batch's write fails (a trigger that fires even under session_replication_role = replica, chosen to fire on purpose).
    ;(p.target as any).application_triggers = 'fire'
    await db.exec(`CREATE TABLE fail_writes (on_id bigint);
      INSERT INTO fail_writes VALUES (150);
      CREATE FUNCTION refuse_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
        IF EXISTS (SELECT 1 FROM fail_writes WHERE on_id = NEW.id) THEN RAISE EXCEPTION 'write refused for the test'; END IF;
        RETURN NEW; END $$;
      CREATE TRIGGER refuse_write BEFORE UPDATE ON docs FOR EACH ROW EXECUTE FUNCTION refuse_write();
      ALTER TABLE docs ENABLE ALWAYS TRIGGER refuse_write;
      INSERT INTO docs (id, title, body) SELECT g, 'row ' || g, 'text' FROM generate_series(1, 400) g`)
    const planPath = writePlan(dir, p, 'staged.yaml')
    const sessions = join(dir, `sessions-${Date.now()}`)
    const failed = await runCli(['start', planPath, '--sessions-dir', sessions], { env: env() })
    expect(failed.exitCode, failed.all).not.toBe(0)
    expect(failed.all).toContain('write refused for the test')
    expect(await count('SELECT count(*)::int AS n FROM docs WHERE embedding IS NOT NULL')).toBe(100)
    const staged = await count('SELECT coalesce(sum(cardinality(keys)), 0)::int AS n FROM runner.embedding_staging')
    expect(staged).toBeGreaterThanOrEqual(100) // the refused batch, and the next one if it was saved meanwhile

    await db.exec('TRUNCATE fail_writes')
    const resumed = await runCli(['resume', '--sessions-dir', sessions], { env: env() })
    expect(resumed.exitCode, resumed.all).toBe(0)
    expect(resumed.all).toContain(`public.docs: ${staged} embeddings saved by the run that ended early written now, not embedded again`)
    expect(await count('SELECT count(*)::int AS n FROM docs WHERE embedding IS NULL')).toBe(0)
    expect(await count('SELECT count(*)::int AS n FROM runner.embedding_staging')).toBe(0)
    const rows = [...fake.embedded].filter(([t]) => t.startsWith('row '))
    expect(rows).toHaveLength(400)
    expect(rows.filter(([, n]) => n > 1)).toEqual([])
    expect(await embeddingOf(150)).toSatisfy((e: number[] | null) => isEmbeddingOf(e, 'row 150 text'))
  })

  it('embeds the next batch while the previous one is written, and writes them in order', async () => {
    const p = plan({}, chainedBatches('pipeline', 'backfill'))
    // Each write made slow (0.3 s) and logged at its start and end, by statement triggers that fire
    // even under session_replication_role = replica (ENABLE ALWAYS), chosen to fire on purpose.
    ;(p.target as any).application_triggers = 'fire'
    await db.exec(`CREATE TABLE write_log (at timestamptz, what text, n bigint);
      CREATE FUNCTION log_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
        IF TG_WHEN = 'BEFORE' THEN INSERT INTO write_log VALUES (clock_timestamp(), 'start', NULL);
        ELSE PERFORM pg_sleep(0.3); INSERT INTO write_log SELECT clock_timestamp(), 'end', max(id) FROM changed; END IF;
        RETURN NULL; END $$;
      CREATE TRIGGER write_started BEFORE UPDATE ON docs FOR EACH STATEMENT EXECUTE FUNCTION log_write();
      CREATE TRIGGER write_ended AFTER UPDATE ON docs REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION log_write();
      ALTER TABLE docs ENABLE ALWAYS TRIGGER write_started, ENABLE ALWAYS TRIGGER write_ended;
      INSERT INTO docs (id, title, body) SELECT g, 'row ' || g, 'text' FROM generate_series(1, 500) g`)
    const planPath = writePlan(dir, p, 'overlap.yaml')
    const sessions = join(dir, `sessions-${Date.now()}`)
    const run = await runCli(['start', planPath, '--sessions-dir', sessions], { env: env() })
    expect(run.exitCode, run.all).toBe(0)
    expect(await count('SELECT count(*)::int AS n FROM docs WHERE embedding IS NULL')).toBe(0)
    const { rows: log } = await db.query<{ at: Date; what: string; n: string | null }>('SELECT at, what, n FROM write_log ORDER BY at')
    const writes = log
      .filter((l) => l.what === 'start')
      .map((start, i) => ({ start: start.at.getTime(), end: log.filter((l) => l.what === 'end')[i]!.at.getTime() }))
    expect(writes).toHaveLength(5) // 500 rows, batches of 100
    // Writes one at a time, in key order: each ends before the next starts, and covers the next hundred keys.
    for (let i = 1; i < writes.length; i++) expect(writes[i]!.start).toBeGreaterThanOrEqual(writes[i - 1]!.end)
    expect(log.filter((l) => l.what === 'end').map((l) => Number(l.n))).toEqual([100, 200, 300, 400, 500])
    // The provider was asked for batch k+1 before the write of batch k ended (one after the
    // other, it would be asked only after). The last five requests are the batches' (the ones
    // before them are the preflight's probes).
    const batchRequests = fake.arrivals.slice(-5)
    const askedEarly = writes.slice(0, 4).filter((w, k) => batchRequests[k + 1]! < w.end)
    expect(askedEarly, JSON.stringify({ writes, arrivals: fake.arrivals })).toHaveLength(4)
    // Where the time went: four of the five 0.3 s writes were waited for before the next could
    // start, and the session says that the database, not the provider, set the pace.
    const session = join(sessions, sessionFolders(sessions)[0]!)
    const output = JSON.parse(readFileSync(join(session, 'batches/02-backfill/output.json'), 'utf8'))
    expect(output.stages.writing).toBeGreaterThan(0.9)
    expect(output.stages.saving).toBeGreaterThan(0) // a paid provider's batches are saved before the next is asked for
    expect(output.stages.writing).toBeGreaterThan(output.stages.embedding)
    expect(Object.values(output.stages as Record<string, number>).reduce((a, b) => a + b)).toBeLessThanOrEqual(output.seconds)
    expect(readFileSync(join(session, 'batches/02-backfill/report.md'), 'utf8')).toContain('the database set the pace')
  })
})
