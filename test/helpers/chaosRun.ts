import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { sessionFolders } from './sessions.ts'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { stringify } from 'yaml'
import { initDemo } from '../../src/demo/initDemo.ts'
import { loadPlan } from '../../src/plan/loadPlan.ts'
import { createServerDatabase, tempDir } from './databases.ts'
import { startFakeOpenAI } from './fakeOpenAI.ts'
import { runCli } from './runCli.ts'

// One chaos run: the shipped plan on a fresh broken demo app on the real server, with the
// openai provider against the fake server, SIGKILLed at random moments and resumed until it
// finishes. Every few milliseconds the state file must parse.

export interface ChaosResult {
  kills: number
  exitCode: number
  criteriaPassed: boolean
  nullEmbeddings: number
  validIndexesPerTable: number[]
  queueDuplicates: number
  repeatedProviderCalls: number
  requeuedByValidate: number
  batchSize: number
  unparsableStateReads: number
  leftoverProbeRows: number
  seconds: number
}

export async function chaosRun(options: { rows: number; maxKills: number; seed: number }): Promise<ChaosResult> {
  const started = performance.now()
  const target = await createServerDatabase()
  const fake = await startFakeOpenAI()
  fake.delayMs = 10
  const dir = tempDir('runner-chaos-')
  let random = options.seed
  const next = () => (random = (random * 1103515245 + 12345) % 2147483648) / 2147483648
  try {
    const db = await target.open()
    const labels = join(dir, 'labels.json')
    writeFileSync(labels, JSON.stringify((await initDemo(db, options.rows)).labels))
    const shipped = loadPlan(join(import.meta.dirname, '../../plans/feature-1.yaml')).plan as any
    const batchSize = 256
    const planPath = join(dir, 'plan.yaml')
    writeFileSync(
      planPath,
      stringify({
        ...shipped,
        embedding: { ...shipped.embedding, provider: 'openai', batch_size: batchSize },
        validate: { ...shipped.validate, labelled_queries: labels, latency_queries: 30, exact_queries: 10 },
        // The fake server's vectors are hashes of the text: they carry no meaning to be relevant with.
        criteria: { ...shipped.criteria, relevance_recall_at_k: null },
      }),
    )
    const sessions = join(dir, 'sessions')
    const env = { DATABASE_URL: target.url!, OPENAI_API_KEY: fake.key, OPENAI_BASE_URL: fake.url }

    let kills = 0
    let unparsable = 0
    let exitCode = -1
    // 3: every batch done and every criterion met but the worker, which --with-worker starts for the check alone.
    for (let attempt = 0; exitCode !== 3 && attempt < options.maxKills + 5; attempt++) {
      // Killed before the session folder existed: there is nothing to resume, start again.
      const args = existsSync(sessions) && sessionFolders(sessions).length > 0 ? ['resume'] : ['start', planPath]
      const child = runCli([...args, '--with-worker', '--sessions-dir', sessions], { env })
      const killAfter = attempt < options.maxKills ? 300 + next() * 4000 : Number.POSITIVE_INFINITY
      const deadline = performance.now() + killAfter
      let finished = false
      void child.then(() => (finished = true))
      while (!finished && performance.now() < deadline) {
        const session = existsSync(sessions) ? sessionFolders(sessions)[0] : undefined
        const file = session && join(sessions, session, 'coordination-state.json')
        if (file && existsSync(file)) {
          try {
            JSON.parse(readFileSync(file, 'utf8'))
          } catch {
            unparsable++
          }
        }
        await sleep(5)
      }
      const killed = !finished
      if (killed) {
        child.kill('SIGKILL')
        kills++
      }
      const result = await child
      exitCode = result.exitCode ?? -1
      if (!killed && exitCode !== 3)
        throw new Error(
          `the runner failed (exit ${exitCode}, signal ${result.signal}):\n${result.all}\n${String((result as any).message ?? '')}`,
        )
    }
    const session = join(sessions, sessionFolders(sessions)[0]!)
    const state = JSON.parse(readFileSync(join(session, 'coordination-state.json'), 'utf8'))

    const count = async (sql: string) => (await db.query<{ n: number }>(sql)).rows[0]!.n
    const nullEmbeddings = await count(
      `SELECT ((SELECT count(*) FROM atoms WHERE embedding IS NULL) + (SELECT count(*) FROM messages WHERE embedding IS NULL) + (SELECT count(*) FROM topics WHERE embedding IS NULL))::int AS n`,
    )
    const validIndexesPerTable = []
    for (const table of ['atoms', 'messages', 'topics']) {
      validIndexesPerTable.push(
        await count(
          `SELECT count(*)::int AS n FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam WHERE i.indrelid = '${table}'::regclass AND a.amname = 'hnsw' AND i.indisvalid`,
        ),
      )
    }
    const invalid = await count(`SELECT count(*)::int AS n FROM pg_index WHERE NOT indisvalid`)
    const queueDuplicates = await count(`SELECT (count(*) - count(DISTINCT (table_name, row_key)))::int AS n FROM runner.embedding_queue`)
    const texts = new Set(
      (
        await db.query<{ t: string }>(
          `SELECT concat_ws(' ', title, content) AS t FROM atoms UNION ALL SELECT content FROM messages UNION ALL SELECT concat_ws(' ', name, description) FROM topics`,
        )
      ).rows.map((r) => r.t),
    )
    const repeated = [...fake.embedded].filter(([t]) => texts.has(t)).reduce((s, [, n]) => s + n - 1, 0)
    const leftoverProbeRows = await count(`SELECT count(*)::int AS n FROM atoms WHERE content LIKE 'runner probe %'`)
    await db.close()
    return {
      kills,
      exitCode,
      // Met, but for the worker: the one --with-worker starts for the check is not a deployed one (pending, exit 3).
      criteriaPassed: state.criteria?.length > 0 && state.criteria.every((c: any) => c.passed || c.pending) && invalid === 0,
      nullEmbeddings,
      validIndexesPerTable,
      queueDuplicates,
      repeatedProviderCalls: repeated,
      // The auto-embedding check queues one existing row per table again, on purpose, each time validate runs.
      requeuedByValidate: 3 * (state.batches.find((b: any) => b.step === 'validate' || b.id === 'validate')?.attempts ?? 0),
      batchSize,
      unparsableStateReads: unparsable,
      leftoverProbeRows,
      seconds: (performance.now() - started) / 1000,
    }
  } finally {
    await fake.close()
    await target.drop()
  }
}
