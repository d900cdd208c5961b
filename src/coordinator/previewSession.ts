import { existsSync } from 'node:fs'
import type { SessionOptions } from '../checkpoint/sessionState.ts'
import { connectUrl, targetUrl, openEmbeddedLazily } from '../db/openTarget.ts'
import { runnerSchema } from '../db/runnerSchema/objects.ts'
import { resolveTargets } from '../db/target.ts'
import { createProvider, providerSlot } from '../embeddings/createProvider.ts'
import type { Log } from '../log/log.ts'
import { createProgress } from '../log/progress.ts'
import type { LoadedPlan } from '../plan/loadPlan.ts'
import { orderBatches } from '../plan/orderBatches.ts'
import type { StepContext, StepRegistry } from '../steps/step.ts'
import { applySessionOptions } from './applySessionOptions.ts'
import { checkPlanRunnable } from './checkPlanRunnable.ts'
import { embedsIn } from './driveSession.ts'
import { readOnlyView } from './guards.ts'
import { describeRefusals, preflight } from './preflight.ts'

// `runner start --dry-run`: the preflight, and what each batch would do on this very
// database, all in one READ ONLY transaction. No session folder, nothing written.

export interface Preview {
  text: string
  refused: boolean
}

export async function previewSession(loaded: LoadedPlan, registry: StepRegistry, options: SessionOptions, log: Log): Promise<Preview> {
  checkPlanRunnable(loaded.plan, registry)
  const plan = applySessionOptions(loaded.plan, options)
  const url = targetUrl(plan)
  const head = [`plan ${plan.id}: ${plan.title} (${loaded.path}, sha256 ${loaded.sha256.slice(0, 12)})`]
  if (!url && !existsSync(plan.target.embedded.path)) {
    head.push(
      `target: the embedded database in ${plan.target.embedded.path}, which does not exist yet: \`runner start\` creates it with the demo app`,
    )
    return {
      text: [
        ...head,
        ...orderBatches(plan.batches).map((b, i) => `  ${i + 1}. ${b.id} [step ${b.step}]`),
        'dry run: nothing was touched',
      ].join('\n'),
      refused: false,
    }
  }
  const db = url ? await connectUrl(url) : await openEmbeddedLazily(plan.target.embedded.path)
  try {
    head.push(`target: ${db.description}`)
    const rs = runnerSchema(plan.target.runner_schema)
    const provider = providerSlot(() => createProvider(plan, db.kind, log))
    const embeddings = provider.get
    const steps = new Set(plan.batches.map((b) => b.step))
    return await db.transaction(
      async (tx) => {
        const view = readOnlyView(tx, db)
        const targets = await resolveTargets(view, plan, loaded.path)
        const checked = await preflight(view, plan, targets, rs, steps, embedsIn(steps) ? provider.load : undefined)
        const lines = [
          ...head,
          checked.refusals.length ? describeRefusals(loaded.path, checked.refusals) : 'preflight: passed; the target can take the plan',
          checked.triggers.length
            ? `the application's triggers an embedding write fires: ${checked.triggers.map((t) => `${t.name} on ${t.table}`).join(', ')}; ${checked.writes.suppressTriggers ? 'kept quiet (session_replication_role = replica)' : 'left to fire (target.application_triggers: fire)'}`
            : "no trigger of the application's fires on an embedding write",
          'batches, in order:',
        ]
        for (const [i, batch] of orderBatches(plan.batches).entries()) {
          const after = batch.depends_on.length ? ` after ${batch.depends_on.join(', ')}` : ''
          lines.push(
            `  ${i + 1}. ${batch.id} [step ${batch.step}, agent ${batch.agent}]${after}${batch.guards.read_only ? ' (read only)' : ''}`,
          )
          const step = registry.get(batch.step)
          if (!step?.preview || checked.refusals.length) continue
          const context: StepContext<unknown> = {
            plan,
            batch,
            db: view,
            targets,
            runnerSchema: rs,
            writes: checked.writes,
            inputs: {},
            progress: createProgress({ write: () => true, isTTY: false } as unknown as NodeJS.WriteStream),
            checkpoint: { load: () => undefined, save: () => {} },
            signal: new AbortController().signal,
            embeddings,
            writeArtifact: () => '',
            log,
          }
          for (const line of await step.preview(context)) lines.push(`       ${line}`)
        }
        lines.push('dry run: nothing was changed')
        return { text: lines.join('\n'), refused: checked.refusals.length > 0 }
      },
      { readOnly: true },
    )
  } finally {
    await db.close()
  }
}
