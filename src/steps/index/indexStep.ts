import { freemem } from 'node:os'
import { resolve } from 'node:path'
import { serverIsLocal } from '../../db/catalog/readSettings.ts'
import { readExtension } from '../../db/catalog/readExtension.ts'
import { type Partition, readPartitions } from '../../db/catalog/readPartitions.ts'
import { isListedInPgIndexes, readIndexScans, readVectorIndexes } from '../../db/catalog/readVectorIndexes.ts'
import type { VectorIndex } from '../../db/catalog/vocabulary.ts'
import type { Database } from '../../db/database.ts'
import { explainNearest } from '../../db/explainNearest.ts'
import { fitIdentifier, quoteIdent, quoteQualified } from '../../db/quote.ts'
import type { SearchExpression } from '../../db/searchExpression.ts'
import type { Target } from '../../db/target.ts'
import { MAX_INDEXABLE_DIMENSIONS } from '../../db/vectorOps.ts'
import { Interrupted, TargetError, WorkError } from '../../errors.ts'
import type { Step, StepContext } from '../step.ts'
import { withLockTimeout } from '../../db/withLockTimeout.ts'
import { lockPolicy } from '../../plan/schema.ts'
import { buildIndex } from './buildIndex.ts'
import { chooseIndexAction, type IndexDecision, servesQuery } from './chooseIndexAction.ts'
import { type BuiltIndex, type IndexOutput, indexOutputSchema } from './output.ts'
import { renderIndexes } from './renderIndexes.ts'
import { chooseParallelWorkers } from './chooseParallelWorkers.ts'
import { type BuildMemory, estimateGraphMb, recommendBuildMemory, sizeBuildMemory, BYTES_PER_DIMENSION } from './sizeBuildMemory.ts'
import { agreeWithAlembic, alembicUpgrade } from '../../appSource/alembic.ts'
import {
  alembicRevision,
  alembicRevisionId,
  type IndexMigration,
  type IndexSql,
  migrationSql,
  writeRevisionOnce,
} from './writeMigrations.ts'

// Batch 2 of the seed: an HNSW index on every target column whose operator class matches the
// distance the application queries with, built without blocking writes, sized so the graph
// fits in memory, written as a migration the application keeps, and proved by EXPLAIN.

/** PGlite is 32-bit WebAssembly: its whole heap is a few GB at most. */
const EMBEDDED_MAX_BUILD_MB = 512

interface Planned {
  target: Target
  search: SearchExpression
  decision: IndexDecision
  /** What the batch runs for this column, in order; the migration holds the same. */
  migration: IndexMigration
  memory: BuildMemory
  /** How to make the graph fit, when it does not. */
  memoryAdvice: string | undefined
  /** A partitioned table: the index of each leaf partition, attached to the one on the parent. */
  partitions: { table: string; index: string; reused: boolean }[]
}

interface Built {
  seconds: number
  parallelWorkers: number
  /** Why the build ran without parallel workers, when the runner chose that. */
  parallelNote: string | null
}

type IndexSuffix = '' | '_half' | '_binary'

function indexName(table: string, column: string, suffix: IndexSuffix): string {
  return fitIdentifier(`${table}_${column}_hnsw${suffix}`)
}

/**
 * The name itself when no relation in the schema has it (or it is `ours`: the runner's own
 * index or leftover), otherwise the first free of name_2, name_3...: a name is never assumed
 * to be the runner's because it is the one the runner would choose (CREATE INDEX IF NOT
 * EXISTS would then do nothing, and the down migration would drop the application's index).
 */
async function freeIndexName(db: Database, schema: string, name: string, ours: string[]): Promise<string> {
  for (let n = 1; ; n++) {
    const candidate = n === 1 ? name : fitIdentifier(`${name}_${n}`)
    if (ours.includes(candidate)) return candidate
    const { rows } = await db.query<{ taken: boolean }>('SELECT to_regclass($1) IS NOT NULL AS taken', [quoteQualified(schema, candidate)])
    if (!rows[0]!.taken) return candidate
  }
}

