import { OWNERSHIP_NEEDED } from '../../db/catalog/readPrivileges.ts'
import { versionBelow } from '../../db/catalog/readExtension.ts'
import { distanceOfOperatorClass, MAX_INDEXABLE_DIMENSIONS, operatorClass, OPERATORS } from '../../db/vectorOps.ts'
import type { Plan } from '../../plan/schema.ts'
import type { DiagnoseOutput, Finding } from './output.ts'

// Turns what the diagnosis measured into findings with evidence and a recommendation, and a
// root cause in plain words. A pure function of the measurements, so each rule is testable.

/** The baseline the runner holds pgvector to; older installed versions get a warning. */
export const RECOMMENDED_PGVECTOR = '0.8.4'

const n = (value: number) => value.toLocaleString('en-US')

type Measured = Omit<DiagnoseOutput, 'findings' | 'root_cause' | 'memory'>

/** Each rule reads the measurements and adds the findings it sees; findFindings runs them in report order. */
type Rule = (plan: Plan, m: Measured, add: (f: Finding) => void) => void

export function findFindings(plan: Plan, m: Measured): { findings: Finding[]; root_cause: string } {
  const findings: Finding[] = []
  const add = (f: Finding) => findings.push(f)
  for (const rule of [extensionRule, targetRule, originRule, sideEffectsRule, queueRule, privilegesRule, untargetedRule, applicationRule])
    rule(plan, m, add)
  return { findings, root_cause: rootCause(m, findings) }
}

/** What the application does with a target table that the runner must answer for: row-level security, copies of the column, rows with no text. */
const applicationRule: Rule = (_plan, m, add) => {
  for (const t of m.targets) {
    const where = { table: `${t.schema}.${t.table}`, column: t.column }
    const hidden = t.row_security?.hidden_from_runner ?? []
    if (hidden.length) {
      add({
        code: 'ROW_SECURITY_HIDES_ROWS',
        severity: 'error',
        ...where,
        evidence: `row-level security on ${hidden.join(', ')} (${t.row_security!.forced ? 'forced' : 'enabled'}; policies: ${t.row_security!.policies.join(', ') || 'none'}) hides rows from ${m.privileges.role}: the ${t.rows.toLocaleString('en-US')} rows and ${t.nulls.toLocaleString('en-US')} NULL embeddings counted here are only the rows it sees`,
        recommendation: `run as a role with BYPASSRLS (ALTER ROLE ${m.privileges.role} BYPASSRLS) or, where it is not forced, as the table's owner; the preflight refuses to write until then`,
      })
    }
    if (t.stored_dimensions) {
      const others = t.stored_dimensions.filter((d) => d.dimensions !== t.dimensions)
      add({
        code: 'UNTYPED_VECTOR_COLUMN',
        severity: 'warning',
        ...where,
        evidence: `${t.column} is vector with no dimensions of its own (as LangChain creates it): no index can be built on it as it is, so every search is a sequential scan. Stored: ${t.stored_dimensions.map((d) => `${n(d.rows)} of ${d.dimensions} dimensions (${d.model ?? 'model not recorded'})`).join(', ') || 'nothing yet'}${others.length ? `; those of another length than the plan's ${t.dimensions} are another model's and are left alone` : ''}`,
        recommendation: `the index batch builds an HNSW index on (${t.column}::vector(${t.dimensions})), partial to vector_dims(${t.column}) = ${t.dimensions}; the application's query must use the same cast and condition`,
      })
    }
    for (const v of t.materialized_views) {
      add({
        code: 'MATERIALIZED_VIEW_COPIES',
        severity: 'warning',
        ...where,
        evidence: `materialized view ${v.view} reads ${t.column}: it holds the vectors as of its last refresh, not the ones the backfill writes`,
        recommendation: `${v.refresh} once the backfill is done (the runner refreshes nothing of the application's)`,
      })
    }
    if (t.no_text > 0) {
      add({
        code: 'ROWS_WITHOUT_TEXT',
        severity: 'info',
        ...where,
        evidence: `${t.no_text.toLocaleString('en-US')} rows have no text to embed (${t.text_columns.join(', ')} all NULL or blank)`,
        recommendation: 'left NULL and counted apart: one shared vector of nothing would match every query equally',
      })
    }
  }
}

