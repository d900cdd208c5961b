import { copyFileSync, existsSync, mkdirSync } from 'node:fs'
import { UsageError } from '../errors.ts'
import { log } from '../log/log.ts'

// `runner init`: the starter plan where `runner start plans/feature-1.yaml` looks for it, so a
// runner installed from its package (which ships the plan) works in an empty folder.

const SHIPPED_PLAN = new URL('../../plans/feature-1.yaml', import.meta.url)
const TARGET = 'plans/feature-1.yaml'

export function init(options: { force: boolean }): number {
  if (existsSync(TARGET) && !options.force)
    throw new UsageError(`${TARGET} exists already; edit it, or run \`runner init --force\` to replace it`)
  mkdirSync('plans', { recursive: true })
  copyFileSync(SHIPPED_PLAN, TARGET)
  log(`wrote ${TARGET}: the seed feature's plan. Without DATABASE_URL it runs on the embedded demo database:`)
  log(`  runner start ${TARGET}`)
  log(`For your database, edit its target.tables, set DATABASE_URL and OPENAI_API_KEY, and try \`runner start ${TARGET} --dry-run\` first.`)
  return 0
}