async function machineFreeMb(db: Database): Promise<number | undefined> {
  if (db.kind === 'embedded') return undefined
  // Only a server on this very machine shares our memory figures; elsewhere the plan's cap rules.
  return (await serverIsLocal(db)) ? freemem() / (1024 * 1024) : undefined
}

/** The statement that creates an index again as the catalog defines it, without blocking writes where it can. */
function recreate(index: VectorIndex, concurrently: boolean): string {
  // pg_get_indexdef gives "CREATE INDEX name ON ONLY parent ..." for a partitioned index: created
  // on the whole tree instead (it blocks writes while it builds; it is the down migration's path back).
  const definition = index.definition.replace(/ ON ONLY /, ' ON ')
  return concurrently && !/ ON ONLY /.test(index.definition)
    ? definition.replace(/^CREATE (UNIQUE )?INDEX /, 'CREATE $1INDEX CONCURRENTLY IF NOT EXISTS ')
    : definition.replace(/^CREATE (UNIQUE )?INDEX /, 'CREATE $1INDEX IF NOT EXISTS ')
}

/**
 * untyped_column: set_type. Typing the column rewrites the table under ACCESS EXCLUSIVE: the
 * application's reads and writes of it wait for the whole rewrite. So its cost is measured and
 * said first (a cast of every row, under the ACCESS SHARE a read takes), and the ALTER waits for
 * its lock at most lock_timeout like every statement that locks an application table.
 */
async function planTyping(ctx: StepContext, target: Target): Promise<{ up: IndexSql; down: string } | null> {
  const vector = target.vector
  if (!vector?.untyped || target.plan.untyped_column !== 'set_type') return null
  const column = `${target.name}.${target.plan.embedding_column}`
  // (a column holding other lengths was refused by the preflight)
  const started = performance.now()
  const { rows } = await ctx.db.query<{ n: number }>(
    `SELECT count(${target.embedding}::${vector.type}(${vector.dimensions}))::int AS n FROM ${target.table}`,
  )
  const seconds = (performance.now() - started) / 1000
  ctx.log(
    `  ${column}: ALTER COLUMN ... TYPE ${vector.type}(${vector.dimensions}) (untyped_column: set_type) rewrites the table under ACCESS EXCLUSIVE: the application's reads and writes of it wait until it ends. A cast of its ${rows[0]!.n.toLocaleString('en-US')} vectors took ${seconds.toFixed(2)} s here; the rewrite takes longer, with every index of the table built again`,
  )
  return {
    up: { sql: `ALTER TABLE ${target.table} ALTER COLUMN ${target.embedding} TYPE ${vector.type}(${vector.dimensions})` },
    down: `ALTER TABLE ${target.table} ALTER COLUMN ${target.embedding} TYPE ${vector.type}`,
  }
}