const extensionRule: Rule = (_plan, m, add) => {
  if (!m.extension.installed_version) {
    add({
      code: 'EXTENSION_MISSING',
      severity: 'error',
      evidence: m.extension.available_version
        ? `the vector extension is not installed in this database (version ${m.extension.available_version} is available on the server)`
        : 'the vector extension is neither installed nor available on the server',
      recommendation: m.extension.available_version
        ? 'CREATE EXTENSION vector (as a role allowed to)'
        : 'install pgvector on the server, then CREATE EXTENSION vector',
    })
  } else if (versionBelow(m.extension.installed_version, RECOMMENDED_PGVECTOR)) {
    add({
      code: 'EXTENSION_OUTDATED',
      severity: 'warning',
      evidence: `pgvector ${m.extension.installed_version} is installed; this runner's baseline for HNSW fixes is ${RECOMMENDED_PGVECTOR}${m.extension.available_version && m.extension.available_version !== m.extension.installed_version ? ` (${m.extension.available_version} is available: ALTER EXTENSION vector UPDATE)` : ''}`,
      recommendation: `upgrade pgvector to ${RECOMMENDED_PGVECTOR} or later and read its CHANGELOG for index rebuild notes`,
    })
  }
}

const targetRule: Rule = (plan, m, add) => {
  for (const t of m.targets) {
    const name = `${t.schema}.${t.table}.${t.column}`
    const where = { table: `${t.schema}.${t.table}`, column: t.column }
    if (!t.type) {
      add({
        code: 'TARGET_NOT_VECTOR',
        severity: 'error',
        ...where,
        evidence: `${name} is not a vector or halfvec column`,
        recommendation: `ALTER TABLE ... ALTER COLUMN ${t.column} TYPE vector(${plan.embedding.dimensions}) once pgvector is installed`,
      })
      continue
    }
    if (t.rows > 0 && t.nulls > 0) {
      add({
        code: 'NULL_EMBEDDINGS',
        severity: t.nulls === t.rows ? 'error' : 'warning',
        ...where,
        evidence: `${n(t.rows - t.nulls)} of ${n(t.rows)} rows of ${t.schema}.${t.table} have an embedding (${n(t.nulls)} NULL)`,
        recommendation: 'backfill the NULL embeddings (batch backfill), and install the auto-embedding pipeline so new rows get one',
      })
    }
    if (t.dimensions !== null && t.dimensions !== plan.embedding.dimensions) {
      add({
        code: 'DIMENSION_MISMATCH',
        severity: 'error',
        ...where,
        evidence: `${name} is ${t.type}(${t.dimensions}) but the model ${plan.embedding.model} gives ${plan.embedding.dimensions} dimensions`,
        recommendation: `change the column to ${t.type}(${plan.embedding.dimensions}) or choose a model (or dimensions setting) that gives ${t.dimensions}`,
      })
    }
    if (t.dimensions !== null && t.dimensions > MAX_INDEXABLE_DIMENSIONS[t.type]) {
      add({
        code: 'DIMENSIONS_NOT_INDEXABLE',
        severity: 'error',
        ...where,
        evidence: `${name} has ${n(t.dimensions)} dimensions; an HNSW index on ${t.type} takes at most ${n(MAX_INDEXABLE_DIMENSIONS[t.type])}`,
        recommendation:
          t.dimensions <= MAX_INDEXABLE_DIMENSIONS.halfvec
            ? 'index the half-precision cast (index.precision: half)'
            : 'reduce the dimensions (text-embedding-3 models take a dimensions argument)',
      })
    }
    indexRule(plan, m, { ...t, type: t.type }, add)
    writerRule(plan, m, t, add)
    scanRule(m, t, add)
  }
}

type TargetMeasured = Measured['targets'][number]
const whereOf = (t: TargetMeasured) => ({ table: `${t.schema}.${t.table}`, column: t.column })

