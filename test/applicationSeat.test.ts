import { readdirSync, readFileSync } from 'node:fs'
import { sessionFolders } from './helpers/sessions.ts'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { Database } from '../src/db/database.ts'
import { DIMS, planFor, shapeOf, TITLE_AND_BODY } from './helpers/appSchemas.ts'
import { createServerDatabase, serverUrl, tempDir, type TestTarget } from './helpers/databases.ts'
import { chainedBatches, writePlan } from './helpers/plans.ts'
import { runCli } from './helpers/runCli.ts'

// Do no harm from where the application stands, on the real server: the runner connects as
// the tables' owner (not a superuser), and the application as a role of its own that has only
// SELECT, INSERT, UPDATE and DELETE. Its writes must go on working once the capture is
// installed, its queries must never wait long on the runner's locks, and nothing may be
// counted that row-level security hid from the runner.

const shape = shapeOf({ textColumns: TITLE_AND_BODY })

describe.skipIf(!serverUrl)("from the application's seat (real server)", () => {
  let target: TestTarget
  let admin: Database
  const dir = tempDir()
  const suffix = `${process.pid}_${Math.random().toString(36).slice(2, 6)}`
  const owner = `runner_owner_${suffix}`
  const app = `runner_appdml_${suffix}`
  /** An ingest service's role: it inserts, and never reads. */
  const ingest = `runner_a_ingest_${suffix}` // (sorted before the application role: the first found is not the one that reads)
  const clients: pg.Client[] = []

  const urlAs = (role: string) => {
    const url = new URL(target.url!)
    url.username = role
    return url.toString()
  }
  const connectAs = async (role: string, applicationName: string) => {
    const client = new pg.Client({ connectionString: urlAs(role), application_name: applicationName })
    await client.connect()
    clients.push(client)
    return client
  }
  const write = (plan: unknown) => writePlan(dir, plan, `plan-${Math.random().toString(36).slice(2)}.yaml`)
  const sessionsDir = () => join(dir, `sessions-${Math.random().toString(36).slice(2)}`)
  const runAsOwner = (args: string[], sessions = sessionsDir()) =>
    runCli([...args, ...(['start', 'resume'].includes(args[0]!) ? ['--sessions-dir', sessions] : [])], {
      env: { DATABASE_URL: urlAs(owner) },
    })
  const count = async (sql: string) => (await admin.query<{ n: number }>(sql)).rows[0]!.n
  /** Rows whose recorded embedding is of their current text (title and body). */
  const embeddedWithCurrentText = () =>
    count(`SELECT count(*)::int AS n FROM docs d JOIN runner.embedding_meta m ON m.table_name = 'public.docs' AND m.row_key = d.id::text
           WHERE m.content_hash = encode(sha256(convert_to(concat_ws(' ', d.title, d.body), 'UTF8')), 'hex')`)
  const lastSession = (sessions: string) => join(sessions, sessionFolders(sessions).at(-1)!)
  const batchOutput = (session: string, id: string) => {
    const folder = readdirSync(join(session, 'batches')).find((f) => f.endsWith(`-${id}`))!
    return JSON.parse(readFileSync(join(session, 'batches', folder, 'output.json'), 'utf8'))
  }

  /** The application: its owner, its DML-only role, and `rows` documents (every `noTextEvery`-th with no text). */
  async function createApplication(rows: number, options: { noTextEvery?: number; memberOfApp?: boolean } = {}) {
    const database = new URL(target.url!).pathname.slice(1)
    await admin.exec(`CREATE EXTENSION IF NOT EXISTS vector;
      CREATE ROLE ${owner} LOGIN; CREATE ROLE ${app} LOGIN;
      GRANT CREATE ON DATABASE ${database} TO ${owner};
      ALTER SCHEMA public OWNER TO ${owner};
      ${options.memberOfApp === false ? '' : `GRANT ${app} TO ${owner};`}`)
    const ownerDb = await connectAs(owner, 'migration')
    const blank = options.noTextEvery ? `CASE WHEN g % ${options.noTextEvery} = 0 THEN NULL ELSE` : 'CASE WHEN false THEN NULL ELSE'
    await ownerDb.query(`CREATE TABLE docs (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, title text, body text, category text, embedding vector(${DIMS}));
      INSERT INTO docs (title, body, category)
        SELECT ${blank} 'note ' || g END, ${blank} 'about ' || (ARRAY['pgvector indexes', 'queue workers', 'search latency', 'embedding models'])[1 + g % 4] END, 'c' || (g % 3)
        FROM generate_series(1, ${rows}) g;
      GRANT USAGE ON SCHEMA public TO ${app};
      GRANT SELECT, INSERT, UPDATE, DELETE ON docs TO ${app};
      GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO ${app}`)
  }

  beforeEach(async () => {
    target = await createServerDatabase()
    admin = await target.open()
  })
  afterEach(async () => {
    for (const client of clients.splice(0)) await client.end().catch(() => {})
    await admin.close()
    await target.drop()
    const cluster = new pg.Client({ connectionString: serverUrl })
    await cluster.connect()
    for (const role of [owner, app, ingest]) await cluster.query(`DROP ROLE IF EXISTS ${role}`).catch(() => {})
    await cluster.end()
  })
  afterAll(async () => {
    for (const client of clients) await client.end().catch(() => {})
  })

  it("the application's own role keeps writing its tables once the capture is installed, and its writes are embedded", async () => {
    await createApplication(40)
    await admin.exec(
      `CREATE ROLE ${ingest}; GRANT USAGE ON SCHEMA public TO ${ingest}; GRANT INSERT ON docs TO ${ingest}; GRANT ${ingest} TO ${owner}`,
    )
    const sessions = sessionsDir()
    const started = await runAsOwner(['start', write(planFor(shape))], sessions)
    expect(started.exitCode, started.all).toBe(3) // fixed; no worker deployed yet
    // Proved as each role that writes the table before the trigger existed, and again by validate.
    const pipeline = batchOutput(lastSession(sessions), 'pipeline')
    const proved = [app, ingest].sort().map((role) => expect.objectContaining({ table: 'public.docs', role, proved: true }))
    expect(pipeline.role_proofs).toEqual(proved)
    const validation = batchOutput(lastSession(sessions), 'validate')
    expect(validation.tables[0].auto_embed.capture_roles).toEqual(proved)
    // Searches are measured as a role that reads the table: not the ingest service's.
    expect(validation.tables[0].latency.measured_as).toBe(app)
    // The application's role has nothing in the runner's schema, and needs nothing.
    expect(await count(`SELECT has_schema_privilege('${app}', 'runner', 'USAGE')::int AS n`)).toBe(0)

    const application = await connectAs(app, 'the application')
    await application.query(`INSERT INTO docs (title, body) VALUES ('new', 'a row the application wrote')`)
    await application.query(`UPDATE docs SET title = title || ' (edited)' WHERE id = 5`)
    await application.query('DELETE FROM docs WHERE id = 6')
    expect(await count(`SELECT count(*)::int AS n FROM runner.embedding_queue WHERE row_key = '6'`)).toBe(0)
    expect(await count('SELECT count(*)::int AS n FROM runner.embedding_queue')).toBe(2)
    const worker = await runAsOwner(['worker', write(planFor(shape)), '--until-empty'])
    expect(worker.exitCode, worker.all).toBe(0)
    expect(await count('SELECT count(*)::int AS n FROM docs WHERE embedding IS NULL')).toBe(0)
    expect(await embeddedWithCurrentText()).toBe(40)
  })

  it('says, and does not fail, when it may not SET ROLE to prove the capture as the application', async () => {
    await createApplication(10, { memberOfApp: false })
    const sessions = sessionsDir()
    const started = await runAsOwner(['start', write(planFor(shape))], sessions)
    expect(started.exitCode, started.all).toBe(3)
    expect(started.stderr).toContain(`${app}: not proved (may not SET ROLE)`)
    const proof = batchOutput(lastSession(sessions), 'pipeline').role_proofs[0]
    expect(proof).toMatchObject({ role: app, proved: null })
    expect(proof.detail).toContain(`GRANT ${app} TO the runner's role`)
    // It works all the same: the function runs as its owner.
    const application = await connectAs(app, 'the application')
    await application.query(`UPDATE docs SET body = 'changed by the application' WHERE id = 3`)
    expect(await count(`SELECT count(*)::int AS n FROM runner.embedding_queue WHERE row_key = '3'`)).toBe(1)
  })

  it("never holds the application's queries behind its locks: a reader open for the whole run, an index build that waits for it, a writer mid-transaction", async () => {
    await createApplication(60)
    const batches = (...steps: Parameters<typeof chainedBatches>) => ({ batches: chainedBatches(...steps) })
    const locks = { lock_timeout_ms: 300, lock_retries: 2 }
    const triggers = () => count(`SELECT count(*)::int AS n FROM pg_trigger WHERE tgrelid = 'docs'::regclass AND tgname LIKE 'runner_%'`)
    // A report that read the table and stays open (ACCESS SHARE).
    const report = await connectAs(owner, 'monthly report')
    await report.query('BEGIN ISOLATION LEVEL REPEATABLE READ') // its snapshot held until it ends, as pg_dump's is
    await report.query('SELECT count(*) FROM docs')
    const reportPid = (await report.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid
    // The application reads and writes all along; its slowest round trip is what it felt.
    const application = await connectAs(app, 'the application')
    let slowest = 0
    let probing = true
    const probes = (async () => {
      while (probing) {
        const started = performance.now()
        await application.query('SELECT title FROM docs WHERE id = 1')
        await application.query(`UPDATE docs SET category = 'seen' WHERE id = 2`)
        slowest = Math.max(slowest, performance.now() - started)
        await sleep(20)
      }
    })()
    try {
      // The capture and the backfill, with the report open the whole time: nothing of theirs waits on a reader.
      const captured = await runAsOwner(['start', write(planFor(shape, { target: locks, ...batches('diagnose', 'pipeline', 'backfill') }))])
      expect(captured.exitCode, captured.all).toBe(0)
      expect(await triggers()).toBe(2)
      expect(slowest).toBeLessThan(locks.lock_timeout_ms + 1000)

      // A concurrent index build must wait for the report; past its bound it stops, names it, and leaves no invalid index.
      const sessions = sessionsDir()
      const indexing = write(
        planFor(shape, { target: locks, index: { wait_for_transactions_seconds: 2 }, ...batches('diagnose', 'index') }),
      )
      const waited = await runAsOwner(['start', indexing], sessions)
      expect(waited.exitCode, waited.all).toBe(1)
      expect(waited.stderr).toContain('waited 2 s for transactions open before it')
      expect(waited.stderr).toContain(`pid ${reportPid} (application_name 'monthly report'`)
      // Dropping it concurrently would wait for the same report: it is left, said, and the resume drops it and builds again.
      expect(waited.stderr).toContain('is left invalid until `runner resume` drops it and builds again')
      const invalid = () => count(`SELECT count(*)::int AS n FROM pg_index WHERE indrelid = 'docs'::regclass AND NOT indisvalid`)
      expect(await invalid()).toBe(1)
      await report.query('COMMIT')
      const indexed = await runAsOwner(['resume'], sessions)
      expect(indexed.exitCode, indexed.all).toBe(0)
      expect(await invalid()).toBe(0)
      expect(await count(`SELECT count(*)::int AS n FROM pg_indexes WHERE tablename = 'docs' AND indexdef ILIKE '%hnsw%'`)).toBe(1)

      // A writer mid-transaction (ROW EXCLUSIVE) holds up a trigger's creation: each try waits at most lock_timeout, then it is named.
      await admin.exec('DROP TRIGGER runner_enqueue_embedding ON docs; DROP TRIGGER runner_dequeue_embedding ON docs')
      const writer = await connectAs(owner, 'bulk import')
      await writer.query('BEGIN')
      await writer.query(`UPDATE docs SET category = 'importing' WHERE id = 10`)
      const writerPid = (await writer.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid
      slowest = 0
      const sessions2 = sessionsDir()
      const blocked = await runAsOwner(['start', write(planFor(shape, { target: locks, ...batches('diagnose', 'pipeline') }))], sessions2)
      expect(blocked.exitCode, blocked.all).toBe(1)
      expect(blocked.stderr).toContain('could not lock "public"."docs" within 300 ms in 3 tries')
      expect(blocked.stderr).toContain(`pid ${writerPid} (application_name 'bulk import'`)
      expect(slowest).toBeLessThan(locks.lock_timeout_ms + 1000) // queued behind each try for at most lock_timeout
      expect(await triggers()).toBe(0) // nothing half-installed
      await writer.query('COMMIT')
      const resumed = await runAsOwner(['resume'], sessions2)
      expect(resumed.exitCode, resumed.all).toBe(0)
      expect(await triggers()).toBe(2)
    } finally {
      probing = false
      await probes
    }
  }, 120_000)

  it('refuses a table whose row-level security hides rows from it, and counts every row once it may see them', async () => {
    await createApplication(50)
    await admin.exec(`ALTER TABLE docs ADD COLUMN deleted boolean NOT NULL DEFAULT false;
      UPDATE docs SET deleted = true WHERE id % 5 = 0;
      ALTER TABLE docs ENABLE ROW LEVEL SECURITY; ALTER TABLE docs FORCE ROW LEVEL SECURITY;
      CREATE POLICY live_only ON docs USING (NOT deleted)`)
    const refused = await runAsOwner(['start', write(planFor(shape))])
    expect(refused.exitCode, refused.all).toBe(2)
    expect(refused.stderr).toContain(`target.tables[0].table: public.docs has row-level security that hides rows from role ${owner}`)
    expect(refused.stderr).toContain('policies: live_only')
    expect(refused.stderr).not.toMatch(/\n\s+at /)
    expect(await count(`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'runner'`)).toBe(0)
    expect(await count(`SELECT count(*)::int AS n FROM pg_indexes WHERE tablename = 'docs' AND indexdef ILIKE '%hnsw%'`)).toBe(0)
    // status claims no count it could not see either.
    const status = await runAsOwner(['status', write(planFor(shape)), '--json'])
    const reported = JSON.parse(status.stdout)
    expect(reported.columns[0]).toMatchObject({ rows: 40, rows_hidden: true })
    expect(reported.attention.join(' ')).toContain('public.docs: row-level security hides rows from this role')

    await admin.exec(`ALTER ROLE ${owner} BYPASSRLS`)
    const sessions = sessionsDir()
    const fixed = await runAsOwner(['start', write(planFor(shape))], sessions)
    expect(fixed.exitCode, fixed.all).toBe(3)
    expect(await count('SELECT count(*)::int AS n FROM docs WHERE embedding IS NULL')).toBe(0) // the hidden ten included
    expect(batchOutput(lastSession(sessions), 'validate').tables[0]).toMatchObject({ rows: 50, nulls: 0 })
  })

  it('judges vectors of unknown origin on a random sample, and re-embeds zero vectors and norms the model never gives', async () => {
    await createApplication(120)
    const first = await runAsOwner(['start', write(planFor(shape))])
    expect(first.exitCode, first.all).toBe(3)
    const modelVectors = embeddedWithCurrentText
    const zeroes = () => count('SELECT count(*)::int AS n FROM docs WHERE vector_norm(embedding) = 0')
    const zero = `'[${Array(DIMS).fill(0).join(',')}]'`

    // The model's own vectors in rows 1-5, another's (random, of unit norm like a model's) in the rest, and four zero vectors: forget who wrote any of them.
    await admin.exec(`DELETE FROM runner.embedding_meta; ALTER TABLE docs DISABLE TRIGGER USER;
      UPDATE docs SET embedding = l2_normalize((SELECT array_agg(random() - 0.5)::vector FROM generate_series(1, ${DIMS}) WHERE docs.id > 0)) WHERE id > 5;
      UPDATE docs SET embedding = ${zero} WHERE id IN (20, 40, 60, 80);
      ALTER TABLE docs ENABLE TRIGGER USER`)
    const sessions = sessionsDir()
    const mixed = await runAsOwner(['start', write(planFor(shape))], sessions)
    expect(mixed.exitCode, mixed.all).toBe(3)
    const check = batchOutput(lastSession(sessions), 'backfill').tables[0].unknown_check
    expect(check).toMatchObject({ unknown: 120, implausible: 4, sampled: 60, matched: false })
    expect(await modelVectors()).toBe(120)
    expect(await zeroes()).toBe(0)

    // Every vector the model's own but four zero vectors: the rest adopted on the sample, the zeroes embedded again.
    await admin.exec(`DELETE FROM runner.embedding_meta; ALTER TABLE docs DISABLE TRIGGER USER;
      UPDATE docs SET embedding = ${zero} WHERE id IN (20, 40, 60, 80); ALTER TABLE docs ENABLE TRIGGER USER`)
    const sessions2 = sessionsDir()
    const adopted = await runAsOwner(['start', write(planFor(shape))], sessions2)
    expect(adopted.exitCode, adopted.all).toBe(3)
    const backfill = batchOutput(lastSession(sessions2), 'backfill').tables[0]
    expect(backfill.unknown_check).toMatchObject({ unknown: 120, implausible: 4, sampled: 60, matched: true, bound: 0.05 })
    expect(backfill.adopted).toBe(116)
    expect(backfill.reembedded).toBe(4)
    expect(await zeroes()).toBe(0)
    expect(await modelVectors()).toBe(120)
    expect(readFileSync(join(lastSession(sessions2), 'summary.md'), 'utf8') + adopted.stderr).toContain(
      'at 95% confidence fewer than 5.0% of them are',
    )
  })

  it("builds beside an index of the application's that has the runner's name, and its down migration drops only its own", async () => {
    await createApplication(30)
    await admin.exec('CREATE INDEX docs_embedding_hnsw ON docs USING hnsw (embedding vector_l2_ops)')
    const sessions = sessionsDir()
    const started = await runAsOwner(['start', write(planFor(shape))], sessions)
    expect(started.exitCode, started.all).toBe(3)
    const indexes = (
      await admin.query<{ name: string; def: string }>(
        `SELECT indexname AS name, indexdef AS def FROM pg_indexes WHERE tablename = 'docs' AND indexdef ILIKE '%hnsw%' ORDER BY 1`,
      )
    ).rows
    expect(indexes.map((i) => i.name)).toEqual(['docs_embedding_hnsw', 'docs_embedding_hnsw_2'])
    expect(indexes[0]!.def).toContain('vector_l2_ops')
    expect(indexes[1]!.def).toContain('vector_cosine_ops')
    const output = batchOutput(lastSession(sessions), 'index')
    expect(output.indexes[0]).toMatchObject({ name: 'docs_embedding_hnsw_2', action: 'created', valid: true })
    const down = readFileSync(join(lastSession(sessions), output.migrations.down_sql), 'utf8')
    expect(down).toContain('DROP INDEX CONCURRENTLY IF EXISTS "public"."docs_embedding_hnsw_2"')
    expect(down).not.toMatch(/"docs_embedding_hnsw"/)
  })

  describe('refuses before the first change what a read-only look can refute', () => {
    const nothingChanged = async () => {
      expect(await count(`SELECT count(*)::int AS n FROM pg_indexes WHERE tablename = 'docs' AND indexdef ILIKE '%hnsw%'`)).toBe(0)
      expect(await count(`SELECT count(*)::int AS n FROM pg_trigger WHERE tgrelid = 'docs'::regclass AND tgname LIKE 'runner_%'`)).toBe(0)
    }

    it("a runner schema of another role's that it may use but not create in, or not use at all", async () => {
      await createApplication(10)
      await admin.exec(`CREATE SCHEMA runner; GRANT USAGE ON SCHEMA runner TO ${owner}`)
      const usable = await runAsOwner(['start', write(planFor(shape))])
      expect(usable.exitCode, usable.all).toBe(2)
      expect(usable.stderr).toContain(
        `target.runner_schema: schema runner exists, owned by postgres, and role ${owner} lacks CREATE on it: GRANT USAGE, CREATE ON SCHEMA "runner" TO ${owner}`,
      )
      await nothingChanged()
      await admin.exec(`REVOKE USAGE ON SCHEMA runner FROM ${owner}`)
      const closed = await runAsOwner(['start', write(planFor(shape))])
      expect(closed.exitCode, closed.all).toBe(2)
      expect(closed.stderr).toContain(
        `target.runner_schema: schema runner exists, owned by postgres, and role ${owner} lacks USAGE and CREATE on it`,
      )
      expect(closed.stderr).not.toMatch(/\n\s+at /)
      await nothingChanged()
    })

    it('a target that cannot be written: every transaction read-only by default', async () => {
      await createApplication(10)
      await admin.exec(`ALTER ROLE ${owner} SET default_transaction_read_only = on`)
      const refused = await runAsOwner(['start', write(planFor(shape))])
      expect(refused.exitCode, refused.all).toBe(2)
      expect(refused.stderr).toContain(
        `target.database_url_env: the database starts every transaction read-only for role ${owner} (default_transaction_read_only = on)`,
      )
      await nothingChanged()
    })

    it("a statement_timeout on the role is overridden in the runner's own sessions, and said", async () => {
      await createApplication(200)
      await admin.exec(`ALTER ROLE ${owner} SET statement_timeout = '20ms'; ALTER ROLE ${owner} SET lock_timeout = '10ms'`)
      const sessions = sessionsDir()
      const run = await runAsOwner(['start', write(planFor(shape))], sessions)
      expect(run.exitCode, run.all).toBe(3)
      expect(run.stderr).toContain(
        "preflight: statement_timeout = 20ms is set on the role; the runner's own sessions run with statement_timeout = 0",
      )
      expect(run.stderr).toContain('preflight: lock_timeout = 10ms is set on the role')
      expect(batchOutput(lastSession(sessions), 'index').indexes[0]).toMatchObject({ valid: true })
      // The application's sessions keep the role's setting.
      const application = await connectAs(owner, 'the application')
      expect((await application.query<{ s: string }>(`SELECT current_setting('statement_timeout') AS s`)).rows[0]!.s).toBe('20ms')
    })
  })

  it('the backfill never deadlocks the application: rows it holds are skipped and come back, each ends with its newest text embedded', async () => {
    await createApplication(3000)
    const application = await connectAs(app, 'the application')
    const errors: string[] = []
    let racing = true
    // The application locks 20 rows at a time in descending key order, a little apart: the
    // opposite of the runner's order, which is how two writers deadlock.
    const race = (async () => {
      for (let round = 0; racing; round++) {
        const top = 3000 - ((round * 37) % 2900)
        try {
          await application.query('BEGIN')
          for (let k = top; k > top - 20; k--) {
            const column = k % 4 === 0 ? 'body' : 'category'
            await application.query(`UPDATE docs SET ${column} = ${column} || ' ' || $2::text WHERE id = $1`, [k, round])
          }
          await sleep(5)
          await application.query('COMMIT')
        } catch (error) {
          errors.push((error as Error).message)
          await application.query('ROLLBACK').catch(() => {})
        }
      }
    })()
    const plan = planFor(shape, { embedding: { batch_size: 256 }, batches: chainedBatches('diagnose', 'index', 'pipeline', 'backfill') })
    const run = await runAsOwner(['start', write(plan)])
    racing = false
    await race
    expect(errors).toEqual([])
    expect(run.exitCode, run.all).toBe(0)
    const worker = await runAsOwner(['worker', write(plan), '--until-empty'])
    expect(worker.exitCode, worker.all).toBe(0)
    expect(await count('SELECT count(*)::int AS n FROM docs WHERE embedding IS NULL')).toBe(0)
    expect(await embeddedWithCurrentText()).toBe(3000)
  }, 120_000)

  it('leaves rows with no text NULL, counted apart and not against coverage', async () => {
    await createApplication(40, { noTextEvery: 10 })
    const sessions = sessionsDir()
    const run = await runAsOwner(['start', write(planFor(shape))], sessions)
    expect(run.exitCode, run.all).toBe(3)
    expect(await count('SELECT count(*)::int AS n FROM docs WHERE embedding IS NULL')).toBe(4)
    const session = lastSession(sessions)
    expect(batchOutput(session, 'diagnose').targets[0]).toMatchObject({ no_text: 4 })
    expect(batchOutput(session, 'backfill').tables[0]).toMatchObject({ remaining_null: 0, no_text: 4 })
    const nulls = JSON.parse(readFileSync(join(session, 'coordination-state.json'), 'utf8')).criteria.find(
      (c: { id: string }) => c.id === 'no_null_embeddings',
    )
    expect(nulls).toMatchObject({ passed: true })
    expect(nulls.measured).toContain('4 rows with no text to embed left NULL')
    // A text emptied by the application is not embedded as " " either.
    await admin.exec(`UPDATE docs SET title = NULL, body = '  ' WHERE id = 1`)
    const worker = await runAsOwner(['worker', write(planFor(shape)), '--until-empty'])
    expect(worker.exitCode, worker.all).toBe(0)
    expect(await count('SELECT count(*)::int AS n FROM docs WHERE id = 1 AND embedding IS NULL')).toBe(1)
    expect(await count('SELECT count(*)::int AS n FROM runner.embedding_queue')).toBe(0)
  })

  it('lists a materialized view over the column, with its REFRESH in the next step, and refreshes nothing', async () => {
    await createApplication(20)
    await admin.exec(
      `CREATE MATERIALIZED VIEW doc_vectors AS SELECT id, embedding FROM docs; ALTER MATERIALIZED VIEW doc_vectors OWNER TO ${owner}`,
    )
    const sessions = sessionsDir()
    const run = await runAsOwner(['start', write(planFor(shape))], sessions)
    expect(run.exitCode, run.all).toBe(3)
    const summary = readFileSync(join(lastSession(sessions), 'summary.md'), 'utf8')
    expect(summary).toContain('`REFRESH MATERIALIZED VIEW public.doc_vectors`')
    expect(batchOutput(lastSession(sessions), 'diagnose').findings.map((f: { code: string }) => f.code)).toContain(
      'MATERIALIZED_VIEW_COPIES',
    )
    expect(await count('SELECT count(*)::int AS n FROM doc_vectors WHERE embedding IS NULL')).toBe(20) // as the application left it
  })
})
