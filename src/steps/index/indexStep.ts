import { mkdirSync, writeFileSync } from 'node:fs'
import { freemem } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { execa } from 'execa'
import { serverIsLocal } from '../../db/catalog/readSettings.ts'
import { isListedInPgIndexes, readVectorIndexes } from '../../db/catalog/readVectorIndexes.ts'
import type { Database } from '../../db/database.ts'
import { explainNearest } from '../../db/explainNearest.ts'
import { fitIdentifier, quoteIdent, quoteQualified } from '../../db/quote.ts'
import type { SearchExpression } from '../../db/searchExpression.ts'
import type { Target } from '../../db/target.ts'
import { MAX_INDEXABLE_DIMENSIONS } from '../../db/vectorOps.ts'
import { Interrupted, TargetError, WorkError } from '../../errors.ts'
import type { Step, StepContext } from '../step.ts'
import { buildIndex } from './buildIndex.ts'
import { chooseIndexAction, type IndexDecision } from './chooseIndexAction.ts'
import { type BuiltIndex, type IndexOutput, indexOutputSchema } from './output.ts'
import { renderIndexes } from './renderIndexes.ts'
import { type BuildMemory, estimateGraphMb, sizeBuildMemory } from './sizeBuildMemory.ts'
import { alembicHead, alembicRevision, alembicRevisionId, findRevisionFile, type IndexStatement, migrationSql } from './writeMigrations.ts'

// Batch 2 of the seed: an HNSW index on every target column whose operator class matches the
// distance the application queries with, built without blocking writes, sized so the graph
// fits in memory, written as a migration the application keeps, and proved by EXPLAIN.

/** PGlite is 32-bit WebAssembly: its whole heap is a few GB at most. */
const EMBEDDED_MAX_BUILD_MB = 512

interface Planned {
  target: Target
  search: SearchExpression
  name: string
  decision: IndexDecision
  statement: IndexStatement
  memory: BuildMemory
}

interface Built {
  seconds: number
  parallelWorkers: number
}

function indexName(table: string, column: string, half: boolean): string {
  return fitIdentifier(`${table}_${column}_hnsw${half ? '_half' : ''}`)
}

async function machineFreeMb(db: Database): Promise<number | undefined> {
  if (db.kind === 'embedded') return undefined
  // Only a server on this very machine shares our memory figures; elsewhere the plan's cap rules.
  return (await serverIsLocal(db)) ? freemem() / (1024 * 1024) : undefined
}

async function planIndex(ctx: StepContext, target: Target, freeMb: number | undefined): Promise<Planned> {
  const { plan, db } = ctx
  const where = `${target.name}.${target.plan.embedding_column}`
  const vector = target.requireVector()
  const search = target.search(plan.index.precision)
  const indexedType = search.castType.startsWith('halfvec') ? 'halfvec' : 'vector'
  if (vector.dimensions > MAX_INDEXABLE_DIMENSIONS[indexedType]) {
    throw new TargetError(
      `${where} has ${vector.dimensions} dimensions; HNSW on ${indexedType} takes at most ${MAX_INDEXABLE_DIMENSIONS[indexedType]}${indexedType === 'vector' ? ' (set index.precision: half in the plan)' : ''}`,
    )
  }
  const name = indexName(target.plan.table, target.plan.embedding_column, indexedType === 'halfvec' && vector.type === 'vector')
  const column = { schema: target.plan.schema, table: target.plan.table, column: target.plan.embedding_column }
  const existing = await readVectorIndexes(db, [], column)
  const decision = chooseIndexAction(
    existing,
    { opclass: search.opclass, expression: search.expression, name },
    plan.index.replace_mismatched,
  )
  const { rows, nulls } = await target.counts(db)
  const estimated = estimateGraphMb(rows - nulls || rows, vector.dimensions, indexedType === 'halfvec' ? 2 : 4, plan.index.m)
  const planMax =
    db.kind === 'embedded'
      ? Math.min(plan.index.max_maintenance_work_mem_mb, EMBEDDED_MAX_BUILD_MB)
      : plan.index.max_maintenance_work_mem_mb
  const memory = sizeBuildMemory(estimated, planMax, freeMb)
  const concurrently = db.kind === 'postgres' ? ' CONCURRENTLY' : ''
  const statement: IndexStatement = {
    name,
    create: `CREATE INDEX${concurrently} IF NOT EXISTS ${quoteIdent(name)} ON ${target.table} USING hnsw (${search.expression} ${search.opclass}) WITH (m = ${plan.index.m}, ef_construction = ${plan.index.ef_construction})`,
    drop: `DROP INDEX${concurrently} IF EXISTS ${quoteQualified(target.plan.schema, name)}`,
    maintenanceWorkMemMb: memory.chosenMb,
  }
  return { target, search, name, decision, statement, memory }
}