function indexRule(
  plan: Plan,
  m: Measured,
  t: TargetMeasured & { type: NonNullable<TargetMeasured['type']> },
  add: (f: Finding) => void,
): void {
  const name = `${t.schema}.${t.table}.${t.column}`
  const where = whereOf(t)
  const indexes = m.indexes.filter((i) => `${i.schema}.${i.table}` === where.table && i.column === t.column)
  for (const index of indexes.filter((i) => !i.valid)) {
    add({
      code: 'INVALID_INDEX',
      severity: 'error',
      ...where,
      evidence: `index ${index.name} on ${name} is invalid (pg_index.indisvalid = false): a CREATE INDEX CONCURRENTLY that failed left it behind; it is maintained on writes but never used`,
      recommendation: `DROP INDEX CONCURRENTLY ${index.name} and build it again (batch index does)`,
    })
  }
  const valid = indexes.filter((i) => i.valid)
  const matching = valid.filter((i) => distanceOfOperatorClass(i.opclass) === t.distance)
  for (const index of valid.filter((i) => distanceOfOperatorClass(i.opclass) !== t.distance)) {
    add({
      code: 'OPCLASS_MISMATCH',
      severity: 'error',
      ...where,
      evidence: `index ${index.name} uses ${index.opclass} (${distanceOfOperatorClass(index.opclass) ?? 'unknown distance'}), but the application queries ${name} with ${t.distance} (${OPERATORS[t.distance]}): the planner cannot use it`,
      recommendation: `build an index with ${operatorClass(t.distance, t.type)}${plan.index.replace_mismatched ? '' : ' (set index.replace_mismatched to let batch index replace this one)'}`,
    })
  }
  if (matching.length === 0 && !indexes.some((i) => !i.valid)) {
    add({
      code: 'NO_VECTOR_INDEX',
      severity: 'error',
      ...where,
      evidence: `${name} has no ${valid.length ? 'usable ' : ''}vector index: every search computes the distance to all ${n(t.rows)} rows`,
      recommendation: `CREATE INDEX CONCURRENTLY ... USING hnsw (${t.column} ${operatorClass(t.distance, t.type)}) (batch index)`,
    })
  }
}

function writerRule(plan: Plan, m: Measured, t: TargetMeasured, add: (f: Finding) => void): void {
  const name = `${t.schema}.${t.table}.${t.column}`
  const where = whereOf(t)
  const triggers = m.writers.triggers.filter((tr) => tr.table === where.table)
  if (triggers.length === 0 && !m.writers.queue && m.writers.workers_connected === 0) {
    add({
      code: 'NO_EMBEDDING_WRITER',
      severity: 'error',
      ...where,
      evidence: `nothing in the database writes ${name}: no trigger on ${where.table}, no embedding queue (${plan.target.runner_schema}.embedding_queue), no worker connected`,
      recommendation: 'install the auto-embedding pipeline (batch pipeline) and run `runner worker`',
    })
  }
  const stores = applicationStores(m, t)
  if (t.nulls > 0 && stores.length)
    add({
      code: 'APP_STORES_WITHOUT_EMBEDDING',
      severity: 'error',
      ...where,
      evidence: stores.map((r) => `${r.file}:${r.line}: ${r.note}`).join('; '),
      recommendation:
        'the capture trigger and `runner worker` (batches pipeline and backfill) embed every row however the application stores it; restoring the call in the create path as well would embed in the request, and the worker still covers rows written elsewhere',
    })
}

/** The application's create paths that store a row of this table with no embedding (from its source). */
function applicationStores(m: Measured, t: TargetMeasured) {
  return m.source_references.filter((r) => r.kind === 'create_without_embedding' && (r.table === undefined || r.table === t.table))
}

/** The application's side of the story: the create path, and embedding functions nothing calls. */
function applicationSide(m: Measured, t: TargetMeasured): string {
  const stores = applicationStores(m, t)
  if (!stores.length) return ''
  const uncalled = m.source_references.filter((r) => r.kind === 'uncalled_embedding_function')
  return `; in the application, ${stores.map((r) => `${r.note} (${r.file}:${r.line})`).join(', and ')}${
    uncalled.length ? `; ${uncalled.map((r) => `${r.note} (${r.file}:${r.line})`).join(', ')}` : ''
  }`
}