async function planIndex(ctx: StepContext, untypedTarget: Target, freeMb: number | undefined): Promise<Planned> {
  const { plan, db } = ctx
  const typing = await planTyping(ctx, untypedTarget)
  // Once typed, the index is on the column itself, and the application's queries need no cast.
  const target = typing ? untypedTarget.asTyped() : untypedTarget
  const where = `${target.name}.${target.plan.embedding_column}`
  const vector = target.requireVector()
  const search = target.search(plan.index.precision, plan.index.rerank_factor)
  const indexedType = search.castType.startsWith('halfvec') ? 'halfvec' : search.castType.startsWith('bit') ? 'bit' : 'vector'
  if (vector.dimensions > MAX_INDEXABLE_DIMENSIONS[indexedType]) {
    throw new TargetError(
      `${where} has ${vector.dimensions} dimensions; HNSW on ${indexedType} takes at most ${MAX_INDEXABLE_DIMENSIONS[indexedType]}${indexedType === 'vector' ? ' (set index.precision: half in the plan)' : ''}`,
    )
  }
  const half = indexedType === 'halfvec' && vector.type === 'vector'
  const suffix: IndexSuffix = indexedType === 'bit' ? '_binary' : half ? '_half' : ''
  const preferred = indexName(target.plan.table, target.plan.embedding_column, suffix)
  const column = (schema: string, table: string) => ({ schema, table, column: target.plan.embedding_column })
  const { partitioned, partitions } = await readPartitions(db, target.table)
  const existing = await readVectorIndexes(db, [], column(target.plan.schema, target.plan.table))
  const wanted = { opclass: search.opclass, expression: search.expression }
  // The runner's own leftover (invalid, its definition) keeps the name; anything else under it moves the runner to another.
  const leftovers = existing.filter((i) => !i.valid && servesQuery(i, wanted)).map((i) => i.name)
  const name = await freeIndexName(db, target.plan.schema, preferred, leftovers)
  const decision = chooseIndexAction(existing, { ...wanted, name }, { replaceMismatched: plan.index.replace_mismatched, partitioned })
  const byTable = await target.countsByPartition(db)
  const planMax =
    db.kind === 'embedded'
      ? Math.min(plan.index.max_maintenance_work_mem_mb, EMBEDDED_MAX_BUILD_MB)
      : plan.index.max_maintenance_work_mem_mb
  // Each table's graph is built on its own: a partitioned table's largest partition sizes the memory.
  // Before the backfill few rows are embedded; a copy of this database that is filled (the migration's) needs the memory for all.
  const largest = Math.max(1, ...byTable.map((t) => t.rows - t.nulls || t.rows))
  const width = BYTES_PER_DIMENSION[indexedType]
  const memory = sizeBuildMemory(estimateGraphMb(largest, vector.dimensions, width, plan.index.m), planMax, freeMb)
  const memoryAdvice = recommendBuildMemory(memory, width === 4 ? estimateGraphMb(largest, vector.dimensions, 2, plan.index.m) : null)
  const using = `USING hnsw (${search.expression} ${search.opclass}) WITH (m = ${plan.index.m}, ef_construction = ${plan.index.ef_construction})${search.where ? ` WHERE ${search.where}` : ''}`
  const concurrently = db.kind === 'postgres'
  const drop = (i: VectorIndex) =>
    // DROP INDEX CONCURRENTLY does not take a partitioned index; dropping one drops its partitions' indexes with it.
    `DROP INDEX${concurrently && !/ ON ONLY /.test(i.definition) ? ' CONCURRENTLY' : ''} IF EXISTS ${quoteQualified(i.schema, i.name)}`
  const build = (table: string, index: string): IndexSql['build'] => ({ table, maintenanceWorkMemMb: memory.chosenMb, index })
  const up: IndexSql[] = [...(typing ? [typing.up] : []), ...decision.dropBefore.map((i) => ({ sql: drop(i) }))]
  const leaves: Planned['partitions'] = []
  if (decision.action !== 'kept') {
    if (!partitioned) {
      up.push({
        sql: `CREATE INDEX${concurrently ? ' CONCURRENTLY' : ''} IF NOT EXISTS ${quoteIdent(decision.name)} ON ${target.table} ${using}`,
        build: build(target.table, quoteQualified(target.plan.schema, decision.name)),
      })
    } else {
      const planned = await partitionedStatements(db, target, partitions, {
        name: decision.name,
        suffix,
        using,
        search,
        concurrently,
        build,
        drop,
      })
      up.push(...planned.up)
      leaves.push(...planned.leaves)
    }
  }
  up.push(...decision.dropAfter.map((i) => ({ sql: drop(i) })))
  const down = [
    ...(typing ? [typing.down] : []),
    ...decision.dropAfter.map((i) => recreate(i, concurrently)).reverse(),
    ...(decision.action === 'kept'
      ? []
      : [
          `DROP INDEX${concurrently && !partitioned ? ' CONCURRENTLY' : ''} IF EXISTS ${quoteQualified(target.plan.schema, decision.name)}`,
        ]),
  ]
  return { target, search, decision, migration: { up, down }, memory, memoryAdvice, partitions: leaves }
}

/**
 * CREATE INDEX CONCURRENTLY is refused on a partitioned table. Instead: the parent's index ON
 * ONLY (invalid, empty), each leaf's built concurrently (no partition is locked for writes while
 * its graph builds), then each attached, deepest first; the parent's turns valid with the last.
 * A leaf index of the runner's own from an earlier run is attached as it is; anyone else's is
 * left alone (attached, a later DROP of the parent's index would take it along).
 */
