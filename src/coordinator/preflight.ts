import { countRepeatedKeys, readKeyUniqueness } from '../db/catalog/readKeyUniqueness.ts'
import {
  canSuppressTriggers,
  hasDatabasePrivilege,
  OWNERSHIP_NEEDED,
  readPrivileges,
  readRelationKind,
} from '../db/catalog/readPrivileges.ts'
import { readExtension } from '../db/catalog/readExtension.ts'
import { firesOnEmbeddingWrite, readTriggerDetails, type TriggerDetail } from '../db/catalog/readTriggers.ts'
import type { Queryable } from '../db/database.ts'
import { foreignObjectsIn } from '../db/runnerSchema/foreignObjects.ts'
import { describeSchemaAccess, readSchemaAccess, readSchemaVersion } from '../db/runnerSchema/migrateRunnerSchema.ts'
import { describeHiddenRows, readHiddenRows } from '../db/catalog/readRowVisibility.ts'
import { readSessionLimits } from '../db/catalog/readSessionLimits.ts'
import { readColumnModels } from '../db/runnerSchema/columnModels.ts'
import type { RunnerSchema } from '../db/runnerSchema/objects.ts'
import type { Target } from '../db/target.ts'
import { MAX_INDEXABLE_DIMENSIONS } from '../db/vectorOps.ts'
import type { EmbeddingProvider } from '../embeddings/provider.ts'
import type { WritePolicy } from '../pipeline/writeEmbeddings.ts'
import { errorMessage } from '../errors.ts'
import type { Plan, StepName } from '../plan/schema.ts'

// Read before write: everything a read-only look at the target can refute is refused here,
// before the first statement that changes anything, at start and at resume. Each refusal
// names the plan path and the database object, and says how to fix it.

export interface Refusal {
  /** Where in the plan: target.tables[0].key */
  path: string
  /** What in the database: public.atoms.id */
  object: string
  problem: string
}

export interface PreflightResult {
  refusals: Refusal[]
  writes: WritePolicy
  /** The application's triggers an embedding write would fire, unless suppressed. */
  triggers: TriggerDetail[]
  /** What the runner does differently here and says so (a timeout of the role's overridden). */
  notes: string[]
}

const TEXT_TYPES = new Set(['text', 'varchar', 'bpchar', 'citext', 'name'])