function scanRule(m: Measured, t: TargetMeasured, add: (f: Finding) => void): void {
  const where = whereOf(t)
  const indexes = m.indexes.filter((i) => `${i.schema}.${i.table}` === where.table && i.column === t.column)
  const matching = indexes.filter((i) => i.valid && distanceOfOperatorClass(i.opclass) === t.distance)
  const explained = m.query_plans.find((q) => q.table === where.table && q.column === t.column)
  // On a small table with a usable index the planner is right to prefer a scan.
  if (explained?.scan === 'sequential' && !(matching.length > 0 && t.rows < 10_000)) {
    add({
      code: 'SEQUENTIAL_SCAN',
      severity: 'error',
      ...where,
      evidence: matching.length
        ? `the nearest-10 query by ${OPERATORS[t.distance]} scans every row of ${where.table} (Seq Scan, ${explained.execution_ms.toFixed(1)} ms for ${n(t.rows)} rows): the planner prefers it to ${matching[0]!.name} at this session's hnsw.ef_search`
        : `the nearest-10 query by ${OPERATORS[t.distance]} scans every row of ${where.table} (Seq Scan, ${explained.execution_ms.toFixed(1)} ms for ${n(t.rows)} rows)`,
      recommendation: matching.length
        ? 'validate measures at which hnsw.ef_search the planner keeps the index (and either side of it), to set with SET LOCAL where the query runs'
        : 'an HNSW index with the matching operator class lets the planner use an index scan',
    })
  }
}

const originRule: Rule = (plan, m, add) => {
  for (const t of m.targets) {
    const o = t.origin
    if (!o || (o.unknown === 0 && o.other_model === 0)) continue
    add({
      code: 'FOREIGN_EMBEDDINGS',
      severity: 'warning',
      table: `${t.schema}.${t.table}`,
      column: t.column,
      evidence: `${n(o.unknown + o.other_model)} of ${n(o.embedded)} stored vectors were not made by ${o.model}: ${n(o.unknown)} of unknown origin (no record of their model), ${n(o.other_model)} of another model; search ranks them against the model's query vectors all the same`,
      recommendation:
        plan.embedding.unknown_vectors === 'keep'
          ? 'embedding.unknown_vectors is keep: they stay as they are; set it to reembed to have the backfill check and replace them'
          : 'the backfill compares a sample of them with what the model gives for their text, and embeds them again unless they match (embedding.unknown_vectors: keep leaves them)',
    })
  }
}

const sideEffectsRule: Rule = (plan, m, add) => {
  if (m.side_effects.triggers.length === 0) return
  const list = m.side_effects.triggers
    .map(
      (t) =>
        `${t.name} on ${t.table} (${t.function}, ${t.language}${t.enabled !== 'O' ? `, ENABLE ${t.enabled === 'A' ? 'ALWAYS' : 'REPLICA'}` : ''})`,
    )
    .join('; ')
  const quiet = m.side_effects.can_suppress_triggers && m.side_effects.triggers.every((t) => t.enabled === 'O')
  add({
    code: 'APPLICATION_TRIGGERS',
    severity: quiet || plan.target.application_triggers === 'fire' ? 'info' : 'error',
    evidence: `an UPDATE of the embedding column fires the application's own triggers: ${list}`,
    recommendation:
      plan.target.application_triggers === 'fire'
        ? 'target.application_triggers is fire: they will fire on every embedding the runner writes, as chosen'
        : quiet
          ? 'the runner writes with session_replication_role = replica, so they do not fire'
          : 'the runner cannot keep them quiet: GRANT SET ON PARAMETER session_replication_role to the role (PostgreSQL 15+) or run as a superuser, or set target.application_triggers: fire',
  })
}

const queueRule: Rule = (plan, m, add) => {
  if (m.writers.queue && m.writers.queue.pending > 0) {
    add({
      code: 'QUEUE_BACKLOG',
      severity: 'warning',
      evidence: `${n(m.writers.queue.pending)} rows wait in the embedding queue; the oldest for ${Math.round(m.writers.queue.oldest_pending_seconds ?? 0)} s; ${m.writers.workers_connected} worker(s) connected`,
      recommendation: m.writers.workers_connected ? 'add workers (`runner worker` on more machines)' : 'start `runner worker`',
    })
  }
  if (m.writers.queue && m.writers.queue.failed > 0) {
    add({
      code: 'FAILED_JOBS',
      severity: 'warning',
      evidence: `${n(m.writers.queue.failed)} rows failed to embed after every attempt (${plan.target.runner_schema}.embedding_failures holds the last error of each)`,
      recommendation: 'read the errors, fix the cause, then re-queue those rows',
    })
  }
}