async function partitionedStatements(
  db: Database,
  target: Target,
  partitions: Partition[],
  index: {
    name: string
    suffix: IndexSuffix
    using: string
    search: SearchExpression
    concurrently: boolean
    build: (table: string, index: string) => IndexSql['build']
    drop: (i: VectorIndex) => string
  },
): Promise<{ up: IndexSql[]; leaves: Planned['partitions'] }> {
  const up: IndexSql[] = [{ sql: `CREATE INDEX IF NOT EXISTS ${quoteIdent(index.name)} ON ONLY ${target.table} ${index.using}` }]
  const leaves: Planned['partitions'] = []
  const indexOf = new Map([[target.table, quoteQualified(target.plan.schema, index.name)]])
  const attaches: string[] = []
  for (const p of partitions) {
    const onPartition = await readVectorIndexes(db, [], { schema: p.schema, table: p.table, column: target.plan.embedding_column })
    const preferred = indexName(p.table, target.plan.embedding_column, index.suffix)
    const ours = onPartition.filter((i) => servesQuery(i, index.search)).map((i) => i.name)
    const own = await freeIndexName(db, p.schema, preferred, ours)
    const earlier = p.leaf ? onPartition.find((i) => i.name === own && i.valid && servesQuery(i, index.search)) : undefined
    indexOf.set(p.relation, quoteQualified(p.schema, own))
    if (!earlier) {
      const leftover = p.leaf ? onPartition.find((i) => i.name === own && !i.valid && servesQuery(i, index.search)) : undefined
      if (leftover) up.push({ sql: index.drop(leftover) })
      up.push(
        p.leaf
          ? {
              sql: `CREATE INDEX${index.concurrently ? ' CONCURRENTLY' : ''} IF NOT EXISTS ${quoteIdent(own)} ON ${p.relation} ${index.using}`,
              build: index.build(p.relation, quoteQualified(p.schema, own)),
            }
          : { sql: `CREATE INDEX IF NOT EXISTS ${quoteIdent(own)} ON ONLY ${p.relation} ${index.using}` },
      )
    }
    if (p.leaf) leaves.push({ table: `${p.schema}.${p.table}`, index: own, reused: Boolean(earlier) })
    attaches.unshift(`ALTER INDEX ${indexOf.get(p.parent)} ATTACH PARTITION ${indexOf.get(p.relation)}`)
  }
  up.push(...attaches.map((sql) => ({ sql })))
  return { up, leaves }
}

/** SQL up/down and the Alembic revision: the application keeps them whether the runner or Alembic applies them. */
function writeMigrationFiles(ctx: StepContext, planned: Planned[]): IndexOutput['migrations'] {
  const { plan, log } = ctx
  const migration: IndexMigration = {
    up: planned.flatMap((p) => p.migration.up),
    down: planned.flatMap((p) => p.migration.down).reverse(),
  }
  const { up, down } = migrationSql(migration)
  const upPath = ctx.writeArtifact('migration.up.sql', up)
  const downPath = ctx.writeArtifact('migration.down.sql', down)
  let revisionPath: string | null = null
  if (plan.target.alembic && migration.up.length > 0) {
    revisionPath = writeRevisionOnce(
      resolve(plan.target.alembic.versions_dir),
      alembicRevisionId(migration),
      'runner_hnsw_indexes',
      (ids) => alembicRevision(migration, ids.revision, ids.downRevision, ids.createdAt),
      log,
    )
  }
  return {
    up_sql: upPath,
    down_sql: downPath,
    alembic_revision: revisionPath,
    applied_with: plan.target.alembic?.apply ? 'alembic' : 'runner',
  }
}

