import { startSession } from '../coordinator/driveSession.ts'
import { checkPlanRunnable } from '../coordinator/checkPlanRunnable.ts'
import { targetUrl } from '../db/openTarget.ts'
import { log } from '../log/log.ts'
import { loadPlan } from '../plan/loadPlan.ts'
import { orderBatches } from '../plan/orderBatches.ts'
import type { StepRegistry } from '../steps/step.ts'
import { exitCodeOf, printSessionDir } from './outcome.ts'

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
  checkPlanRunnable(plan, options.registry)
  if (options.dryRun) {
    process.stdout.write(`${describePlan(loaded.path, loaded.sha256, plan)}\n`)
    return 0
  }
  const outcome = await startSession(loaded, {
    sessionsDir: options.sessionsDir,
    registry: options.registry,
    signal: options.signal,
    log,
    options: { provider: options.provider, with_worker: options.withWorker },
  })
  printSessionDir(outcome)
  return exitCodeOf(outcome)
}

function describePlan(path: string, sha256: string, plan: ReturnType<typeof loadPlan>['plan']): string {
  const url = targetUrl(plan)
  return [
    `plan ${plan.id}: ${plan.title} (${path}, sha256 ${sha256.slice(0, 12)})`,
    `target: ${url ? `the database in $${plan.target.database_url_env}` : `the embedded database in ${plan.target.embedded.path} (demo app seeded if empty)`}`,
    `tables: ${plan.target.tables.map((t) => `${t.schema}.${t.table}.${t.embedding_column} (${t.distance})`).join(', ')}`,
    'batches, in order:',
    ...orderBatches(plan.batches).map((b, i) => {
      const guards = [b.guards.read_only && 'read only', !b.guards.writes_embeddings && 'writes no embeddings'].filter(Boolean).join(', ')
      return `  ${i + 1}. ${b.id} [step ${b.step}, agent ${b.agent}]${b.depends_on.length ? ` after ${b.depends_on.join(', ')}` : ''}${guards ? ` (${guards})` : ''}\n${b.scope.map((s) => `       - ${s}`).join('\n')}`
    }),
    'dry run: nothing was touched',
  ].join('\n')
}
