import { BYTES_PER_DIMENSION, estimateGraphMb } from '../index/sizeBuildMemory.ts'
import { adviseMemory, readMemorySettings } from '../validate/measureMemory.ts'
import { resolve } from 'node:path'
import { readExtension, readServerVersion } from '../../db/catalog/readExtension.ts'
import { readPartitions } from '../../db/catalog/readPartitions.ts'
import { canSuppressTriggers, readPrivileges } from '../../db/catalog/readPrivileges.ts'
import { firesOnEmbeddingWrite, readTriggerDetails, type TriggerDetail } from '../../db/catalog/readTriggers.ts'
import { readVectorColumns } from '../../db/catalog/readVectorColumns.ts'
import { readVectorIndexes } from '../../db/catalog/readVectorIndexes.ts'
import type { Trigger } from '../../db/catalog/vocabulary.ts'
import type { Queryable } from '../../db/database.ts'
import { explainQuery } from '../../db/catalog/explainQuery.ts'
import { explainNearest, syntheticQueryVector } from '../../db/explainNearest.ts'
import { type ColumnModel, readColumnModels } from '../../db/runnerSchema/columnModels.ts'
import { readSchemaVersion } from '../../db/runnerSchema/migrateRunnerSchema.ts'
import { CAPTURE_TRIGGER } from '../../db/runnerSchema/objects.ts'
import { countColumn, type Target } from '../../db/target.ts'
import { readQueueHealth } from '../../pipeline/queue.ts'
import { liveWorkers } from '../../pipeline/workerRegistry.ts'
import type { Plan } from '../../plan/schema.ts'
import type { Step } from '../step.ts'
import { readMaterializedViews, readRowSecurity, readWriterRoles } from '../../db/catalog/readApplicationSide.ts'
import { readHiddenRows } from '../../db/catalog/readRowVisibility.ts'
import { databaseErrorCode, errorMessage } from '../../errors.ts'
import { findFindings } from './findFindings.ts'
import { judgeQuery } from './judgeQuery.ts'
import { type DiagnoseOutput, diagnoseOutputSchema, type QueryPlan, type TargetColumn, type VectorColumn } from './output.ts'
import { groupFindings, renderDiagnosis } from './renderDiagnosis.ts'
import { scanSource } from '../../appSource/scanSource.ts'

// Batch 1 of the seed: find out exactly why semantic search is broken, with evidence, and
// change nothing. The plan runs it as a read_only batch, so every statement here executes
// inside one READ ONLY transaction and PostgreSQL itself would refuse a write.

/** Every vector column of the database with its row and NULL counts, marked when the plan targets it. */
async function measureVectorColumns(db: Queryable, plan: Plan): Promise<VectorColumn[]> {
  const columns: VectorColumn[] = []
  for (const c of await readVectorColumns(db)) {
    const { rows, nulls } = await countColumn(db, c.schema, c.table, c.column)
    const targeted = plan.target.tables.some((t) => t.schema === c.schema && t.table === c.table && t.embedding_column === c.column)
    columns.push({ ...c, rows, nulls, targeted })
  }
  return columns
}

/** A trigger writes the embedding column when it is the runner's capture, or its function assigns NEW.<column>. */
function writesColumn(trigger: TriggerDetail, column: string): boolean {
  if (trigger.name === CAPTURE_TRIGGER) return true
  const name = column.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  return new RegExp(`NEW\\s*\\.\\s*("?)${name}\\1\\s*:?=`, 'i').test(trigger.source)
}

/** What the runner's own schema says of the columns: is its metadata there, and which model each column is bound to. */
interface RunnerRecord {
  meta: string | null
  models: ColumnModel[]
}

