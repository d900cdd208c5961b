import { Session } from '../checkpoint/session.ts'
import { checkStepsRegistered } from '../coordinator/runSession.ts'
import { targetUrl } from '../db/openTarget.ts'
import { loadPlan } from '../plan/loadPlan.ts'
import { orderBatches } from '../plan/orderBatches.ts'
import type { StepRegistry } from '../steps/step.ts'
import { driveSession } from './driveSession.ts'

export interface StartOptions {
  planPath: string
  dryRun: boolean
  sessionsDir: string
  registry: StepRegistry
  signal: AbortSignal
  provider?: 'local' | 'openai'
  withWorker?: boolean
}

export async function start(options: StartOptions): Promise<number> {
  const loaded = loadPlan(options.planPath)
  const { plan } = loaded
  checkStepsRegistered(plan, options.registry)
  const ordered = orderBatches(plan.batches)
  if (options.dryRun) {
    const url = targetUrl(plan)
    const lines = [
      `plan ${plan.id}: ${plan.title} (${loaded.path}, sha256 ${loaded.sha256.slice(0, 12)})`,
      `target: ${url ? `the database in $${plan.target.database_url_env}` : `the embedded database in ${plan.target.embedded.path} (demo app seeded if empty)`}`,
      `tables: ${plan.target.tables.map((t) => `${t.schema}.${t.table}.${t.embedding_column} (${t.distance})`).join(', ')}`,
      'batches, in order:',
      ...ordered.map((b, i) => {
        const guards = [b.guards.read_only && 'read only', !b.guards.writes_embeddings && 'writes no embeddings'].filter(Boolean).join(', ')
        return `  ${i + 1}. ${b.id} [step ${b.step}, agent ${b.agent}]${b.depends_on.length ? ` after ${b.depends_on.join(', ')}` : ''}${guards ? ` (${guards})` : ''}\n${b.scope.map((s) => `       - ${s}`).join('\n')}`
      }),
      'dry run: nothing was touched',
    ]
    process.stdout.write(`${lines.join('\n')}\n`)
    return 0
  }
  const session = Session.create(options.sessionsDir, loaded, ordered)
  session.event('session_started', { plan: loaded.path, plan_sha256: loaded.sha256 })
  return driveSession(session, plan, options.registry, options.signal, { provider: options.provider, withWorker: options.withWorker })
}
