import { execa } from 'execa'
import { sessionFolders } from './helpers/sessions.ts'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { Database } from '../src/db/database.ts'
import { createApp, planFor } from './helpers/appSchemas.ts'
import { createServerDatabase, serverUrl, tempDir, type TestTarget } from './helpers/databases.ts'
import { startFakeOpenAI, type FakeOpenAI } from './helpers/fakeOpenAI.ts'
import { writePlan } from './helpers/plans.ts'
import { runCli } from './helpers/runCli.ts'
import { waitFor as until } from './helpers/waitFor.ts'

// One run per database, workers that are counted, leased and dead-lettered correctly,
// sessions that can be trusted, and one line (no stack) for what a user can cause.

const noStack = /\n\s+at /
const shape = {
  schema: 'public',
  table: 'docs',
  key: 'bigint identity' as const,
  textColumns: [{ name: 'body', type: 'text' as const }],
  embedding: 'embedding',
  prefilled: 0,
  updatedAtTrigger: false,
  auditTrigger: false,
}

describe.skipIf(!serverUrl)('run safety (real server)', () => {
  let target: TestTarget
  let db: Database
  let fake: FakeOpenAI
  const dir = tempDir()
  const children: { kill(signal?: NodeJS.Signals): unknown }[] = []

  beforeEach(async () => {
    target = await createServerDatabase()
    db = await target.open()
    fake = await startFakeOpenAI()
  })
  afterEach(async () => {
    for (const child of children.splice(0)) child.kill('SIGKILL')
    await fake.close()
    await db.close()
    await target.drop()
  })

  const env = (extra: Record<string, string> = {}) => ({
    DATABASE_URL: target.url!,
    OPENAI_API_KEY: fake.key,
    OPENAI_BASE_URL: fake.url,
    ...extra,
  })
  const write = (plan: unknown) => writePlan(dir, plan, `plan-${Math.random().toString(36).slice(2)}.yaml`)
  const openaiPlan = (extra: Record<string, unknown> = {}) =>
    planFor({ ...shape, rows: 20 }, { embedding: { provider: 'openai', batch_size: 10 }, ...extra })
  const pipelineOnly = (plan: any) => {
    plan.batches = plan.batches
      .filter((b: any) => ['diagnose', 'pipeline'].includes(b.step))
      .map((b: any) => ({ ...b, depends_on: b.step === 'pipeline' ? ['diagnose'] : [] }))
    return plan
  }
  const count = async (sql: string) => (await db.query<{ n: number }>(sql)).rows[0]!.n
  const worker = (planPath: string, args: string[] = [], extraEnv: Record<string, string> = {}) => {
    const child = runCli(['worker', planPath, ...args], { env: env(extraEnv) })
    children.push(child)
    return child
  }
  const held = () => count(`SELECT count(*)::int AS n FROM runner.embedding_queue WHERE locked_by IS NOT NULL`)
  /** Workers registered with a heartbeat in the last second (the tests beat every 0.3 to 0.5 s). */
  const registered = () => count(`SELECT count(*)::int AS n FROM runner.workers WHERE last_seen > now() - interval '1 second'`)

  it('refuses a second run on the same database at once, naming the holder; embeddings are written once', async () => {
    await createApp(db, { ...shape, rows: 40 })
    fake.delayMs = 150
    const path = write(openaiPlan({ criteria: { auto_embed_within_seconds: null } }))
    const sessions = join(dir, `sessions-${Math.random().toString(36).slice(2)}`)
    const first = runCli(['start', path, '--sessions-dir', sessions], { env: env() })
    children.push(first)
    await until(
      'the first run to hold the database',
      async () =>
        (await count(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'runner %'`,
        )) > 0,
    )
    const second = await runCli(['start', path, '--sessions-dir', sessions], { env: env() })
    expect(second.exitCode, second.all).toBe(2)
    expect(second.stderr).toMatch(
      /another runner is working on this database \(schema runner\): runner \d+@\S+ \d{4}-\d\d-\d\dT[\d-]+Z-do-no-harm/,
    )
    expect(second.stderr).not.toMatch(noStack)
    const done = await first
    expect(done.exitCode, done.all).toBe(0)
    expect(sessionFolders(sessions)).toHaveLength(1) // the refused start left no session behind
    const rows = (await db.query<{ body: string }>('SELECT body FROM docs')).rows
    expect(rows.every((r) => fake.embedded.get(r.body) === 1)).toBe(true)
  })

  it("counts only this database's registered workers, with fresh heartbeats", async () => {
    await createApp(db, { ...shape, rows: 5 })
    const other = await createServerDatabase()
    try {
      const otherDb = await other.open()
      await createApp(otherDb, { ...shape, rows: 5 })
      await otherDb.close()
      const otherPlan = write(pipelineOnly(planFor({ ...shape, rows: 5 }, { embedding: { provider: 'local' } })))
      expect(
        (await runCli(['start', otherPlan, '--sessions-dir', join(dir, 'other')], { env: { DATABASE_URL: other.url! } })).exitCode,
      ).toBe(0)
      const elsewhere = runCli(['worker', otherPlan], { env: { DATABASE_URL: other.url! } })
      children.push(elsewhere)
      const sessions = join(dir, `sessions-${Math.random().toString(36).slice(2)}`)
      const plan = planFor({ ...shape, rows: 5 }, { embedding: { provider: 'local' } }) as any
      plan.batches = plan.batches.slice(0, 1)
      await sleep(1500) // the worker elsewhere is up and beating
      expect((await runCli(['start', write(plan), '--sessions-dir', sessions], { env: { DATABASE_URL: target.url! } })).exitCode).toBe(0)
      const output = JSON.parse(readFileSync(join(sessions, sessionFolders(sessions)[0]!, 'batches/01-diagnose/output.json'), 'utf8'))
      expect(output.writers.workers_connected).toBe(0)
      expect(output.findings.map((f: any) => f.code)).toContain('NO_EMBEDDING_WRITER')
      elsewhere.kill('SIGTERM')
      await elsewhere
    } finally {
      await other.drop()
    }
  })

  it('renews the leases of a batch slower than the lease: two workers embed each row once, and the queue drains', async () => {
    await createApp(db, { ...shape, rows: 10 })
    const path = write(pipelineOnly(openaiPlan({ worker: { lease_seconds: 1, heartbeat_seconds: 0.3, batch_size: 10, poll_ms: 100 } })))
    expect((await runCli(['start', path, '--sessions-dir', join(dir, 's')], { env: env() })).exitCode).toBe(0)
    fake.delayMs = 2500 // each answer takes longer than two leases
    worker(path)
    worker(path)
    await until('both workers registered', async () => (await registered()) === 2)
    await db.exec(`UPDATE docs SET body = body || ' v2'`)
    await until(
      'every row embedded',
      async () => (await count('SELECT count(*)::int AS n FROM docs WHERE embedding IS NULL')) === 0,
      30_000,
    )
    await until('the queue drained', async () => (await count('SELECT count(*)::int AS n FROM runner.embedding_queue')) === 0)
    const bodies = (await db.query<{ body: string }>('SELECT body FROM docs')).rows.map((r) => r.body)
    expect(bodies.map((b) => fake.embedded.get(b))).toEqual(bodies.map(() => 1))
    expect(await count('SELECT count(*)::int AS n FROM runner.embedding_failures')).toBe(0)
  })

  it("takes a SIGKILLed worker's jobs within seconds of its heartbeat stopping, not after the lease", async () => {
    await createApp(db, { ...shape, rows: 5 })
    const path = write(pipelineOnly(openaiPlan({ worker: { lease_seconds: 120, heartbeat_seconds: 0.5, poll_ms: 100 } })))
    expect((await runCli(['start', path, '--sessions-dir', join(dir, 's')], { env: env() })).exitCode).toBe(0)
    const doomed = worker(path)
    await until('the first worker registered', async () => (await registered()) === 1)
    fake.faults.push({ type: 'slow', ms: 60_000 }) // after its start-up probe: the batch hangs
    const before = fake.arrived
    await db.exec(`UPDATE docs SET body = body || ' v2'`)
    // Killed only once its request reached the provider (and took the slow answer), not merely claimed.
    await until('its batch in flight', async () => (await held()) > 0 && fake.arrived > before)
    doomed.kill('SIGKILL')
    const killedAt = Date.now()
    worker(path)
    await until(
      'every row embedded',
      async () => (await count('SELECT count(*)::int AS n FROM docs WHERE embedding IS NULL')) === 0,
      20_000,
    )
    const seconds = (Date.now() - killedAt) / 1000
    expect(seconds).toBeLessThan(10) // three missed beats (1.5 s) and a claim, against a 120 s lease
  })

  it('moves a job whose attempts all ended in a dead worker to the failed jobs, and goes on with the rest', async () => {
    await createApp(db, { ...shape, rows: 3 })
    const path = write(pipelineOnly(openaiPlan({ worker: { max_attempts: 2, heartbeat_seconds: 0.3, batch_size: 1, poll_ms: 100 } })))
    expect((await runCli(['start', path, '--sessions-dir', join(dir, 's')], { env: env() })).exitCode).toBe(0)
    fake.hangInputs.add('poison') // the row whose embedding never comes back: each worker holding it is killed
    await db.exec(`UPDATE docs SET body = 'poison' WHERE id = 1`)
    for (let attempt = 1; attempt <= 2; attempt++) {
      const victim = worker(path)
      await until(
        `attempt ${attempt} on the poison row`,
        async () =>
          (await count(
            `SELECT count(*)::int AS n FROM runner.embedding_queue WHERE row_key = '1' AND attempts = ${attempt} AND locked_by IS NOT NULL`,
          )) === 1,
      )
      victim.kill('SIGKILL')
      await victim.catch(() => {})
      await until('the killed worker to fall silent', async () => (await registered()) === 0)
    }
    await db.exec(`UPDATE docs SET body = body || ' v2' WHERE id <> 1`)
    worker(path)
    await until(
      'the poison row dead-lettered',
      async () => (await count(`SELECT count(*)::int AS n FROM runner.embedding_failures WHERE row_key = '1'`)) === 1,
      20_000,
    )
    await until(
      'the other rows embedded',
      async () => (await count('SELECT count(*)::int AS n FROM docs WHERE id <> 1 AND embedding IS NULL')) === 0,
    )
    const failure = (
      await db.query<{ attempts: number; last_error: string }>(
        `SELECT attempts, last_error FROM runner.embedding_failures WHERE row_key = '1'`,
      )
    ).rows[0]!
    expect(failure.attempts).toBe(2)
    expect(failure.last_error).toMatch(/attempt 2 never finished: its worker .* stopped while holding it/)
  })

  it('stops within a bound on SIGTERM during a provider outage, giving its jobs back', async () => {
    await createApp(db, { ...shape, rows: 5 })
    const path = write(pipelineOnly(openaiPlan({ worker: { heartbeat_seconds: 0.5, poll_ms: 100 } })))
    expect((await runCli(['start', path, '--sessions-dir', join(dir, 's')], { env: env() })).exitCode).toBe(0)
    const child = worker(path)
    await until('the worker registered', async () => (await registered()) === 1)
    fake.faults.push(...Array.from({ length: 50 }, () => ({ type: 'status' as const, status: 503 }))) // the outage starts
    await db.exec(`UPDATE docs SET body = body || ' v2'`)
    await until('jobs held during the outage', async () => (await held()) > 0)
    const stoppedAt = Date.now()
    child.kill('SIGTERM')
    const result = await child
    const seconds = (Date.now() - stoppedAt) / 1000
    expect(result.exitCode, result.all).toBe(0)
    expect(seconds).toBeLessThan(10) // the 3 s grace for the provider call in flight, then out
    expect(result.stderr).toContain('a provider call still out after 3 s is abandoned, held jobs are given back')
    expect(await held()).toBe(0)
    expect(await registered()).toBe(0)
  })

  it('a worker started before the pipeline waits for it, and a worker whose pipeline is uninstalled waits too', async () => {
    await createApp(db, { ...shape, rows: 3 })
    const path = write(pipelineOnly(planFor({ ...shape, rows: 3 }, { embedding: { provider: 'local' }, worker: { poll_ms: 100 } })))
    const early = runCli(['worker', path], { env: { DATABASE_URL: target.url! } })
    children.push(early)
    await sleep(1500)
    expect(early.exitCode).toBeNull() // still running, waiting
    expect((await runCli(['start', path, '--sessions-dir', join(dir, 's')], { env: { DATABASE_URL: target.url! } })).exitCode).toBe(0)
    await db.exec(`INSERT INTO docs (body) VALUES ('after the install')`)
    await until(
      'the early worker to embed the new row',
      async () => (await count(`SELECT count(*)::int AS n FROM docs WHERE body = 'after the install' AND embedding IS NOT NULL`)) === 1,
      15_000,
    )
    const uninstall = await runCli(['pipeline', 'uninstall', path], { env: { DATABASE_URL: target.url! } })
    expect(uninstall.exitCode).toBe(0)
    expect(uninstall.stderr).toContain('warning: 1 worker(s) are running against this database')
    await sleep(1500)
    expect(early.exitCode).toBeNull()
    early.kill('SIGTERM')
    const result = await early
    expect(result.exitCode, result.all).toBe(0)
    expect(result.stderr).toContain('waiting for it (`runner start <plan>` installs it)')
    expect(result.stderr).not.toMatch(noStack)
  })

  it('one line, no stack: search before anything is embedded; a worker whose plan has other dimensions', async () => {
    await createApp(db, { ...shape, rows: 3 })
    const plan = planFor({ ...shape, rows: 3 }, { embedding: { provider: 'local' } })
    const search = await runCli(['search', 'anything', '--plan', write(plan)], { env: { DATABASE_URL: target.url! } })
    expect(search.exitCode).toBe(1)
    expect(search.stderr).toContain('public.docs.embedding has no embeddings yet (0 of 3 rows): run `runner start')
    expect(search.stderr).not.toMatch(noStack)
    expect(
      (await runCli(['start', write(pipelineOnly(plan)), '--sessions-dir', join(dir, 's')], { env: { DATABASE_URL: target.url! } }))
        .exitCode,
    ).toBe(0)
    const wrong = await runCli(
      ['worker', write(planFor({ ...shape, rows: 3 }, { embedding: { provider: 'local', dimensions: 8 } })), '--until-empty'],
      {
        env: { DATABASE_URL: target.url! },
      },
    )
    expect(wrong.exitCode).toBe(2)
    expect(wrong.stderr).toContain('embedding.dimensions: public.docs.embedding is vector(16) but the plan')
    expect(wrong.stderr).not.toMatch(noStack)
  })

  it('status <plan> reports the pipeline as it is, and exits 1 while something needs attention', async () => {
    await createApp(db, { ...shape, rows: 4 })
    const path = write(
      pipelineOnly(planFor({ ...shape, rows: 4 }, { embedding: { provider: 'local' }, worker: { heartbeat_seconds: 0.5, poll_ms: 100 } })),
    )
    const notInstalled = await runCli(['status', path, '--json'], { env: { DATABASE_URL: target.url! } })
    expect(notInstalled.exitCode).toBe(1)
    expect(JSON.parse(notInstalled.stdout).attention[0]).toContain('the auto-embedding pipeline is not installed')
    expect((await runCli(['start', path, '--sessions-dir', join(dir, 's')], { env: { DATABASE_URL: target.url! } })).exitCode).toBe(0)
    // A known state: every row queued (nothing embedded yet), one failed job, one worker that stopped beating.
    await db.exec(`UPDATE docs SET body = body || ' v2';
      INSERT INTO runner.embedding_failures (table_name, row_key, attempts, last_error) VALUES ('public.docs', '42', 5, 'injected: the provider said no');
      INSERT INTO runner.workers (worker_id, host, pid, version, model, last_seen) VALUES ('gone:1:abc', 'gone', 1, '0.1.0', 'm', now() - interval '1 hour')`)
    const troubled = await runCli(['status', path, '--json', '--max-backlog-seconds', '3600'], { env: { DATABASE_URL: target.url! } })
    expect(troubled.exitCode, troubled.all).toBe(1)
    const s = JSON.parse(troubled.stdout)
    expect(s.schema).toMatchObject({ name: 'runner', version: s.schema.latest })
    expect(s.queue).toMatchObject({ pending: 4, in_flight: 0 })
    expect(s.failed.count).toBe(1)
    expect(s.failed.last[0]).toMatchObject({ table: 'public.docs', key: '42', attempts: 5, error: 'injected: the provider said no' })
    expect(s.columns).toEqual([
      { table: 'public.docs', column: 'embedding', rows: 4, embedded: 0, no_text: 0, coverage: 0, model: null, rows_hidden: false },
    ])
    expect(s.workers).toEqual([expect.objectContaining({ worker_id: 'gone:1:abc', alive: false })])
    expect(s.attention).toEqual([
      '1 row(s) failed to embed after every attempt (runner.embedding_failures)',
      'no worker is running: deploy `runner worker <plan>`',
    ])
    // The same database set right: a live worker drains the queue, the failure is dealt with.
    await db.exec(`DELETE FROM runner.embedding_failures; DELETE FROM runner.workers`)
    const live = runCli(['worker', path], { env: { DATABASE_URL: target.url! } })
    children.push(live)
    await until('the queue drained', async () => (await count('SELECT count(*)::int AS n FROM runner.embedding_queue')) === 0)
    const healthy = await runCli(['status', path], { env: { DATABASE_URL: target.url! } })
    expect(healthy.exitCode, healthy.all).toBe(0)
    expect(healthy.stdout).toContain('public.docs.embedding: 4 of 4 embedded (100.0%), model local local-sif-glove100-v1')
    expect(healthy.stdout).toContain('nothing needs attention')
  })

  it('serves /healthz and /metrics, answers 503 while its database is cut and 200 again once it reconnects, in JSON logs', async () => {
    await createApp(db, { ...shape, rows: 3 })
    const path = write(
      pipelineOnly(planFor({ ...shape, rows: 3 }, { embedding: { provider: 'local' }, worker: { heartbeat_seconds: 0.5, poll_ms: 100 } })),
    )
    expect((await runCli(['start', path, '--sessions-dir', join(dir, 's')], { env: { DATABASE_URL: target.url! } })).exitCode).toBe(0)
    const service = runCli(['worker', path, '--http-port', '0', '--log-format', 'json'], { env: { DATABASE_URL: target.url! } })
    children.push(service)
    let logged = ''
    service.stderr!.on('data', (chunk) => {
      logged += String(chunk)
    })
    const base = await until('the HTTP port in the log', async () => /on (http:\/\/127\.0\.0\.1:\d+)/.exec(logged)?.[1])
    const get = async (path: string) => {
      const response = await fetch(`${base}${path}`).catch(() => undefined)
      return response ? { status: response.status, text: await response.text() } : { status: 0, text: '' }
    }
    await until('healthy', async () => (await get('/healthz')).status === 200)
    await db.exec(`UPDATE docs SET body = body || ' v2'`)
    await until('embedded', async () => (await count('SELECT count(*)::int AS n FROM docs WHERE embedding IS NULL')) === 0)
    const metrics = await until('the embeddings counted', async () => {
      const m = await get('/metrics')
      return /runner_embedded_total 3\b/.test(m.text) && m.text
    })
    expect(metrics).toContain('# TYPE runner_queue_depth gauge\nrunner_queue_depth 0')
    expect(metrics).toContain('runner_worker_up 1')

    // Cut every connection of the worker: LISTEN is down until it reconnects.
    await db.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'runner worker' AND datname = current_database()`,
    )
    await until('503 while cut', async () => (await get('/healthz')).status === 503, 10_000)
    await until('200 again after reconnecting', async () => (await get('/healthz')).status === 200, 20_000)
    expect(service.exitCode).toBeNull() // no restart: the same process
    service.kill('SIGTERM')
    const result = await service
    expect(result.exitCode).toBe(0)
    const lines = logged.trim().split('\n')
    for (const line of lines) expect(() => JSON.parse(line), line).not.toThrow()
    expect(lines.map((l) => JSON.parse(l))).toContainEqual(
      expect.objectContaining({ level: 'info', message: expect.stringContaining('worker started') }),
    )
  })

  it('exits 3, "fixed, worker still to deploy", when the plan succeeded and only a worker is missing; 0 once one runs', async () => {
    await createApp(db, { ...shape, rows: 4 })
    const path = write(
      planFor({ ...shape, rows: 4 }, { embedding: { provider: 'local' }, worker: { heartbeat_seconds: 0.5, poll_ms: 100 } }),
    )
    const sessions = join(dir, `sessions-${Math.random().toString(36).slice(2)}`)
    const proved = await runCli(['start', path, '--with-worker', '--sessions-dir', sessions], { env: { DATABASE_URL: target.url! } })
    // Proved with a temporary worker: not a deployed one, so still exit 3, and told what is still to deploy.
    expect(proved.exitCode, proved.all).toBe(3)
    expect(proved.stderr).toContain('no `runner worker` is registered to embed new rows after this run: deploy one (deploy/)')
    expect(proved.stderr).toContain('fixed, with one thing left to you: a worker to deploy')
    const fixed = await runCli(['start', path, '--sessions-dir', sessions], { env: { DATABASE_URL: target.url! } })
    expect(fixed.exitCode, fixed.all).toBe(3)
    expect(fixed.stderr).toContain('fixed, with one thing left to you: a worker to deploy: run `runner worker <plan>` as a service')
    expect(readFileSync(join(sessions, sessionFolders(sessions).at(-1)!, 'summary.md'), 'utf8')).toContain('waiting for a worker to deploy')
    const deployed = runCli(['worker', path], { env: { DATABASE_URL: target.url! } })
    children.push(deployed)
    await until('the worker registered', async () => (await registered()) === 1)
    const again = await runCli(['start', path, '--sessions-dir', sessions], { env: { DATABASE_URL: target.url! } })
    expect(again.exitCode, again.all).toBe(0)
  })

  it('a run killed during the auto-embedding check: the resume does not count the dead check worker as a deployed one', async () => {
    await createApp(db, { ...shape, rows: 20 })
    // Ten beats of grace: a dead worker's registration looks alive for 30 s, long past the resume.
    const path = write(openaiPlan({ worker: { heartbeat_seconds: 10, poll_ms: 100 } }))
    const sessions = join(dir, `sessions-${Math.random().toString(36).slice(2)}`)
    fake.delayMs = 1000 // the check's worker registers, then waits a second on its provider call
    const first = runCli(['start', path, '--with-worker', '--sessions-dir', sessions], { env: env() })
    children.push(first)
    const workers = () => count(`SELECT count(*)::int AS n FROM runner.workers`).catch(() => 0) // none before the pipeline batch
    await until('the check worker registered', async () => (await workers()) === 1, 60_000)
    first.kill('SIGKILL')
    await first.catch(() => {})
    expect(await workers()).toBe(1) // the dead worker's registration, fresh for 30 s
    fake.delayMs = 0
    const resumed = await runCli(['resume', '--with-worker', '--sessions-dir', sessions], { env: env() })
    expect(resumed.exitCode, resumed.all).toBe(3)
    expect(resumed.stderr).toContain('no `runner worker` is registered to embed new rows after this run: deploy one (deploy/)')
    expect(await workers()).toBe(0)
    expect(await count(`SELECT count(*)::int AS n FROM docs WHERE embedding IS NULL`)).toBe(0)
  })

  it('reconciles rows written with the capture trigger bypassed, within the interval', async () => {
    await createApp(db, { ...shape, rows: 6 })
    const plan = planFor(
      { ...shape, rows: 6 },
      { embedding: { provider: 'local' }, worker: { heartbeat_seconds: 0.5, poll_ms: 100, reconcile_seconds: 1, reconcile_batch: 2 } },
    )
    const path = write(plan)
    expect(
      (await runCli(['start', path, '--with-worker', '--sessions-dir', join(dir, 's')], { env: { DATABASE_URL: target.url! } })).exitCode,
    ).toBe(3) // fixed; no worker deployed yet
    const service = runCli(['worker', path], { env: { DATABASE_URL: target.url! } })
    children.push(service)
    await until('the worker registered', async () => (await registered()) === 1)
    // A bulk load with the triggers off: one new row, one row whose text changed under its old embedding.
    await db.exec(`ALTER TABLE docs DISABLE TRIGGER USER;
      INSERT INTO docs (body) VALUES ('loaded behind the trigger');
      UPDATE docs SET body = 'changed behind the trigger' WHERE id = 2;
      ALTER TABLE docs ENABLE TRIGGER USER`)
    const current = `SELECT count(*)::int AS n FROM docs d JOIN runner.embedding_meta m ON m.table_name = 'public.docs' AND m.row_key = d.id::text
      WHERE d.embedding IS NOT NULL AND m.content_hash = encode(sha256(convert_to(concat_ws(' ', d.body), 'UTF8')), 'hex')`
    await until('every row embedded for its current text', async () => (await count(current)) === 7, 15_000)
    service.kill('SIGTERM')
    const result = await service
    expect(result.stderr).toMatch(/reconciliation read \d+ rows in [\d.]+ s and queued [12] that were stale/)
  })

  it('prints --json results for start, resume, search and worker --once, in their documented shapes', async () => {
    await createApp(db, { ...shape, rows: 6 })
    const path = write(planFor({ ...shape, rows: 6 }, { embedding: { provider: 'local' } }))
    const sessions = join(dir, `sessions-${Math.random().toString(36).slice(2)}`)
    const env = { env: { DATABASE_URL: target.url! } }
    const started = await runCli(['start', path, '--json', '--sessions-dir', sessions], env)
    const outcome = JSON.parse(started.stdout)
    expect(outcome).toMatchObject({ session_dir: join(sessions, sessionFolders(sessions)[0]!), status: 'completed', exit_code: 3 })
    expect(started.exitCode).toBe(outcome.exit_code)
    expect(outcome.pending).toEqual([expect.stringContaining('a worker to deploy')])
    expect(outcome.criteria.map((c: any) => c.id)).toContain('auto_embed')
    const resumed = JSON.parse((await runCli(['resume', '--session', outcome.session_dir, '--json'], env)).stdout)
    expect(resumed).toMatchObject({ session_dir: outcome.session_dir, status: 'already_completed', exit_code: 3 })

    const found = JSON.parse((await runCli(['search', path, 'note about queue workers', '-k', '2', '--json'], env)).stdout)
    expect(found).toMatchObject({
      query: 'note about queue workers',
      tables: [{ table: 'public.docs', hits: [expect.any(Object), expect.any(Object)] }],
    })
    expect(found.tables[0].hits[0]).toEqual({
      key: expect.any(String),
      distance: expect.any(Number),
      text: expect.stringContaining('note'),
    })

    await db.exec(`UPDATE docs SET body = body || ' v2' WHERE id <= 2`)
    const drained = await runCli(['worker', path, '--once', '--json'], env)
    expect(drained.exitCode, drained.all).toBe(0)
    expect(JSON.parse(drained.stdout)).toEqual({ embedded: 2, failed: 0, batches: 1 })
    const refused = await runCli(['worker', path, '--json'], env)
    expect(refused.exitCode).toBe(2)
    expect(refused.stderr).toContain('--json goes with --once')
  })

  it('keeps --concurrency batches in flight at once, each row still embedded once', async () => {
    await createApp(db, { ...shape, rows: 12 })
    const path = write(pipelineOnly(openaiPlan({ worker: { batch_size: 2, heartbeat_seconds: 0.5, poll_ms: 100 } })))
    expect((await runCli(['start', path, '--sessions-dir', join(dir, 's')], { env: env() })).exitCode).toBe(0)
    await db.exec(`UPDATE docs SET body = body || ' v2'`)
    fake.delayMs = 400
    fake.maxInFlight = 0
    const drained = await runCli(['worker', path, '--once', '--json', '--concurrency', '3'], { env: env() })
    expect(drained.exitCode, drained.all).toBe(0)
    expect(JSON.parse(drained.stdout)).toMatchObject({ embedded: 12, failed: 0 })
    expect(fake.maxInFlight).toBe(3)
    const bodies = (await db.query<{ body: string }>('SELECT body FROM docs')).rows.map((r) => r.body)
    expect(bodies.map((b) => fake.embedded.get(b))).toEqual(bodies.map(() => 1))
  })

  it('a start that cannot connect leaves no session, so resume never runs it against another database', async () => {
    const plan = write(planFor({ ...shape, rows: 3 }, { embedding: { provider: 'local' } }))
    const sessions = join(dir, `sessions-${Math.random().toString(36).slice(2)}`)
    const failed = await runCli(['start', plan, '--sessions-dir', sessions], {
      env: { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/nowhere' },
    })
    expect(failed.exitCode).toBe(1)
    expect(failed.stderr).toContain('cannot connect to the database')
    expect(existsSync(sessions) && sessionFolders(sessions).length > 0).toBe(false)
    const resumed = await runCli(['resume', '--sessions-dir', sessions], { env: { DATABASE_URL: target.url! } })
    expect(resumed.exitCode).toBe(2)
    expect(resumed.stderr).toContain('no unfinished session')
  })

  it('tells the same database from another exactly, even when the password is the user name', async () => {
    const role = `pw_${process.pid}_${Math.random().toString(36).slice(2, 6)}`
    const admin = new pg.Client({ connectionString: serverUrl })
    await admin.connect()
    await admin.query(`CREATE ROLE ${role} LOGIN SUPERUSER PASSWORD '${role}'`)
    try {
      await createApp(db, { ...shape, rows: 3 })
      const url = new URL(target.url!)
      url.username = role
      url.password = role
      const plan = planFor(
        { ...shape, rows: 3 },
        {
          embedding: { provider: 'local' },
          validate: { labelled_queries: '/nonexistent.json' },
          criteria: { relevance_recall_at_k: { k: 5, min: 0.1 } },
        },
      )
      const path = write(plan)
      const sessions = join(dir, `sessions-${Math.random().toString(36).slice(2)}`)
      const first = await runCli(['start', path, '--with-worker', '--sessions-dir', sessions], { env: { DATABASE_URL: url.toString() } })
      expect(first.exitCode, first.all).toBe(2) // the labels file is missing: the session stops, to be resumed
      const state = JSON.parse(readFileSync(join(sessions, sessionFolders(sessions)[0]!, 'coordination-state.json'), 'utf8'))
      expect(state.target).toBe(`postgres ${role}@${url.host}${url.pathname}`)
      expect(state.target_fingerprint).toBe(`${role}@${url.hostname}:${url.port}${url.pathname}`)
      writePlan(dir, { ...plan, criteria: { ...plan.criteria, relevance_recall_at_k: null } }, path.split('/').pop())
      const resumed = await runCli(['resume', '--allow-plan-change', '--sessions-dir', sessions], { env: { DATABASE_URL: url.toString() } })
      expect(resumed.exitCode, resumed.all).toBe(3) // every criterion met but the worker, started for the check alone
    } finally {
      await admin.query(`DROP OWNED BY ${role}`).catch(() => {})
      await admin.query(`DROP ROLE IF EXISTS ${role}`).catch(() => {})
      await admin.end()
    }
  })
})

describe('the process lock (sessions, the embedded database)', () => {
  const race = (dir: string) =>
    execa(
      'node',
      [
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        `import { acquireProcessLock } from ${JSON.stringify(join(import.meta.dirname, '../src/processLock.ts'))}
         try { const release = acquireProcessLock(${JSON.stringify(join(dir, 'session.lock'))}, (pid) => 'held by ' + pid); console.log('won'); await new Promise((r) => setTimeout(r, 800)); release() }
         catch (error) { console.log('refused: ' + error.message) }`,
      ],
      { reject: false, all: true },
    )

  it('lets exactly one of four processes take over a stale lock; none crashes', async () => {
    for (let trial = 0; trial < 4; trial++) {
      const dir = tempDir()
      writeFileSync(join(dir, 'session.lock'), '999999999\n') // no such process
      const results = await Promise.all([race(dir), race(dir), race(dir), race(dir)])
      expect(results.map((r) => r.exitCode)).toEqual([0, 0, 0, 0])
      const outcomes = results.map((r) => r.stdout.trim())
      expect(
        outcomes.filter((o) => o === 'won'),
        outcomes.join('\n'),
      ).toHaveLength(1)
      expect(outcomes.filter((o) => /^refused: held by \d+$/.test(o))).toHaveLength(3)
    }
  })

  it('takes over a lock whose owner is a zombie', async () => {
    const dir = tempDir()
    mkdirSync(dir, { recursive: true })
    // sh starts a child and replaces itself with sleep, which never reaps it: a zombie for 3 s.
    const parent = execa('sh', ['-c', 'sleep 0 & echo $!; exec sleep 3'])
    const pid = await new Promise<string>((resolve) => parent.stdout!.once('data', (d) => resolve(String(d).trim())))
    await until('the zombie', async () => readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.startsWith('Z'))
    writeFileSync(join(dir, 'session.lock'), `${pid}\n`)
    const result = await race(dir)
    expect(result.stdout.trim()).toBe('won')
    parent.kill()
    await parent.catch(() => {})
  })
})