const privilegesRule: Rule = (plan, m, add) => {
  const { privileges } = m
  for (const t of privileges.tables) {
    const missing = [
      !t.owner && OWNERSHIP_NEEDED,
      !t.update && 'UPDATE (the backfill and the worker write embeddings)',
      !t.select && 'SELECT',
    ].filter(Boolean)
    if (missing.length) {
      add({
        code: 'MISSING_PRIVILEGES',
        severity: 'error',
        table: t.table,
        evidence: `role ${privileges.role} lacks on ${t.table}: ${missing.join('; ')}`,
        recommendation: `run the runner as the owner of ${t.table}, or GRANT what is missing to ${privileges.role}`,
      })
    }
  }
  if (!privileges.can_create_runner_schema) {
    add({
      code: 'MISSING_PRIVILEGES',
      severity: 'error',
      evidence: `role ${privileges.role} may not create the schema ${plan.target.runner_schema} (CREATE on the database) for the queue and triggers`,
      recommendation: `GRANT CREATE ON DATABASE ... TO ${privileges.role}, or create the schema ${plan.target.runner_schema} for it beforehand`,
    })
  }
}

const untargetedRule: Rule = (_plan, m, add) => {
  for (const c of m.vector_columns.filter((c) => !c.targeted)) {
    add({
      code: 'UNTARGETED_VECTOR_COLUMN',
      severity: 'info',
      table: `${c.schema}.${c.table}`,
      column: c.column,
      evidence: `${c.schema}.${c.table}.${c.column} is ${c.type}(${c.dimensions ?? '?'}) with ${n(c.rows - c.nulls)} of ${n(c.rows)} embedded; the plan does not target it`,
      recommendation: 'add it to target.tables in the plan if the application searches it',
    })
  }
}

function rootCause(m: Measured, findings: Finding[]): string {
  if (findings.some((f) => f.code === 'EXTENSION_MISSING'))
    return 'Semantic search cannot work: the pgvector extension is not installed in this database.'
  // Tables with the same story are told together: "atoms (0 of 60,000 embedded), messages (...): ..."
  const stories = new Map<string, string[]>()
  for (const t of m.targets) {
    const table = `${t.schema}.${t.table}`
    const codes = new Set(findings.filter((f) => f.table === table && f.column === t.column).map((f) => f.code))
    const parts: string[] = []
    if (codes.has('NULL_EMBEDDINGS'))
      parts.push(
        `embeddings are missing${codes.has('NO_EMBEDDING_WRITER') ? ' because nothing writes the column: no trigger, no queue, no worker' : ''}${applicationSide(m, t)}`,
      )
    if (codes.has('INVALID_INDEX')) parts.push('the vector index is invalid (a failed concurrent build)')
    else if (codes.has('OPCLASS_MISMATCH') && codes.has('NO_VECTOR_INDEX'))
      parts.push('the vector index serves another distance than the application queries with')
    else if (codes.has('NO_VECTOR_INDEX')) parts.push('there is no vector index')
    if (codes.has('SEQUENTIAL_SCAN'))
      parts.push(
        codes.has('NO_VECTOR_INDEX') || codes.has('INVALID_INDEX')
          ? 'so every search is a sequential scan'
          : 'the planner prefers a sequential scan to the index at these settings',
      )
    if (codes.has('DIMENSION_MISMATCH')) parts.push("the column's dimensions do not match the model's")
    if (parts.length === 0) continue
    const story = parts.join('; ')
    stories.set(story, [...(stories.get(story) ?? []), `${table}.${t.column} (${n(t.rows - t.nulls)} of ${n(t.rows)} embedded)`])
  }
  if (stories.size === 0) {
    // Said as measured: a small table's sequential scan, which the planner rightly prefers, is not called an index scan.
    const scans = m.query_plans.filter((q) => q.scan !== 'index').map((q) => `${q.table} (${q.scan} scan on a small table, usable index)`)
    return `No problem found: every target column is embedded and indexed with the right operator class; the nearest-10 query is searched by index scan${scans.length ? `, but for ${scans.join(', ')}` : ''}.`
  }
  return [...stories].map(([story, tables]) => `${tables.join(', ')}: ${story}.`).join(' ')
}