const needsBuild = (p: Planned) => p.decision.action === 'created' || p.decision.action === 'rebuilt' || p.decision.action === 'replaced'

async function dropIndexes(db: Database, names: { schema: string; name: string }[]) {
  const concurrently = db.kind === 'postgres' ? ' CONCURRENTLY' : ''
  for (const index of names) await db.exec(`DROP INDEX${concurrently} IF EXISTS ${quoteQualified(index.schema, index.name)}`)
}

/** SQL up/down and the Alembic revision: the application keeps them whether the runner or Alembic applies them. */
function writeMigrationFiles(ctx: StepContext, statements: IndexStatement[]): IndexOutput['migrations'] {
  const { plan, log } = ctx
  const { up, down } = migrationSql(statements)
  const upPath = ctx.writeArtifact('migration.up.sql', up)
  const downPath = ctx.writeArtifact('migration.down.sql', down)
  let revisionPath: string | null = null
  if (plan.target.alembic && statements.length > 0) {
    const versionsDir = resolve(plan.target.alembic.versions_dir)
    const revision = alembicRevisionId(statements)
    const existingFile = findRevisionFile(versionsDir, revision)
    revisionPath = join(versionsDir, existingFile ?? `${revision}_runner_hnsw_indexes.py`)
    if (!existingFile) {
      mkdirSync(versionsDir, { recursive: true })
      writeFileSync(revisionPath, alembicRevision(statements, revision, alembicHead(versionsDir), new Date().toISOString()))
      log(`  wrote Alembic revision ${revisionPath}`)
    }
  }
  return {
    up_sql: upPath,
    down_sql: downPath,
    alembic_revision: revisionPath,
    applied_with: plan.target.alembic?.apply ? 'alembic' : 'runner',
  }
}

async function runAlembic(ctx: StepContext, revisionFile: string): Promise<void> {
  const alembic = ctx.plan.target.alembic!
  const ini = resolve(alembic.ini)
  ctx.log(`  applying ${revisionFile} with \`${alembic.command} upgrade head\``)
  const result = await execa(alembic.command, ['-c', ini, 'upgrade', 'head'], { cwd: dirname(ini), reject: false, all: true })
  if (result.exitCode !== 0) {
    throw new WorkError(
      `\`${alembic.command} upgrade head\` failed (exit ${result.exitCode}): ${(result.all ?? '').trim().split('\n').slice(-5).join(' | ')}`,
    )
  }
}

/** Builds what the decisions call for, one index at a time; an invalid leftover is dropped first, a replaced index after. */
async function buildPlanned(ctx: StepContext, toBuild: Planned[]): Promise<Map<string, Built>> {
  const { db, plan, log } = ctx
  const built = new Map<string, Built>()
  for (const p of toBuild) {
    if (ctx.signal.aborted) throw new Interrupted()
    const decision = p.decision as Extract<IndexDecision, { drop: unknown }>
    // An invalid leftover must go first: CREATE INDEX IF NOT EXISTS would otherwise keep it.
    if (decision.action === 'rebuilt') await dropIndexes(db, decision.drop)
    if (plan.target.alembic?.apply) continue
    log(
      `  building ${p.name} on ${p.target.name} (${decision.reason}; maintenance_work_mem ${p.memory.chosenMb} MB for an estimated ${p.memory.estimatedMb} MB graph${p.memory.cappedBy ? `, capped by ${p.memory.cappedBy}` : ''})`,
    )
    const result = await buildIndex(
      db,
      p.target.table,
      p.statement.create,
      { maintenanceWorkMemMb: p.memory.chosenMb, parallelWorkers: plan.index.parallel_workers },
      ctx.progress,
    )
    built.set(p.name, result)
    if (decision.action === 'replaced') await dropIndexes(db, decision.drop)
    log(`  built ${p.name} in ${result.seconds.toFixed(1)} s`)
  }
  return built
}