async function checkTable(
  db: Queryable,
  t: Target,
  i: number,
  plan: Plan,
  steps: Set<StepName>,
  refuse: (r: Refusal) => void,
): Promise<void> {
  const at = (field: string) => `target.tables[${i}].${field}`
  const kind = await readRelationKind(db, t.plan.schema, t.plan.table)
  if (kind !== 'r' && kind !== 'p') {
    refuse({
      path: at('table'),
      object: t.name,
      problem: 'is not a table (a view or another kind of relation): the runner writes embeddings only into tables',
    })
  }
  const columns = t.columns
  for (const [j, name] of t.plan.text_columns.entries()) {
    const column = columns.find((c) => c.name === name)
    if (column && !TEXT_TYPES.has(column.base_type) && !t.plan.cast_to_text.includes(name)) {
      refuse({
        path: at(`text_columns[${j}]`),
        object: `${t.name}.${name}`,
        problem: `is ${column.type}, not text: its values would be embedded as their text form. Name a text column, or list it in cast_to_text to embed its text form on purpose`,
      })
    }
  }
  const keys = t.keyColumns.map((name) => columns.find((c) => c.name === name))
  if (keys.every(Boolean)) {
    const problem = await keyProblem(
      db,
      t,
      keys.every((k) => k!.not_null),
    )
    const object = t.keyColumns.length === 1 ? `${t.name}.${t.keyColumns[0]}` : `${t.name} (${t.keyColumns.join(', ')})`
    if (problem) refuse({ path: at('key'), object, problem })
  }
  if (!t.vector) {
    const extension = await readExtension(db)
    refuse({
      path: at('embedding_column'),
      object: `${t.name}.${t.plan.embedding_column}`,
      problem: `is ${t.embeddingType}, not vector(${plan.embedding.dimensions})${extension.installed_version ? '' : ' (pgvector is not installed in this database: CREATE EXTENSION vector)'}`,
    })
  } else if (t.vector.untyped && t.plan.untyped_column === 'set_type' && steps.has('index')) {
    // Typing the column casts every stored vector: one of another length (another model's) would fail it.
    const others = (await t.storedDimensions(db)).filter((d) => d.dimensions !== t.vector!.dimensions)
    if (others.length)
      refuse({
        path: at('untyped_column'),
        object: `${t.name}.${t.plan.embedding_column}`,
        problem: `holds ${others.map((d) => `${d.rows.toLocaleString('en-US')} vectors of ${d.dimensions} dimensions`).join(', ')} besides the plan's ${t.vector.dimensions}: it cannot be typed ${t.vector.type}(${t.vector.dimensions}); leave untyped_column: index_cast (an index on the cast, partial to the plan's length)`,
      })
  } else if (t.vector.dimensions !== plan.embedding.dimensions) {
    refuse({
      path: 'embedding.dimensions',
      object: `${t.name}.${t.plan.embedding_column}`,
      problem: `is ${t.embeddingType} but the plan's model ${plan.embedding.model} gives ${plan.embedding.dimensions} dimensions`,
    })
  } else if (steps.has('index')) {
    const indexed =
      plan.index.precision === 'binary' ? 'bit' : plan.index.precision === 'half' || t.vector.type === 'halfvec' ? 'halfvec' : 'vector'
    if (t.vector.dimensions > MAX_INDEXABLE_DIMENSIONS[indexed]) {
      refuse({
        path: 'index.precision',
        object: `${t.name}.${t.plan.embedding_column}`,
        problem: `has ${t.vector.dimensions} dimensions; an HNSW index on ${indexed} takes at most ${MAX_INDEXABLE_DIMENSIONS[indexed]}${indexed === 'vector' ? ' (index.precision: half takes up to 4,000)' : ''}`,
      })
    }
  }
}

async function checkRights(
  db: Queryable,
  plan: Plan,
  targets: Target[],
  rs: RunnerSchema,
  steps: Set<StepName>,
  refuse: (r: Refusal) => void,
): Promise<void> {
  const rights = await readPrivileges(db, rs.name, plan.target.tables)
  const buildsOrInstalls = steps.has('index') || steps.has('pipeline') || steps.has('backfill')
  for (const [i, table] of rights.tables.entries()) {
    const missing = [
      !table.select && 'SELECT',
      !table.update && (steps.has('backfill') || steps.has('pipeline')) && 'UPDATE (the backfill and the worker write embeddings)',
      !table.owner && buildsOrInstalls && OWNERSHIP_NEEDED,
    ].filter(Boolean)
    if (missing.length) {
      refuse({
        path: `target.tables[${i}].table`,
        object: table.table,
        problem: `role ${rights.role} lacks ${missing.join('; ')}: GRANT it, or run as the owner`,
      })
    }
  }
  const access = await readSchemaAccess(db, rs)
  if ((steps.has('pipeline') || steps.has('backfill')) && !(access.usage && access.create)) {
    refuse({
      path: 'target.runner_schema',
      object: `schema ${rs.name}`,
      problem: describeSchemaAccess(access, rs).replace(/^schema \S+ /, ''),
    })
  }
  for (const [i, t] of targets.entries()) {
    const hidden = await readHiddenRows(db, t.table)
    if (hidden.length) refuse({ path: `target.tables[${i}].table`, object: t.name, problem: describeHiddenRows(rights.role, hidden) })
  }
  if (steps.has('validate') && plan.criteria.auto_embed_within_seconds !== null && !(await hasDatabasePrivilege(db, 'TEMP'))) {
    refuse({
      path: 'criteria.auto_embed_within_seconds',
      object: 'the database',
      problem: `role ${rights.role} may not create temporary tables, which the auto-embedding check uses: GRANT TEMP, or set the criterion to null`,
    })
  }
}

