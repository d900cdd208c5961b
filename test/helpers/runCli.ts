import { join } from 'node:path'
import { execa } from 'execa'

// The runner as a user runs it: `node bin/runner.js …` (the compiled CLI, which the test run
// builds first: test/globalSetup.ts) in a child process, or the same CLI from its sources with
// the coordinator tests' counting steps registered. Never rejects: tests read exitCode
// and the interleaved output in `all`.

export const bin = join(import.meta.dirname, '../../bin/runner.js')
const withTestSteps = join(import.meta.dirname, '../fixtures/runnerWithTestSteps.ts')

export function runCli(args: string[], options: { env?: Record<string, string | undefined>; cwd?: string; testSteps?: boolean } = {}) {
  const entry = options.testSteps ? ['--import', 'tsx', withTestSteps] : [bin]
  // forceKillAfterDelay off: a test that sends SIGTERM sees how long the runner itself takes to stop.
  return execa('node', [...entry, ...args], { env: options.env, cwd: options.cwd, reject: false, all: true, forceKillAfterDelay: false })
}
