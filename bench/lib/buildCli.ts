import { join } from 'node:path'
import { execa } from 'execa'

/** Benchmarks run the CLI as users do, compiled (bin/runner.js -> dist/): built here from the current sources first. */
export async function buildCli(): Promise<void> {
  await execa('npm', ['run', 'build'], { cwd: join(import.meta.dirname, '../..') })
}