async function checkRunnerSchema(db: Queryable, rs: RunnerSchema, refuse: (r: Refusal) => void): Promise<void> {
  if (!(await readSchemaAccess(db, rs)).usage) return // refused by checkRights, which names the owner and the grant
  const version = await readSchemaVersion(db, rs)
  if (version.version > version.latest) {
    refuse({
      path: 'target.runner_schema',
      object: `schema ${rs.name}`,
      problem: `is at version ${version.version}, written by a newer runner (this one knows up to ${version.latest}): upgrade runner`,
    })
  }
  const foreign = await foreignObjectsIn(db, rs, version.version)
  if (foreign.length) {
    refuse({
      path: 'target.runner_schema',
      object: `schema ${rs.name}`,
      problem: `holds what the runner did not create (${foreign.slice(0, 5).join(', ')}${foreign.length > 5 ? `, and ${foreign.length - 5} more` : ''}): name a schema of the runner's own, such as runner`,
    })
  }
}

/** The model each column is bound to must be the one this run writes with. */
async function checkModels(
  db: Queryable,
  rs: RunnerSchema,
  targets: Target[],
  provider: EmbeddingProvider,
  refuse: (r: Refusal) => void,
): Promise<void> {
  const recorded = await readColumnModels(db, rs)
  for (const [i, t] of targets.entries()) {
    const bound = recorded.find((m) => m.table_name === t.name && m.column_name === t.plan.embedding_column)
    if (bound && bound.model !== provider.model) {
      refuse({
        path: `target.tables[${i}].embedding_column`,
        object: `${t.name}.${t.plan.embedding_column}`,
        problem: `holds embeddings of ${bound.provider} ${bound.model}; this run would write ${provider.name} ${provider.model}, and one column holds one model's vectors. Use the same provider (--provider ${bound.provider}), or change the column's model on purpose with --change-model`,
      })
    }
  }
}

async function checkTriggers(
  db: Queryable,
  plan: Plan,
  targets: Target[],
  refuse: (r: Refusal) => void,
): Promise<{ writes: WritePolicy; triggers: TriggerDetail[] }> {
  const triggers: TriggerDetail[] = []
  for (const t of targets)
    triggers.push(
      ...(await readTriggerDetails(db, t.plan.schema, t.plan.table)).filter((tr) => firesOnEmbeddingWrite(tr, t.plan.embedding_column)),
    )
  if (plan.target.application_triggers === 'fire') return { writes: { suppressTriggers: false }, triggers }
  const may = await canSuppressTriggers(db)
  // ENABLE ALWAYS and ENABLE REPLICA triggers fire in replica mode too: nothing the runner may set keeps those quiet.
  const unstoppable = triggers.filter((tr) => tr.enabled === 'A' || tr.enabled === 'R')
  const blocking = may ? unstoppable : triggers
  if (blocking.length) {
    refuse({
      path: 'target.application_triggers',
      object: blocking.map((tr) => `trigger ${tr.name} on ${tr.table} (${tr.function})`).join(', '),
      problem: may
        ? 'would fire on every embedding the runner writes (ENABLE ALWAYS or ENABLE REPLICA); set target.application_triggers: fire to let them fire on purpose, or change how they are enabled'
        : 'would fire on every embedding the runner writes, and this role may not set session_replication_role to keep them quiet: GRANT SET ON PARAMETER session_replication_role TO the role (PostgreSQL 15+), run as a superuser, or set target.application_triggers: fire to let them fire on purpose',
    })
  }
  return { writes: { suppressTriggers: may }, triggers }
}

/**
 * The whole read-only check. `steps` are the steps of the batches still to run: a plan that
 * only diagnoses needs no rights to write. `provider`, when the run embeds, is asked for one
 * tiny embedding of the column's dimension.
 */
