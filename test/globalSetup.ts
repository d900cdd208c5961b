import { join } from 'node:path'
import { execaSync } from 'execa'

// The CLI the tests spawn is the compiled one a user runs (bin/runner.js -> dist/), built here
// from the current sources once per test run, so it can never be stale.
export default function buildTheCli(): void {
  execaSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: join(import.meta.dirname, '..'), stdio: 'inherit' })
}
