import { resolve } from 'node:path'
import { z } from 'zod'
import { alembicUpgrade } from '../../appSource/alembic.ts'
import type { Queryable } from '../../db/database.ts'
import type { RunnerSchema } from '../../db/runnerSchema/objects.ts'
import type { Target } from '../../db/target.ts'
import { captureRevision, captureRevisionId } from '../../pipeline/captureRevision.ts'
import type { Plan } from '../../plan/schema.ts'
import { writeRevisionOnce } from '../index/writeMigrations.ts'
import { readTableNames } from '../../db/catalog/readSettings.ts'
import { readSchemaVersion } from '../../db/runnerSchema/migrateRunnerSchema.ts'
import { MIGRATIONS } from '../../db/runnerSchema/migrations.ts'
import { CAPTURE_TRIGGER, DEQUEUE_TRIGGER, FAILED_TABLE, META_TABLE, QUEUE_TABLE, TRIGGER_NAMES } from '../../db/runnerSchema/objects.ts'
import { installPipeline, readCaptureTriggers, readVectorSchema } from '../../pipeline/installPipeline.ts'
import { queueBacklog } from '../../pipeline/queue.ts'
import type { Step } from '../step.ts'
import { type RoleProof, requireCaptureForRoles, roleProofSchema } from '../validate/proveAsApplicationRoles.ts'
import { lockPolicy } from '../../plan/schema.ts'

// Batch 3a of the seed: fix auto-embedding on creation. Installs, idempotently, the runner's
// schema at this runner's version and the capture triggers; `runner worker` does the embedding.

const outputSchema = z.object({
  schema: z.string(),
  schema_version: z.object({ from: z.number().int(), to: z.number().int() }),
  objects: z.array(z.string()),
  channel: z.string(),
  triggers: z.array(z.object({ table: z.string(), name: z.string(), definition: z.string() })),
  queue_pending: z.number().int(),
  /** The capture proved as each role the application writes as, before the triggers were created. */
  role_proofs: z.array(roleProofSchema).default([]),
  worker_command: z.string(),
  /** The capture as an Alembic revision (target.alembic.capture_revision). */
  alembic_revision: z.string().nullable().default(null),
})
export type PipelineOutput = z.infer<typeof outputSchema>

/** The capture as a revision on the application's head (idempotent: a re-run finds its file); applied by its alembic when the plan says so. */
async function writeCaptureRevision(
  db: Queryable,
  rs: RunnerSchema,
  targets: Target[],
  plan: Plan,
  log: (m: string) => void,
): Promise<string> {
  const alembic = plan.target.alembic!
  const vectorSchema = await readVectorSchema(db)
  const path = writeRevisionOnce(
    resolve(alembic.versions_dir),
    captureRevisionId(rs, targets, vectorSchema),
    'runner_capture',
    (ids) => captureRevision(rs, targets, vectorSchema, ids),
    log,
  )
  // Everything in it is already here: upgrade only records it, so the database is at the application's head.
  if (alembic.apply) await alembicUpgrade(alembic, log, path)
  return path
}

export const pipelineStep: Step<PipelineOutput> = {
  name: 'pipeline',
  output: outputSchema,

  async run({ db, targets, runnerSchema: rs, plan, log }) {
    for (const t of targets) t.requireVector()
    const roleProofs: RoleProof[] = []
    const beforeTriggers = requireCaptureForRoles(db, rs, plan, log, roleProofs)
    const installed = await installPipeline(db, rs, targets, { locks: lockPolicy(plan), log, beforeTriggers })
    // Read back what is installed rather than trusting what was sent.
    const triggers = await readCaptureTriggers(db, targets)
    const expected = targets.length * TRIGGER_NAMES.length
    if (triggers.length !== expected) throw new Error(`expected ${expected} capture triggers after the install, found ${triggers.length}`)
    const tables = await readTableNames(db, rs.name)
    const alembicRevision = plan.target.alembic?.capture_revision ? await writeCaptureRevision(db, rs, targets, plan, log) : null
    return {
      schema: rs.name,
      schema_version: { from: installed.from, to: installed.to },
      objects: tables.map((t) => `${rs.name}.${t}`),
      channel: rs.channel,
      triggers,
      queue_pending: (await queueBacklog(db, rs)).pending,
      role_proofs: roleProofs,
      worker_command: 'runner worker <plan>',
      alembic_revision: alembicRevision,
    }
  },

  async preview({ db, targets, runnerSchema: rs }) {
    const { version, latest } = await readSchemaVersion(db, rs)
    return [
      version === latest
        ? `schema ${rs.name} at version ${latest}: nothing to migrate`
        : `schema ${rs.name}: migrations ${version + 1} to ${latest} (${MIGRATIONS.filter((m) => m.version > version)
            .map((m) => m.description)
            .join('; ')})`,
      ...targets.map(
        (t) =>
          `CREATE OR REPLACE FUNCTION ${rs.captureFunction(t.plan)}(); CREATE TRIGGER ${CAPTURE_TRIGGER} BEFORE INSERT OR UPDATE OF ${t.textColumns} ON ${t.table}; CREATE TRIGGER ${DEQUEUE_TRIGGER} AFTER DELETE ON ${t.table}`,
      ),
    ]
  },

  summarize: (o) =>
    `capture triggers on ${o.triggers.length / TRIGGER_NAMES.length} tables, queue ${o.schema}.${QUEUE_TABLE} (${o.queue_pending} pending); run \`${o.worker_command}\` to embed new rows`,

  details: (o) =>
    [
      '## Installed',
      '',
      `In schema \`${o.schema}\` (runner schema version ${o.schema_version.to}${o.schema_version.from === o.schema_version.to ? ', already current' : `, migrated from ${o.schema_version.from}`}): ${o.objects.map((x) => `\`${x}\``).join(', ')} (queue, failed jobs: ${FAILED_TABLE}, embedding metadata: ${META_TABLE}).`,
      `Workers wake on NOTIFY \`${o.channel}\`.`,
      '',
      '| table | trigger | definition |',
      '| --- | --- | --- |',
      ...o.triggers.map((t) => `| ${t.table} | ${t.name} | \`${t.definition}\` |`),
      '',
      ...(o.role_proofs.length
        ? [
            "The capture runs as its owner (SECURITY DEFINER), so the application's roles need no rights in the runner's schema. Proved on a rolled-back copy of each table, as each role the application writes as, before the trigger was created:",
            '',
            '| table | role | proved | detail |',
            '| --- | --- | --- | --- |',
            ...o.role_proofs.map(
              (p) => `| ${p.table} | ${p.role} | ${p.proved === null ? 'not proved' : p.proved ? 'yes' : '**no**'} | ${p.detail} |`,
            ),
            '',
          ]
        : ['No role other than the owner may write these tables.', '']),
      `New and changed rows are queued in the writer's transaction; \`${o.worker_command}\` embeds them (several may run at once). \`runner pipeline uninstall <plan>\` removes all of it.`,
      '',
      ...(o.alembic_revision
        ? [
            `The same capture as an Alembic revision: \`${o.alembic_revision}\`. A database built by \`alembic upgrade head\` gets it; on one that has it, upgrade only records the revision.`,
            '',
          ]
        : []),
    ].join('\n'),
}
