import { Session } from '../checkpoint/session.ts'
import { UsageError } from '../errors.ts'

export interface StatusOptions {
  sessionDir?: string
  sessionsDir: string
  json: boolean
}

export async function status(options: StatusOptions): Promise<number> {
  const dir = options.sessionDir ?? Session.findLatest(options.sessionsDir)
  if (!dir) throw new UsageError(`no session in ${options.sessionsDir}/`)
  const { state } = Session.open(dir)
  if (options.json) {
    process.stdout.write(`${JSON.stringify(state, null, 2)}\n`)
    return 0
  }
  const lines = [`session ${state.session_id}: ${state.status} (plan ${state.plan_path}, target ${state.target ?? '?'})`]
  for (const b of state.batches) {
    const detail = b.status === 'failed' || b.status === 'interrupted' ? b.error : b.summary
    lines.push(`  ${b.id.padEnd(12)} ${b.status.padEnd(11)} attempts ${b.attempts}${detail ? `  ${detail}` : ''}`)
  }
  for (const c of state.check_ins ?? [])
    lines.push(
      `  check-in ${c.where} ${c.batch} at ${c.paused_at}${c.went_on_at ? `; went on at ${c.went_on_at} by ${c.went_on_by}` : '; `runner resume` goes on'}`,
    )
  for (const c of state.criteria ?? [])
    lines.push(`  criterion ${c.id}: ${c.passed ? 'pass' : 'FAIL'} (${c.measured}, needs ${c.threshold})`)
  process.stdout.write(`${lines.join('\n')}\n`)
  return 0
}
