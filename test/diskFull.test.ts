import { existsSync, readFileSync } from 'node:fs'
import { sessionFolders } from './helpers/sessions.ts'
import { join } from 'node:path'
import { execa } from 'execa'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTarget, targetKinds, tempDir, type TestTarget } from './helpers/databases.ts'
import { TEST_SCHEMA_SQL } from './fixtures/testSteps.ts'
import { testPlan, writePlan } from './helpers/plans.ts'
import { runCli } from './helpers/runCli.ts'

// The session folder on a full disk: a real, tiny tmpfs (CI runs as root). The runner stops
// with a clear error naming the file, the state file stays valid JSON, and once there is room
// again `runner resume` completes.

describe('a full disk under the session folder', () => {
  let target: TestTarget
  const mount = tempDir('runner-tiny-')
  beforeAll(async () => {
    target = await createTarget(targetKinds.at(-1)!)
    const db = await target.open()
    await db.exec(TEST_SCHEMA_SQL)
    await db.close()
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=24k', 'tmpfs', mount])
  })
  afterAll(async () => {
    await execa('umount', [mount], { reject: false })
    await target?.drop()
  })

  it('stops with a clear error, keeps the state file whole, and resumes once there is room', async () => {
    const dir = tempDir()
    const planPath = writePlan(dir, testPlan({ embeddedPath: target.path }))
    const sessions = join(mount, 'sessions')
    const env = { TEST_TARGET_URL: target.url ?? '', TEST_UNITS: '50' }
    const run = await runCli(['start', planPath, '--sessions-dir', sessions], { testSteps: true, env })
    expect(run.exitCode, run.all).toBe(1)
    expect(run.stderr).toMatch(
      /runner: cannot write \/\S+: no space left on the device \(ENOSPC\); the previous version of the file is intact/,
    )
    expect(run.stderr).not.toMatch(/\n\s+at /)
    const session = join(sessions, sessionFolders(sessions)[0]!)
    const state = JSON.parse(readFileSync(join(session, 'coordination-state.json'), 'utf8'))
    expect(state.batches.some((b: { status: string }) => b.status !== 'completed')).toBe(true)
    expect(existsSync(join(session, 'session.lock'))).toBe(false)

    await execa('mount', ['-o', 'remount,size=2m', mount])
    const resumed = await runCli(['resume', '--sessions-dir', sessions], { testSteps: true, env })
    expect(resumed.exitCode, resumed.all).toBe(0)
    expect(JSON.parse(readFileSync(join(session, 'coordination-state.json'), 'utf8')).status).toBe('completed')
  })
})