/** Runs each column's statements in order (the migration's up, exactly); a CREATE INDEX through buildIndex, with its memory and progress. */
async function runPlanned(ctx: StepContext, planned: Planned[]): Promise<Map<string, Built>> {
  const { db, plan, log } = ctx
  const built = new Map<string, Built>()
  const parallel = chooseParallelWorkers((await readExtension(db)).installed_version, plan.index.parallel_workers)
  if (parallel.note && planned.some((p) => p.migration.up.some((s) => s.build))) log(`  ${parallel.note}`)
  for (const p of planned) {
    if (p.migration.up.length === 0) continue
    log(
      `  ${p.target.name}.${p.target.plan.embedding_column}: ${p.decision.reason}; maintenance_work_mem ${p.memory.chosenMb} MB for an estimated ${p.memory.estimatedMb} MB graph${p.memory.cappedBy ? `, capped by ${p.memory.cappedBy}` : ''}`,
    )
    if (p.memoryAdvice) log(`  ${p.memoryAdvice}`)
    if (p.search.where)
      log(
        `  ${p.target.name}.${p.target.plan.embedding_column} has no dimensions of its own: the index is on ${p.search.expression}, partial to ${p.search.where}; the application's query must order by ${p.search.expression} ${p.search.operator} ${p.search.query} and hold ${p.search.where}`,
      )
    let seconds = 0
    let parallelWorkers = 0
    for (const statement of p.migration.up) {
      if (ctx.signal.aborted) throw new Interrupted()
      if (!statement.build) {
        // CONCURRENTLY takes no lock the application waits for (and refuses a transaction block);
        // the others (an index ON ONLY the parent, an ATTACH, a DROP of a partitioned index) lock
        // the table the application reads: each waits at most lock_timeout, retried.
        if (/ CONCURRENTLY /.test(statement.sql)) await db.exec(statement.sql)
        else await withLockTimeout(db, p.target.table, p.target.name, (tx) => tx.exec(statement.sql), lockPolicy(plan), log)
        continue
      }
      const result = await buildIndex(
        db,
        statement.build.table,
        statement.sql,
        {
          maintenanceWorkMemMb: statement.build.maintenanceWorkMemMb,
          parallelWorkers: parallel.workers,
          waitSeconds: plan.index.wait_for_transactions_seconds,
          lockTimeoutMs: plan.target.lock_timeout_ms,
        },
        ctx.progress,
        statement.build.index,
      )
      log(`  built the index on ${statement.build.table} in ${result.seconds.toFixed(1)} s`)
      seconds += result.seconds
      parallelWorkers = result.parallelWorkers
    }
    built.set(p.decision.name, { seconds, parallelWorkers, parallelNote: parallel.note })
  }
  return built
}

/** Reads back each index as the catalog has it, and EXPLAINs the application's query against it. */
async function verifyIndex(ctx: StepContext, p: Planned, built: Built | undefined, explains: string[]): Promise<BuiltIndex> {
  const { db } = ctx
  const name = p.decision.name
  const column = (schema: string, table: string) => ({ schema, table, column: p.target.plan.embedding_column })
  const found = (await readVectorIndexes(db, [], column(p.target.plan.schema, p.target.plan.table))).find((i) => i.name === name)
  if (!found) throw new WorkError(`index ${name} on ${p.target.name} does not exist after the build`)
  // Counted only as the catalog defines it: the name alone proves nothing.
  if (!servesQuery(found, p.search))
    throw new WorkError(`index ${name} on ${p.target.name} is not the one the runner built: ${found.definition}`)
  const { rows, nulls } = await p.target.counts(db)
  const natural = await explainNearest(db, p.target, p.search)
  const forced = natural.scan === 'index' ? natural : await explainNearest(db, p.target, p.search, { forceIndex: true })
  explains.push(`-- ${natural.table}.${natural.column} (planner's own choice)\n${natural.sql}\n\n${natural.plan}\n`)
  if (forced !== natural)
    explains.push(`-- ${forced.table}.${forced.column} (sequential scans disabled: can the index serve it?)\n${forced.plan}\n`)
  const before = ctx.inputs.diagnose?.query_plans.find((q) => q.table === natural.table && q.column === natural.column)
  const partitions = []
  for (const leaf of p.partitions) {
    const [schema, table] = [leaf.table.slice(0, leaf.table.indexOf('.')), leaf.table.slice(leaf.table.indexOf('.') + 1)]
    const index = (await readVectorIndexes(db, [], column(schema, table))).find((i) => i.name === leaf.index)
    partitions.push({ ...leaf, valid: Boolean(index?.valid), size_bytes: index?.size_bytes ?? 0 })
  }
  const beside = []
  for (const i of p.decision.beside)
    beside.push({
      name: i.name,
      method: i.method,
      opclass: i.opclass,
      valid: i.valid,
      size_bytes: i.size_bytes,
      scans: await readIndexScans(db, i.schema, i.name),
    })
  return {
    table: p.target.name,
    column: p.target.plan.embedding_column,
    name,
    action: p.decision.action,
    reason: p.decision.reason,
    definition: found.definition,
    search: {
      expression: p.search.expression,
      cast_type: p.search.castType,
      operator: p.search.operator,
      opclass: p.search.opclass,
      query: p.search.query,
      ...(p.search.rerank
        ? { rerank: { operator: p.search.rerank.operator, cast_type: p.search.rerank.castType, factor: p.search.rerank.factor } }
        : {}),
      ...(p.search.where ? { where: p.search.where } : {}),
    },
    concurrently: db.kind === 'postgres',
    maintenance_work_mem_mb: built ? p.memory.chosenMb : null,
    estimated_graph_mb: p.memory.estimatedMb,
    memory_capped_by: p.memory.cappedBy ?? null,
    parallel_workers: built?.parallelWorkers ?? null,
    parallel_note: built?.parallelNote ?? null,
    memory_advice: p.memoryAdvice ?? null,
    build_seconds: built?.seconds ?? null,
    size_bytes: found.size_bytes,
    rows_indexed: rows - nulls,
    valid: found.valid,
    listed_in_pg_indexes: await isListedInPgIndexes(db, p.target.plan.schema, name),
    explain_scan: natural.scan,
    explain_index: forced.index_name,
    query_ms_before: before?.execution_ms ?? null,
    query_ms_after: natural.execution_ms,
    partitions,
    left_beside: beside,
  }
}