/** Counts, vector origin, and what writes or would be set off by a write, for one target column. */
async function measureTarget(db: Queryable, plan: Plan, record: RunnerRecord, t: Target, found: VectorColumn | undefined) {
  const counted = await t.counts(db)
  const { rows, nulls } = found ?? counted
  const rowSecurity = await readRowSecurity(db, t.table)
  const { schema, table, embedding_column: column, text_columns, distance } = t.plan
  const key = t.keyColumns.join(', ')
  const model = record.models.find((m) => m.table_name === t.name && m.column_name === column)?.model ?? plan.embedding.model
  const origin = t.vector ? { model, ...(await t.originCounts(db, record.meta, model)) } : null
  const measured: TargetColumn = {
    schema,
    table,
    key,
    column,
    text_columns,
    distance,
    type: t.vector?.type ?? null,
    dimensions: t.vector?.dimensions ?? null,
    rows,
    nulls,
    origin,
    partitions: (await readPartitions(db, t.table)).partitioned ? await t.countsByPartition(db) : [],
    no_text: counted.no_text,
    writer_roles: await readWriterRoles(db, t.table),
    row_security: rowSecurity.enabled
      ? { ...rowSecurity, hidden_from_runner: (await readHiddenRows(db, t.table)).map((h) => h.relation) }
      : null,
    materialized_views: await readMaterializedViews(db, t.table, column),
    stored_dimensions: t.vector?.untyped ? await t.storedDimensions(db, record.meta) : null,
  }
  const triggers = await readTriggerDetails(db, schema, table)
  const writing: Trigger[] = triggers
    .filter((tr) => writesColumn(tr, column))
    .map(({ table, name, definition }) => ({ table, name, definition }))
  const firing = triggers
    .filter((tr) => firesOnEmbeddingWrite(tr, column))
    .map(({ table, name, enabled, function: fn, language, source, definition }) => ({
      table,
      name,
      enabled,
      function: fn,
      language,
      source,
      definition,
    }))
  return { measured, writing, firing }
}

/**
 * The vector indexes the searches will walk: those on the target columns now, and, for a
 * column without a valid HNSW index, about the size of the one the plan would build (the
 * index batch's own estimate of its graph); compared with the server's memory settings.
 */
async function judgeMemory(
  db: Queryable,
  plan: Plan,
  targets: TargetColumn[],
  indexes: DiagnoseOutput['indexes'],
): Promise<DiagnoseOutput['memory']> {
  const onTarget = (t: TargetColumn) => indexes.filter((i) => i.schema === t.schema && i.table === t.table && i.column === t.column)
  const indexesBytes = targets.reduce((sum, t) => sum + onTarget(t).reduce((s, i) => s + i.size_bytes, 0), 0)
  const plannedBytes = targets
    .filter((t) => t.dimensions && !onTarget(t).some((i) => i.valid && i.method === 'hnsw'))
    .reduce((sum, t) => {
      const indexed =
        plan.index.precision === 'binary' ? 'bit' : plan.index.precision === 'half' || t.type === 'halfvec' ? 'halfvec' : 'vector'
      return sum + estimateGraphMb(t.rows, t.dimensions!, BYTES_PER_DIMENSION[indexed], plan.index.m) * 1024 * 1024
    }, 0)
  const settings = await readMemorySettings(db)
  return { settings, indexes_bytes: indexesBytes, planned_bytes: plannedBytes, advice: adviseMemory(settings, indexesBytes + plannedBytes) }
}

