import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { sessionFolders } from './helpers/sessions.ts'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { execa, type ResultPromise } from 'execa'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SessionState } from '../src/checkpoint/session.ts'
import { createTarget, serverUrl, targetKinds, tempDir, type TestTarget } from './helpers/databases.ts'
import { TEST_SCHEMA_SQL } from './fixtures/testSteps.ts'
import { testPlan, writePlan } from './helpers/plans.ts'
import { runCli } from './helpers/runCli.ts'

// The coordinator, driven as a user drives it: the real CLI in a child process (with test
// steps registered), killed, interrupted and resumed, against a real database.

describe.each(targetKinds)('coordinator on %s', (kind) => {
  let target: TestTarget
  beforeAll(async () => {
    target = await createTarget(kind)
    const db = await target.open()
    await db.exec(TEST_SCHEMA_SQL)
    await db.close()
  })
  afterAll(async () => target?.drop())

  /** A fresh session folder and plan, and a clean unit_log. */
  async function setup(change: (plan: ReturnType<typeof testPlan>) => void = () => {}) {
    const db = await target.open()
    await db.exec('TRUNCATE unit_log; UPDATE items SET embedding = NULL')
    await db.close()
    const dir = tempDir()
    const plan = testPlan({ embeddedPath: target.path })
    change(plan)
    return { dir, sessions: join(dir, 'sessions'), planPath: writePlan(dir, plan) }
  }

  function runner(args: string[], env: Record<string, string> = {}): ResultPromise<{ reject: false; all: true }> {
    return runCli([...args], { testSteps: true, env: { TEST_TARGET_URL: target.url ?? '', ...env } }) as ResultPromise<{
      reject: false
      all: true
    }>
  }

  const onlySession = (sessions: string) => join(sessions, sessionFolders(sessions)[0]!)
  const stateOf = (session: string) => JSON.parse(readFileSync(join(session, 'coordination-state.json'), 'utf8')) as SessionState

  async function unitLog(): Promise<Record<string, number[]>> {
    const db = await target.open()
    const { rows } = await db.query<{ batch: string; unit: number }>('SELECT batch, unit FROM unit_log ORDER BY batch, unit')
    await db.close()
    const byBatch: Record<string, number[]> = {}
    for (const r of rows) (byBatch[r.batch] ??= []).push(r.unit)
    return byBatch
  }

  /** Polls the state file until predicate holds; every read must parse as JSON. */
  async function waitForState(session: string, predicate: (s: SessionState) => boolean, timeoutMs = 60_000) {
    const until = Date.now() + timeoutMs
    while (Date.now() < until) {
      const file = join(session, 'coordination-state.json')
      if (existsSync(file)) {
        const state = JSON.parse(readFileSync(file, 'utf8')) as SessionState
        if (predicate(state)) return state
      }
      await sleep(20)
    }
    throw new Error('timed out waiting for the session state')
  }

  async function waitForSession(sessions: string) {
    const until = Date.now() + 60_000
    while (!existsSync(sessions) || sessionFolders(sessions).length === 0) {
      if (Date.now() > until) throw new Error('no session folder appeared')
      await sleep(20)
    }
    return onlySession(sessions)
  }

  const cursorOf = (session: string, batch: string) =>
    (JSON.parse(readFileSync(join(session, 'batch-progress.json'), 'utf8'))[batch]?.cursor as number | undefined) ?? 0

  it('runs every batch in dependency order and writes the artifacts', async () => {
    const { sessions, planPath } = await setup((p) => p.batches.reverse())
    const run = await runner(['start', planPath, '--sessions-dir', sessions])
    expect(run.exitCode, run.all).toBe(0)
    const session = onlySession(sessions)
    expect(run.stdout.trim()).toBe(session)
    const state = stateOf(session)
    expect(state.status).toBe('completed')
    expect(state.batches.map((b) => [b.id, b.status, b.attempts])).toEqual([
      ['first', 'completed', 1],
      ['second', 'completed', 1],
      ['third', 'completed', 1],
    ])
    for (const [i, id] of ['first', 'second', 'third'].entries()) {
      const folder = join(session, 'batches', `0${i + 1}-${id}`)
      expect(JSON.parse(readFileSync(join(folder, 'output.json'), 'utf8'))).toEqual({ units: 5, resumed_from: 0 })
      expect(readFileSync(join(folder, 'report.md'), 'utf8')).toContain(`# Batch ${id}`)
    }
    expect(readFileSync(join(session, 'summary.md'), 'utf8')).toMatch(/\| 3 \| third \| pytest-test-master \| completed \| 1 \|/)
    const events = readFileSync(join(session, 'events.ndjson'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).type)
    expect(events).toEqual([
      'session_started',
      'batch_started',
      'batch_completed',
      'batch_started',
      'batch_completed',
      'batch_started',
      'batch_completed',
      'session_finished',
    ])
    expect(await unitLog()).toEqual({ first: [1, 2, 3, 4, 5], second: [1, 2, 3, 4, 5], third: [1, 2, 3, 4, 5] })
  })

  it('resumes a batch that failed half-way without re-running completed batches', async () => {
    const { sessions, planPath } = await setup()
    const failed = await runner(['start', planPath, '--sessions-dir', sessions], { TEST_FAIL_AT: 'second:3' })
    expect(failed.exitCode, failed.all).toBe(1)
    expect(failed.stderr).toContain('batch second: failed: injected failure at unit 3')
    expect(failed.stderr).not.toMatch(/\n\s+at /) // no stack trace for a failed batch
    const session = onlySession(sessions)
    expect(stateOf(session).batches.map((b) => b.status)).toEqual(['completed', 'failed', 'pending'])

    const resumed = await runner(['resume', '--sessions-dir', sessions])
    expect(resumed.exitCode, resumed.all).toBe(0)
    expect(resumed.stderr).toContain('batch first: completed earlier, skipped')
    const state = stateOf(session)
    expect(state.batches.map((b) => [b.status, b.attempts])).toEqual([
      ['completed', 1],
      ['completed', 2],
      ['completed', 1],
    ])
    // The unit in flight when it failed (3) ran twice; nothing else repeated.
    expect(await unitLog()).toEqual({ first: [1, 2, 3, 4, 5], second: [1, 2, 3, 3, 4, 5], third: [1, 2, 3, 4, 5] })
    expect(JSON.parse(readFileSync(join(session, 'batches/02-second/output.json'), 'utf8'))).toEqual({ units: 5, resumed_from: 2 })
  })

  it('completes after SIGKILL in the middle of a batch, and the state file is valid JSON throughout', async () => {
    const { sessions, planPath } = await setup()
    const env = { TEST_UNITS: '30', TEST_UNIT_MS: '40' }
    const child = runner(['start', planPath, '--sessions-dir', sessions], env)
    const session = await waitForSession(sessions)
    let reads = 0
    await waitForState(session, (s) => {
      reads++
      return s.batches[1]!.status === 'running' && cursorOf(session, 'second') >= 5
    })
    child.kill('SIGKILL')
    expect((await child).signal).toBe('SIGKILL')
    expect(stateOf(session).batches.map((b) => b.status)).toEqual(['completed', 'running', 'pending'])

    const resumed = await runner(['resume', '--sessions-dir', sessions], env)
    expect(resumed.exitCode, resumed.all).toBe(0)
    expect(reads).toBeGreaterThan(0)
    const log = await unitLog()
    expect(log.first).toEqual(Array.from({ length: 30 }, (_, i) => i + 1))
    expect(new Set(log.second)).toEqual(new Set(Array.from({ length: 30 }, (_, i) => i + 1)))
    expect(log.second!.length - 30).toBeLessThanOrEqual(1) // at most the unit in flight is redone
    expect(stateOf(session).batches.map((b) => b.attempts)).toEqual([1, 2, 1])
  })

  it('refuses a second process on the same session', async () => {
    const { sessions, planPath } = await setup()
    const env = { TEST_UNITS: '200', TEST_UNIT_MS: '25' }
    const first = runner(['start', planPath, '--sessions-dir', sessions], env)
    const session = await waitForSession(sessions)
    await waitForState(session, (s) => s.batches[0]!.status === 'running')
    const second = await runner(['resume', '--session', session], env)
    first.kill('SIGKILL')
    await first
    expect(second.exitCode).toBe(2)
    // The second is refused before it touches the database: by the database's advisory lock on
    // the server, by the embedded folder's lock (PGlite has none of its own) on the embedded one.
    expect(second.stderr).toMatch(
      kind === 'postgres'
        ? /another runner is working on this database \(schema runner\): runner \d+@/
        : /the embedded database in .* is open in another runner process \(pid \d+\)/,
    )
    // The refused process left the database usable, even after the first was killed mid-write.
    expect((await unitLog()).first!.length).toBeGreaterThan(0)
  })

  it('on SIGINT finishes the unit, saves the checkpoint and exits 130; resume completes', async () => {
    const { sessions, planPath } = await setup()
    const env = { TEST_UNITS: '40', TEST_UNIT_MS: '30' }
    const child = runner(['start', planPath, '--sessions-dir', sessions], env)
    const session = await waitForSession(sessions)
    await waitForState(session, (s) => s.batches[1]!.status === 'running' && cursorOf(session, 'second') >= 3)
    child.kill('SIGINT')
    const result = await child
    expect(result.exitCode, result.all).toBe(130)
    expect(result.stderr).toContain('run `runner resume` to continue')
    const state = stateOf(session)
    expect(state.status).toBe('interrupted')
    expect(state.batches[1]).toMatchObject({ status: 'interrupted' })
    const saved = cursorOf(session, 'second')
    expect((await unitLog()).second!.length).toBe(saved) // the unit in flight finished and was checkpointed

    const resumed = await runner(['resume', '--sessions-dir', sessions], env)
    expect(resumed.exitCode, resumed.all).toBe(0)
    expect((await unitLog()).second).toEqual(Array.from({ length: 40 }, (_, i) => i + 1))
  })

  it('refuses to resume when the plan changed, unless told to', async () => {
    const { sessions, planPath } = await setup()
    expect((await runner(['start', planPath, '--sessions-dir', sessions], { TEST_FAIL_AT: 'first:1' })).exitCode).toBe(1)
    writeFileSync(planPath, `${readFileSync(planPath, 'utf8')}\n# edited\n`)
    const refused = await runner(['resume', '--sessions-dir', sessions])
    expect(refused.exitCode).toBe(2)
    expect(refused.stderr).toMatch(/changed since this session started .*--allow-plan-change/)
    const allowed = await runner(['resume', '--sessions-dir', sessions, '--allow-plan-change'])
    expect(allowed.exitCode, allowed.all).toBe(0)
  })

  it('runs a read_only batch in a READ ONLY transaction', async () => {
    const { sessions, planPath } = await setup((p) => (p.batches[0]!.guards = { read_only: true }))
    const run = await runner(['start', planPath, '--sessions-dir', sessions])
    expect(run.exitCode).toBe(1)
    expect(stateOf(onlySession(sessions)).batches[0]!.error).toMatch(/cannot execute INSERT in a read-only transaction/)
    expect(await unitLog()).toEqual({})
  })

  it('fails a batch that writes embeddings when its guard forbids it', async () => {
    const { sessions, planPath } = await setup((p) => ((p.batches[1] as any).guards = { writes_embeddings: false }))
    const run = await runner(['start', planPath, '--sessions-dir', sessions], { TEST_WRITE: 'second' })
    expect(run.exitCode).toBe(1)
    expect(stateOf(onlySession(sessions)).batches[1]!.error).toBe(
      'guard violated: batch second may not write embeddings, but public.items.embedding: 0 -> 1 embeddings',
    )
  })

  it('--dry-run prints the batches and touches nothing', async () => {
    const { sessions, planPath } = await setup()
    const run = await runner(['start', planPath, '--dry-run', '--sessions-dir', sessions])
    expect(run.exitCode, run.all).toBe(0)
    expect(run.stdout).toMatch(/1\. first \[step diagnose.*\n[\s\S]*3\. third \[step validate, agent pytest-test-master\] after second/)
    expect(existsSync(sessions)).toBe(false)
    expect(await unitLog()).toEqual({})
  })

  /** A session stopped half-way through batch "second", its files open for editing as an older or newer runner would have left them. */
  async function halfDoneSession() {
    const { sessions, planPath } = await setup()
    const failed = await runner(['start', planPath, '--sessions-dir', sessions], { TEST_FAIL_AT: 'second:3' })
    expect(failed.exitCode, failed.all).toBe(1)
    const session = onlySession(sessions)
    const edit = (file: string, change: (json: any) => any) =>
      writeFileSync(join(session, file), JSON.stringify(change(JSON.parse(readFileSync(join(session, file), 'utf8')))))
    return { sessions, session, edit }
  }

  it('refuses to resume a session written in a format it does not know, with advice, and changes nothing', async () => {
    const { sessions, session, edit } = await halfDoneSession()
    edit('coordination-state.json', (state) => ({ ...state, version: 99 }))
    const before = await unitLog()
    const resumed = await runner(['resume', '--sessions-dir', sessions])
    expect(resumed.exitCode, resumed.all).toBe(2)
    expect(resumed.stderr).toContain('was written in session format 99; this runner reads formats 1 and 2')
    expect(resumed.stderr).toContain('start a new session')
    expect(resumed.stderr).not.toMatch(/\n\s+at /)
    expect(await unitLog()).toEqual(before)
    expect(stateOf(session).version).toBe(99)
  })

  it('refuses a checkpoint in a cursor format the step does not write, instead of misreading it', async () => {
    const { sessions, edit } = await halfDoneSession()
    edit('batch-progress.json', (progress) => ({ ...progress, second: { ...progress.second, cursor_version: 7 } }))
    const resumed = await runner(['resume', '--sessions-dir', sessions])
    expect(resumed.exitCode, resumed.all).toBe(2)
    expect(resumed.stderr).toContain('batch second: its checkpoint is in cursor format 7, this runner writes format 1')
    expect(resumed.stderr).not.toMatch(/\n\s+at /)
  })

  it('resumes a session written in format 1 (before options and versioned cursors) from its cursor', async () => {
    const { sessions, session, edit } = await halfDoneSession()
    edit('coordination-state.json', ({ options: _options, ...state }) => ({ ...state, version: 1 }))
    edit('batch-progress.json', (progress) =>
      Object.fromEntries(Object.entries(progress).map(([batch, { cursor_version: _v, ...entry }]: [string, any]) => [batch, entry])),
    )
    const resumed = await runner(['resume', '--sessions-dir', sessions])
    expect(resumed.exitCode, resumed.all).toBe(0)
    expect(stateOf(session).version).toBe(2)
    expect(JSON.parse(readFileSync(join(session, 'batches/02-second/output.json'), 'utf8'))).toEqual({ units: 5, resumed_from: 2 })
  })

  it('--pause-after stops after that batch with its headline and the resume to go on; resume records who went on', async () => {
    const { sessions, planPath } = await setup()
    const paused = await runner(['start', planPath, '--sessions-dir', sessions, '--pause-after', 'first'])
    expect(paused.exitCode, paused.all).toBe(0)
    const session = onlySession(sessions)
    expect(paused.stderr).toContain('paused after batch first, as asked: ')
    expect(paused.stderr).toContain(`runner resume --session ${session}\` goes on with batch second`)
    let state = stateOf(session)
    expect(state.status).toBe('paused')
    expect(state.batches.map((b) => b.status)).toEqual(['completed', 'pending', 'pending'])
    expect(state.check_ins).toEqual([expect.objectContaining({ where: 'after', batch: 'first', headline: state.batches[0]!.summary })])
    expect(await unitLog()).toEqual({ first: [1, 2, 3, 4, 5] })
    expect(readFileSync(join(session, 'summary.md'), 'utf8')).toContain('**Verdict: Paused after batch first, as asked:')
    expect((await runner(['status', '--sessions-dir', sessions])).stdout).toMatch(/check-in after first at .*`runner resume` goes on/)

    const resumed = await runner(['resume', '--sessions-dir', sessions], { RUNNER_OPERATOR: 'alice' })
    expect(resumed.exitCode, resumed.all).toBe(0)
    state = stateOf(session)
    expect(state.status).toBe('completed')
    expect(state.check_ins).toEqual([expect.objectContaining({ batch: 'first', went_on_by: 'alice' })])
    expect(readFileSync(join(session, 'summary.md'), 'utf8')).toMatch(/\| after \| first \| .* by alice \|/)
    expect(await unitLog()).toEqual({ first: [1, 2, 3, 4, 5], second: [1, 2, 3, 4, 5], third: [1, 2, 3, 4, 5] })
  })

  it('--pause-after each stops after every batch but the last; a name the plan lacks is refused before anything runs', async () => {
    const { sessions, planPath } = await setup()
    const wrong = await runner(['start', planPath, '--sessions-dir', sessions, '--pause-after', 'diagnose,nope'])
    expect(wrong.exitCode).toBe(2)
    expect(wrong.stderr).toContain(`--pause-after: "nope" is not a batch or step of ${planPath} (first, second, third, or each)`)
    expect(existsSync(sessions)).toBe(false)

    expect((await runner(['start', planPath, '--sessions-dir', sessions, '--pause-after', 'each'])).exitCode).toBe(0)
    const session = onlySession(sessions)
    expect((await runner(['resume', '--sessions-dir', sessions])).exitCode).toBe(0)
    expect(stateOf(session).batches.map((b) => b.status)).toEqual(['completed', 'completed', 'pending'])
    const last = await runner(['resume', '--sessions-dir', sessions, '--json'])
    expect(JSON.parse(last.stdout).status).toBe('completed')
    expect(stateOf(session).check_ins?.map((c) => [c.batch, Boolean(c.went_on_at)])).toEqual([
      ['first', true],
      ['second', true],
    ])
  })

  it('--confirm asks at a terminal before each batch that writes, and "no" pauses the session before it', async () => {
    const { sessions, planPath } = await setup()
    const piped = await runner(['start', planPath, '--sessions-dir', sessions, '--confirm'])
    expect(piped.exitCode).toBe(2)
    expect(piped.stderr).toContain('--confirm asks at a terminal, and stdin is not one')

    // A real terminal: script(1) gives the runner a pseudo-terminal; each answer is typed when its question shows.
    const command = [
      'node',
      '--import',
      'tsx',
      'test/fixtures/runnerWithTestSteps.ts',
      'start',
      planPath,
      '--sessions-dir',
      sessions,
      '--confirm',
    ]
    const child = execa('script', ['-q', '-e', '-c', command.map((a) => `'${a}'`).join(' '), '/dev/null'], {
      env: { TEST_TARGET_URL: target.url ?? '', RUNNER_OPERATOR: 'bob' },
      reject: false,
      all: true,
    })
    const answers = ['y', 'n']
    let seen = ''
    child.all!.on('data', (chunk: Buffer) => {
      seen += chunk.toString()
      const asked = seen.match(/\[y\/N\]/g)?.length ?? 0
      if (asked > 2 - answers.length) child.stdin!.write(`${answers.shift()}\n`)
    })
    const run = await child
    expect(run.exitCode, run.all).toBe(0)
    expect(seen).toContain('run batch first (diagnose): First? It writes to the database. [y/N]')
    expect(seen).toContain('run batch second (index): Second?')
    const state = stateOf(onlySession(sessions))
    expect(state.status).toBe('paused')
    expect(state.batches.map((b) => b.status)).toEqual(['completed', 'pending', 'pending'])
    expect(state.check_ins).toEqual([expect.objectContaining({ where: 'before', batch: 'second' })])
    const events = readFileSync(join(onlySession(sessions), 'events.ndjson'), 'utf8')
    expect(events).toMatch(/"type":"batch_confirmed","batch":"first","by":"bob"/)
    expect(await unitLog()).toEqual({ first: [1, 2, 3, 4, 5] })
  })

  it('status shows where each batch is', async () => {
    const { sessions, planPath } = await setup()
    await runner(['start', planPath, '--sessions-dir', sessions], { TEST_FAIL_AT: 'second:2' })
    const text = await runner(['status', '--sessions-dir', sessions])
    expect(text.stdout).toMatch(/second\s+failed\s+attempts 1\s+injected failure at unit 2/)
    const json = await runner(['status', '--json', '--sessions-dir', sessions])
    expect(JSON.parse(json.stdout).batches[1].status).toBe('failed')
  })
})

describe.skipIf(!serverUrl)('resume against another target', () => {
  it('is refused before any batch runs', async () => {
    const server = await createTarget('postgres')
    const embedded = await createTarget('embedded')
    try {
      for (const t of [server, embedded]) {
        const db = await t.open()
        await db.exec(TEST_SCHEMA_SQL)
        await db.close()
      }
      const dir = tempDir()
      const planPath = writePlan(dir, testPlan({ embeddedPath: embedded.path }))
      const sessions = join(dir, 'sessions')
      const run = (args: string[], url: string, env: Record<string, string> = {}) =>
        runCli([...args], { testSteps: true, env: { TEST_TARGET_URL: url, ...env } })
      expect((await run(['start', planPath, '--sessions-dir', sessions], server.url!, { TEST_FAIL_AT: 'second:1' })).exitCode).toBe(1)
      const resumed = await run(['resume', '--sessions-dir', sessions], '')
      expect(resumed.exitCode).toBe(2)
      expect(resumed.stderr).toMatch(
        /this session ran against postgres postgres@127\.0\.0\.1:5432\/runner_test_\w+, but the target now is embedded PostgreSQL/,
      )
      const db = await embedded.open()
      expect((await db.query('SELECT * FROM unit_log')).rows).toEqual([])
      await db.close()
    } finally {
      await server.drop()
      await embedded.drop()
    }
  })
})