export const indexStep: Step<IndexOutput> = {
  name: 'index',
  output: indexOutputSchema,

  async run(ctx) {
    const freeMb = await machineFreeMb(ctx.db)
    const planned: Planned[] = []
    for (const target of ctx.targets) planned.push(await planIndex(ctx, target, freeMb))
    const migrations = writeMigrationFiles(ctx, planned)
    const built = ctx.plan.target.alembic?.apply ? new Map<string, Built>() : await runPlanned(ctx, planned)
    if (ctx.plan.target.alembic?.apply && migrations.alembic_revision)
      await alembicUpgrade(ctx.plan.target.alembic, ctx.log, migrations.alembic_revision)
    const explains: string[] = []
    const indexes: BuiltIndex[] = []
    for (const p of planned) indexes.push(await verifyIndex(ctx, p, built.get(p.decision.name), explains))
    ctx.writeArtifact('explain.txt', explains.join('\n'))
    const alembic = ctx.plan.target.alembic ? await agreeWithAlembic(ctx.plan, indexes, ctx.log) : undefined
    return { indexes, migrations, alembic }
  },

  async preview(ctx) {
    const freeMb = await machineFreeMb(ctx.db)
    const lines: string[] = []
    for (const target of ctx.targets) {
      const p = await planIndex(ctx, target, freeMb)
      lines.push(`${target.name}.${target.plan.embedding_column}: ${p.decision.action} (${p.decision.reason})`)
      for (const s of p.migration.up)
        lines.push(`  ${s.build ? `SET maintenance_work_mem = '${s.build.maintenanceWorkMemMb}MB'; ` : ''}${s.sql}`)
    }
    return lines
  },

  summarize(output) {
    const count = (action: string) => output.indexes.filter((i) => i.action === action).length
    const parts = (['created', 'rebuilt', 'replaced', 'completed', 'kept', 'mismatch_reported'] as const)
      .filter((a) => count(a) > 0)
      .map((a) => `${count(a)} ${a.replace('_', ' ')}`)
    const usable = output.indexes.filter((i) => i.valid && i.explain_index === i.name).length
    const beside = output.indexes.flatMap((i) => i.left_beside)
    const check = output.alembic?.check
    const alembic =
      check && !check.unavailable ? `; the application's alembic check ${check.passed ? 'passed' : 'FAILED (see the report)'}` : ''
    return `${parts.join(', ')}; ${usable} of ${output.indexes.length} valid and usable by the application's query${beside.length ? `; ${beside.length} unusable index(es) left beside (see the report)` : ''}${alembic}`
  },

  details: renderIndexes,
}
