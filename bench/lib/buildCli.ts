import { existsSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'

/** Benchmarks run the CLI as users do, compiled (bin/runner.js -> dist/): built here from the current sources first. */
export async function buildCli(): Promise<void> {
  await execa('npm', ['run', 'build'], { cwd: join(import.meta.dirname, '../..') })
}

/**
 * The CLI as it was at a git revision, built in a worktree of its own beside this checkout
 * (sharing its node_modules), for a benchmark that measures before and after in the same run.
 * Returns the path of that revision's bin/runner.js.
 */
export async function buildCliAt(revision: string): Promise<string> {
  const root = join(import.meta.dirname, '../..')
  const { stdout: commit } = await execa('git', ['rev-parse', '--short', revision], { cwd: root })
  const dir = join(tmpdir(), `runner-at-${commit}`)
  if (!existsSync(dir)) {
    await execa('git', ['worktree', 'add', '--detach', dir, commit], { cwd: root })
    symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'))
  }
  await execa('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: dir })
  return join(dir, 'bin/runner.js')
}
