import { z } from 'zod'
import { quoteIdent } from '../../db/quote.ts'
import { FAILED_TABLE, QUEUE_TABLE } from '../../db/runnerObjects.ts'
import { installPipeline, META_TABLE, notifyChannel } from '../../pipeline/installPipeline.ts'
import { queueBacklog } from '../../pipeline/queue.ts'
import type { Step } from '../step.ts'

// Batch 3a of the seed: fix auto-embedding on creation. Installs, idempotently, the queue and
// the capture triggers in the runner's own schema; `runner worker` does the embedding.

const outputSchema = z.object({
  schema: z.string(),
  objects: z.array(z.string()),
  channel: z.string(),
  triggers: z.array(z.object({ table: z.string(), name: z.string(), definition: z.string() })),
  queue_pending: z.number().int(),
  worker_command: z.string(),
})
export type PipelineOutput = z.infer<typeof outputSchema>

export const pipelineStep: Step<PipelineOutput> = {
  name: 'pipeline',
  output: outputSchema,

  async run({ db, plan }) {
    await installPipeline(db, plan)
    const schema = plan.target.runner_schema
    // Read back what is installed rather than trusting what was sent.
    const { rows: triggers } = await db.query<{ table: string; name: string; definition: string }>(
      `SELECT n.nspname || '.' || c.relname AS table, t.tgname AS name, pg_get_triggerdef(t.oid) AS definition
       FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE t.tgname IN ('runner_enqueue_embedding', 'runner_dequeue_embedding') ORDER BY 1, 2`,
    )
    const expected = plan.target.tables.length * 2
    if (triggers.length !== expected) throw new Error(`expected ${expected} capture triggers after the install, found ${triggers.length}`)
    const { rows: tables } = await db.query<{ name: string }>(`SELECT tablename AS name FROM pg_tables WHERE schemaname = $1 ORDER BY 1`, [
      schema,
    ])
    return {
      schema,
      objects: tables.map((t) => `${schema}.${t.name}`),
      channel: notifyChannel(plan),
      triggers,
      queue_pending: (await queueBacklog(db, schema)).pending,
      worker_command: 'runner worker <plan>',
    }
  },

  summarize: (o) =>
    `capture triggers on ${o.triggers.length / 2} tables, queue ${o.schema}.${QUEUE_TABLE} (${o.queue_pending} pending); run \`${o.worker_command}\` to embed new rows`,

  details: (o) =>
    [
      '## Installed',
      '',
      `In schema \`${quoteIdent(o.schema)}\`: ${o.objects.map((x) => `\`${x}\``).join(', ')} (queue, failed jobs: ${FAILED_TABLE}, embedding metadata: ${META_TABLE}).`,
      `Workers wake on NOTIFY \`${o.channel}\`.`,
      '',
      '| table | trigger | definition |',
      '| --- | --- | --- |',
      ...o.triggers.map((t) => `| ${t.table} | ${t.name} | \`${t.definition}\` |`),
      '',
      `New and changed rows are queued in the writer's transaction; \`${o.worker_command}\` embeds them (several may run at once). \`runner pipeline uninstall <plan>\` removes all of it.`,
      '',
    ].join('\n'),
}