/** Reads back each index as the catalog has it, and EXPLAINs the application's query against it. */
async function verifyIndex(ctx: StepContext, p: Planned, built: Built | undefined, explains: string[]): Promise<BuiltIndex> {
  const { db } = ctx
  const nameNow = p.decision.action === 'kept' || p.decision.action === 'mismatch_reported' ? p.decision.existing.name : p.name
  const column = { schema: p.target.plan.schema, table: p.target.plan.table, column: p.target.plan.embedding_column }
  const found = (await readVectorIndexes(db, [], column)).find((i) => i.name === nameNow)
  if (!found) throw new WorkError(`index ${nameNow} on ${p.target.name} does not exist after the build`)
  const { rows, nulls } = await p.target.counts(db)
  const natural = await explainNearest(db, p.target, p.search)
  const forced = natural.scan === 'index' ? natural : await explainNearest(db, p.target, p.search, { forceIndex: true })
  explains.push(`-- ${natural.table}.${natural.column} (planner's own choice)\n${natural.sql}\n\n${natural.plan}\n`)
  if (forced !== natural)
    explains.push(`-- ${forced.table}.${forced.column} (sequential scans disabled: can the index serve it?)\n${forced.plan}\n`)
  const before = ctx.inputs.diagnose?.query_plans.find((q) => q.table === natural.table && q.column === natural.column)
  return {
    table: p.target.name,
    column: p.target.plan.embedding_column,
    name: nameNow,
    action: p.decision.action,
    reason: p.decision.reason,
    definition: found.definition,
    search: { expression: p.search.expression, cast_type: p.search.castType, operator: p.search.operator, opclass: p.search.opclass },
    concurrently: db.kind === 'postgres',
    maintenance_work_mem_mb: built ? p.memory.chosenMb : null,
    estimated_graph_mb: p.memory.estimatedMb,
    memory_capped_by: p.memory.cappedBy ?? null,
    parallel_workers: built?.parallelWorkers ?? null,
    build_seconds: built?.seconds ?? null,
    size_bytes: found.size_bytes,
    rows_indexed: rows - nulls,
    valid: found.valid,
    listed_in_pg_indexes: await isListedInPgIndexes(db, p.target.plan.schema, nameNow),
    explain_scan: natural.scan,
    explain_index: forced.index_name,
    query_ms_before: before?.execution_ms ?? null,
    query_ms_after: natural.execution_ms,
  }
}

export const indexStep: Step<IndexOutput> = {
  name: 'index',
  output: indexOutputSchema,

  async run(ctx) {
    const freeMb = await machineFreeMb(ctx.db)
    const planned: Planned[] = []
    for (const target of ctx.targets) planned.push(await planIndex(ctx, target, freeMb))
    const toBuild = planned.filter(needsBuild)
    const migrations = writeMigrationFiles(
      ctx,
      toBuild.map((p) => p.statement),
    )
    const built = await buildPlanned(ctx, toBuild)
    if (ctx.plan.target.alembic?.apply && migrations.alembic_revision) await runAlembic(ctx, migrations.alembic_revision)
    const explains: string[] = []
    const indexes: BuiltIndex[] = []
    for (const p of planned) indexes.push(await verifyIndex(ctx, p, built.get(p.name), explains))
    ctx.writeArtifact('explain.txt', explains.join('\n'))
    return { indexes, migrations }
  },

  async preview(ctx) {
    const freeMb = await machineFreeMb(ctx.db)
    const lines: string[] = []
    for (const target of ctx.targets) {
      const p = await planIndex(ctx, target, freeMb)
      lines.push(`${target.name}.${target.plan.embedding_column}: ${p.decision.action} (${p.decision.reason})`)
      if (needsBuild(p)) lines.push(`  SET maintenance_work_mem = '${p.memory.chosenMb}MB'; ${p.statement.create}`)
    }
    return lines
  },

  summarize(output) {
    const count = (action: string) => output.indexes.filter((i) => i.action === action).length
    const parts = (['created', 'rebuilt', 'replaced', 'kept', 'mismatch_reported'] as const)
      .filter((a) => count(a) > 0)
      .map((a) => `${count(a)} ${a.replace('_', ' ')}`)
    const usable = output.indexes.filter((i) => i.valid && i.explain_index === i.name).length
    return `${parts.join(', ')}; ${usable} of ${output.indexes.length} valid and usable by the application's query`
  },

  details: renderIndexes,
}