export async function preflight(
  db: Queryable,
  plan: Plan,
  targets: Target[],
  rs: RunnerSchema,
  steps: Set<StepName>,
  provider: (() => Promise<EmbeddingProvider>) | undefined,
): Promise<PreflightResult> {
  const refusals: Refusal[] = []
  const notes: string[] = []
  const refuse = (r: Refusal) => refusals.push(r)
  for (const [i, t] of targets.entries()) await checkTable(db, t, i, plan, steps, refuse)
  if (changesTarget(steps)) notes.push(...(await checkSessionLimits(db, refuse)))
  await checkRights(db, plan, targets, rs, steps, refuse)
  await checkRunnerSchema(db, rs, refuse)
  const { writes, triggers } = await checkTriggers(db, plan, targets, refuse)
  if (provider) {
    try {
      const p = await provider()
      await p.probe()
      if (p.dimensions !== plan.embedding.dimensions) {
        refuse({
          path: 'embedding.dimensions',
          object: `provider ${p.name} ${p.model}`,
          problem: `gives ${p.dimensions} dimensions, the plan says ${plan.embedding.dimensions}`,
        })
      }
      if (!plan.embedding.change_model) await checkModels(db, rs, targets, p, refuse)
    } catch (error) {
      refuse({
        path: 'embedding.provider',
        object: `the ${plan.embedding.provider} provider`,
        problem: `did not answer a one-text embedding request: ${errorMessage(error)}`,
      })
    }
  }
  return { refusals, writes, triggers, notes }
}

/** Whether batches of these steps change the target database. */
const changesTarget = (steps: Set<StepName>) =>
  steps.has('index') || steps.has('pipeline') || steps.has('backfill') || steps.has('validate')

/**
 * A server that cannot be written is refused; timeouts set on the role or the database are
 * overridden in the runner's own sessions (as pg_dump does; connectPostgres sets them), and said.
 */
async function checkSessionLimits(db: Queryable, refuse: (r: Refusal) => void): Promise<string[]> {
  const limits = await readSessionLimits(db)
  if (limits.in_recovery)
    refuse({
      path: 'target.database_url_env',
      object: 'the database',
      problem: 'is a standby in recovery (pg_is_in_recovery()): nothing can be written there. Point the URL at the primary',
    })
  if (limits.read_only_default)
    refuse({
      path: 'target.database_url_env',
      object: 'the database',
      problem: `starts every transaction read-only for role ${limits.role} (default_transaction_read_only = on): run as a role that may write, or change that setting on purpose`,
    })
  return limits.timeouts.map(
    (t) =>
      `${t.name} = ${t.value} is set on ${t.set_on}; the runner's own sessions run with ${t.name} = 0 (an index build or a backfill cancelled midway would leave an invalid index or a half-written table), and each statement that locks an application table waits at most target.lock_timeout_ms`,
  )
}

export function describeRefusals(planPath: string, refusals: Refusal[]): string {
  return `${planPath}: the target database cannot take the plan as it is; nothing was changed:\n${refusals.map((r) => `  ${r.path}: ${r.object} ${r.problem}`).join('\n')}`
}

/** Why the runner cannot find each row by the plan's key, or undefined when it can (see readKeyUniqueness). */
async function keyProblem(db: Queryable, t: Target, notNull: boolean): Promise<string | undefined> {
  const keys = t.keyColumns
  const plain =
    keys.length === 1
      ? 'must be NOT NULL and unique on its own (a primary key or a unique index on that one column): the runner finds each row by it'
      : 'must be NOT NULL and unique together (a primary key or a unique index on those columns): the runner finds each row by them'
  if (!notNull) return plain
  const uniqueness = await readKeyUniqueness(db, t.plan.schema, t.plan.table, keys)
  if (uniqueness.kind === 'unique') return undefined
  if (uniqueness.kind === 'none' || keys.length > 1) return plain
  const key = keys[0]!
  const whole = [key, ...uniqueness.partitionKey.filter((c) => c !== key)]
  const partitioned = `is unique only together with the partition key (${uniqueness.index} on ${whole.join(', ')})`
  if (!uniqueness.generatedBy)
    return `${partitioned} and its values are not drawn from an identity, a sequence or a random uuid, so nothing keeps two partitions from holding the same one: name the whole key in the plan (key: [${whole.join(', ')}]), the runner finds each row by it`
  const repeated = await countRepeatedKeys(db, t.plan.schema, t.plan.table, key)
  if (repeated > 0) return `${partitioned}, and ${repeated} value(s) occur on more than one row: the runner finds each row by it`
  return undefined
}