export const diagnoseStep: Step<DiagnoseOutput> = {
  name: 'diagnose',
  output: diagnoseOutputSchema,

  async run({ db, plan, targets, runnerSchema, log, writeArtifact }) {
    const vectorColumns = await measureVectorColumns(db, plan)
    const measuredTargets: TargetColumn[] = []
    const writing: Trigger[] = []
    const firing: DiagnoseOutput['side_effects']['triggers'] = []
    const queryPlans: QueryPlan[] = []
    const appQueries: DiagnoseOutput['app_queries'] = []
    const record: RunnerRecord = {
      meta: (await readSchemaVersion(db, runnerSchema)).version > 0 ? runnerSchema.meta : null,
      models: await readColumnModels(db, runnerSchema),
    }
    for (const t of targets) {
      const found = vectorColumns.find((c) => `${c.schema}.${c.table}` === t.name && c.column === t.plan.embedding_column)
      const target = await measureTarget(db, plan, record, t, found)
      measuredTargets.push(target.measured)
      writing.push(...target.writing)
      firing.push(...target.firing)
      if (!t.vector) continue
      const explained = await explainNearest(db, t, t.search('full'))
      queryPlans.push(explained)
      log(
        `  ${explained.table}: nearest-10 query is ${explained.scan === 'index' ? `an index scan (${explained.index_name})` : `a ${explained.scan} scan`}, ${explained.execution_ms.toFixed(1)} ms`,
      )
      for (const q of t.plan.queries) {
        const vector = (await t.someEmbedding(db)) ?? `[${syntheticQueryVector(t.vector.dimensions).join(',')}]`
        const where = { table: t.name, column: t.plan.embedding_column, relation: t.table }
        // A query the database refuses as written (vectors of two lengths in a column without
        // dimensions, say) is a finding about that query, not the end of the diagnosis.
        await db.exec('SAVEPOINT runner_app_query')
        try {
          const shape = await judgeQuery(db, q.sql, [vector, ...q.params], t.plan.distance)
          appQueries.push({ ...(await explainQuery(db, q.sql, [vector, ...q.params], where)), name: q.name, ...shape })
          log(`  ${t.name} ${q.name}: ${shape.verdict}`)
        } catch (error) {
          if (!databaseErrorCode(error)) throw error
          await db.exec('ROLLBACK TO SAVEPOINT runner_app_query')
          const verdict = `it fails on this database as written: ${errorMessage(error)}`
          appQueries.push({
            ...where,
            sql: q.sql,
            plan: `(refused: ${errorMessage(error)})`,
            scan: 'other',
            index_name: null,
            execution_ms: 0,
            name: q.name,
            servable: false,
            filtered: false,
            verdict,
          })
          log(`  ${t.name} ${q.name}: ${verdict}`)
        }
      }
    }
    const measured = {
      database: { kind: db.kind, server_version: await readServerVersion(db) },
      extension: await readExtension(db),
      vector_columns: vectorColumns,
      targets: measuredTargets,
      indexes: await readVectorIndexes(db, vectorColumns),
      writers: {
        triggers: writing,
        queue: await readQueueHealth(db, runnerSchema),
        workers_connected: (await liveWorkers(db, runnerSchema, plan.worker.heartbeat_seconds)).length,
      },
      side_effects: { can_suppress_triggers: await canSuppressTriggers(db), triggers: firing },
      query_plans: queryPlans,
      app_queries: appQueries,
      privileges: await readPrivileges(db, plan.target.runner_schema, plan.target.tables),
      source_references: plan.target.app_source ? scanSource(resolve(plan.target.app_source)) : [],
    }
    writeArtifact(
      'explain.txt',
      [...queryPlans, ...appQueries]
        .map((q) => `-- ${q.table}.${q.column}${'name' in q ? ` (${q.name})` : ''}\n${q.sql}\n\n${q.plan}\n`)
        .join('\n'),
    )
    const memory = db.kind === 'embedded' ? null : await judgeMemory(db, plan, measured.targets, measured.indexes)
    for (const line of memory?.advice ?? []) log(`  memory: ${line}`)
    return { ...measured, ...findFindings(plan, measured), memory }
  },

  async preview({ targets }) {
    return [
      `reads the catalog, counts and EXPLAINs the nearest-10 query of ${targets.map((t) => t.name).join(', ')}, in one READ ONLY transaction`,
    ]
  },

  summarize(output) {
    // Findings are what the diagnosis found wrong in the database, not failures of the batch.
    const problems = groupFindings(output.findings.filter((f) => f.severity === 'error'))
    const found = problems.length
      ? `found ${problems.length} kind(s) of problem to fix: ${problems.map((g) => `${g.code}${g.where.length ? ` (${g.where.length} column${g.where.length === 1 ? '' : 's'})` : ''}`).join(', ')}`
      : 'found nothing to fix'
    return `${found}; ${output.root_cause}`
  },

  details: renderDiagnosis,
}
