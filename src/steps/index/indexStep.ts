import { mkdirSync, writeFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { freemem } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { execa } from 'execa'
import type { Database } from '../../db/database.ts'
import { quoteIdent, quoteQualified } from '../../db/quote.ts'
import { searchExpression, type SearchExpression } from '../../db/searchExpression.ts'
import { MAX_INDEXABLE_DIMENSIONS } from '../../db/vectorOps.ts'
import { Interrupted } from '../../errors.ts'
import { explainNearestNeighbour } from '../diagnose/explainNearestNeighbour.ts'
import { vectorIndexesOn } from '../diagnose/inspectDatabase.ts'
import { diagnoseOutputSchema, type TargetColumn } from '../diagnose/output.ts'
import { requireInput, type Step, type StepContext } from '../step.ts'
import { buildIndex } from './buildIndex.ts'
import { chooseIndexAction, type IndexDecision } from './chooseIndexAction.ts'
import { indexOutputSchema, type BuiltIndex, type IndexOutput } from './output.ts'
import { renderIndexes } from './renderIndexes.ts'
import { estimateGraphMb, sizeBuildMemory, type BuildMemory } from './sizeBuildMemory.ts'
import { alembicHead, alembicRevision, alembicRevisionId, findRevisionFile, migrationSql, type IndexStatement } from './writeMigrations.ts'

// Batch 2 of the seed: an HNSW index on every target column whose operator class matches the
// distance the application queries with, built without blocking writes, sized so the graph
// fits in memory, written as a migration the application keeps, and proved by EXPLAIN.

/** PGlite is 32-bit WebAssembly: its whole heap is a few GB at most. */
const EMBEDDED_MAX_BUILD_MB = 512

interface Planned {
  target: TargetColumn
  search: SearchExpression
  name: string
  decision: IndexDecision
  statement: IndexStatement
  memory: BuildMemory
}

function indexName(table: string, column: string, half: boolean): string {
  const name = `${table}_${column}_hnsw${half ? '_half' : ''}`
  if (Buffer.byteLength(name) <= 63) return name
  return `${name.slice(0, 50)}_${createHash('sha256').update(name).digest('hex').slice(0, 12)}`
}

async function machineFreeMb(db: Database): Promise<number | undefined> {
  if (db.kind === 'embedded') return undefined
  // Only a server on this very machine shares our memory figures; elsewhere the plan's cap rules.
  const { rows } = await db.query<{ addr: string | null }>('SELECT host(inet_server_addr()) AS addr')
  const addr = rows[0]!.addr
  return addr === null || addr === '127.0.0.1' || addr === '::1' ? freemem() / (1024 * 1024) : undefined
}

async function planIndex(ctx: StepContext, target: TargetColumn, freeMb: number | undefined): Promise<Planned> {
  const { plan, db } = ctx
  const where = `${target.schema}.${target.table}.${target.column}`
  if (!target.type || !target.dimensions)
    throw new Error(`${where} is not a vector column with fixed dimensions; it cannot take an HNSW index (see the diagnosis)`)
  const search = searchExpression(target.column, target.dimensions, target.type, target.distance, plan.index.precision)
  const indexedType = search.castType.startsWith('halfvec') ? 'halfvec' : 'vector'
  if (target.dimensions > MAX_INDEXABLE_DIMENSIONS[indexedType]) {
    throw new Error(
      `${where} has ${target.dimensions} dimensions; HNSW on ${indexedType} takes at most ${MAX_INDEXABLE_DIMENSIONS[indexedType]}${indexedType === 'vector' ? ' (set index.precision: half in the plan)' : ''}`,
    )
  }
  const name = indexName(target.table, target.column, indexedType === 'halfvec' && target.type === 'vector')
  const existing = await vectorIndexesOn(db, target)
  const decision = chooseIndexAction(
    existing,
    { opclass: search.opclass, expression: search.expression, name },
    plan.index.replace_mismatched,
  )
  const estimated = estimateGraphMb(
    target.rows - target.nulls || target.rows,
    target.dimensions,
    indexedType === 'halfvec' ? 2 : 4,
    plan.index.m,
  )
  const planMax =
    db.kind === 'embedded'
      ? Math.min(plan.index.max_maintenance_work_mem_mb, EMBEDDED_MAX_BUILD_MB)
      : plan.index.max_maintenance_work_mem_mb
  const memory = sizeBuildMemory(estimated, planMax, freeMb)
  const concurrently = db.kind === 'postgres' ? ' CONCURRENTLY' : ''
  const statement: IndexStatement = {
    name,
    create: `CREATE INDEX${concurrently} IF NOT EXISTS ${quoteIdent(name)} ON ${quoteQualified(target.schema, target.table)} USING hnsw (${search.expression} ${search.opclass}) WITH (m = ${plan.index.m}, ef_construction = ${plan.index.ef_construction})`,
    drop: `DROP INDEX${concurrently} IF EXISTS ${quoteQualified(target.schema, name)}`,
    maintenanceWorkMemMb: memory.chosenMb,
  }
  return { target, search, name, decision, statement, memory }
}

async function dropIndexes(db: Database, names: { schema: string; name: string }[]) {
  const concurrently = db.kind === 'postgres' ? ' CONCURRENTLY' : ''
  for (const index of names) await db.exec(`DROP INDEX${concurrently} IF EXISTS ${quoteQualified(index.schema, index.name)}`)
}

async function runAlembic(ctx: StepContext, revisionFile: string): Promise<void> {
  const alembic = ctx.plan.target.alembic!
  const ini = resolve(alembic.ini)
  ctx.log(`  applying ${revisionFile} with \`${alembic.command} upgrade head\``)
  const result = await execa(alembic.command, ['-c', ini, 'upgrade', 'head'], { cwd: dirname(ini), reject: false, all: true })
  if (result.exitCode !== 0)
    throw new Error(
      `\`${alembic.command} upgrade head\` failed (exit ${result.exitCode}): ${(result.all ?? '').trim().split('\n').slice(-5).join(' | ')}`,
    )
}

export const indexStep: Step<IndexOutput> = {
  name: 'index',
  output: indexOutputSchema,

  async run(ctx) {
    const { db, plan, log, signal } = ctx
    const diagnosis = requireInput(ctx, 'diagnose', diagnoseOutputSchema)
    const freeMb = await machineFreeMb(db)
    const planned: Planned[] = []
    for (const target of diagnosis.targets) planned.push(await planIndex(ctx, target, freeMb))
    const toBuild = planned.filter(
      (p) => p.decision.action === 'created' || p.decision.action === 'rebuilt' || p.decision.action === 'replaced',
    )

    // Migrations first: the application keeps them whether the runner or Alembic applies them.
    const statements = toBuild.map((p) => p.statement)
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

    const seconds = new Map<string, number>()
    const workers = new Map<string, number>()
    for (const p of toBuild) {
      if (signal.aborted) throw new Interrupted()
      const decision = p.decision as Extract<IndexDecision, { drop: unknown }>
      // An invalid leftover must go first: CREATE INDEX IF NOT EXISTS would otherwise keep it.
      if (decision.action === 'rebuilt') await dropIndexes(db, decision.drop)
      if (plan.target.alembic?.apply) continue
      log(
        `  building ${p.name} on ${p.target.schema}.${p.target.table} (${decision.reason}; maintenance_work_mem ${p.memory.chosenMb} MB for an estimated ${p.memory.estimatedMb} MB graph${p.memory.cappedBy ? `, capped by ${p.memory.cappedBy}` : ''})`,
      )
      const built = await buildIndex(
        db,
        quoteQualified(p.target.schema, p.target.table),
        p.statement.create,
        { maintenanceWorkMemMb: p.memory.chosenMb, parallelWorkers: plan.index.parallel_workers },
        ctx.progress,
      )
      seconds.set(p.name, built.seconds)
      workers.set(p.name, built.parallelWorkers)
      if (decision.action === 'replaced') await dropIndexes(db, decision.drop)
      log(`  built ${p.name} in ${built.seconds.toFixed(1)} s`)
    }
    if (plan.target.alembic?.apply && revisionPath) await runAlembic(ctx, revisionPath)

    const indexes: BuiltIndex[] = []
    const explains: string[] = []
    for (const p of planned) {
      const indexNameNow = p.decision.action === 'kept' || p.decision.action === 'mismatch_reported' ? p.decision.existing.name : p.name
      const found = (await vectorIndexesOn(db, p.target)).find((i) => i.name === indexNameNow)
      if (!found) throw new Error(`index ${indexNameNow} on ${p.target.schema}.${p.target.table} does not exist after the build`)
      const embedded = await db.query<{ n: number }>(
        `SELECT count(${quoteIdent(p.target.column)})::int AS n FROM ${quoteQualified(p.target.schema, p.target.table)}`,
      )
      const listed = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_indexes WHERE schemaname = $1 AND indexname = $2', [
        p.target.schema,
        indexNameNow,
      ])
      const natural = (await explainNearestNeighbour(db, p.target, p.search))!
      const forced = natural.scan === 'index' ? natural : (await explainNearestNeighbour(db, p.target, p.search, { forceIndex: true }))!
      explains.push(`-- ${natural.table}.${natural.column} (planner's own choice)\n${natural.sql}\n\n${natural.plan}\n`)
      if (forced !== natural)
        explains.push(`-- ${forced.table}.${forced.column} (sequential scans disabled: can the index serve it?)\n${forced.plan}\n`)
      const before = diagnosis.query_plans.find((q) => q.table === natural.table && q.column === natural.column)
      indexes.push({
        table: `${p.target.schema}.${p.target.table}`,
        column: p.target.column,
        name: indexNameNow,
        action: p.decision.action,
        reason: p.decision.reason,
        definition: found.definition,
        search: { expression: p.search.expression, cast_type: p.search.castType, operator: p.search.operator, opclass: p.search.opclass },
        concurrently: db.kind === 'postgres',
        maintenance_work_mem_mb: seconds.has(p.name) ? p.memory.chosenMb : null,
        estimated_graph_mb: p.memory.estimatedMb,
        memory_capped_by: p.memory.cappedBy ?? null,
        parallel_workers: workers.get(p.name) ?? null,
        build_seconds: seconds.get(p.name) ?? null,
        size_bytes: found.size_bytes,
        rows_indexed: embedded.rows[0]!.n,
        valid: found.valid,
        listed_in_pg_indexes: listed.rows[0]!.n === 1,
        explain_scan: natural.scan,
        explain_index: forced.index_name,
        query_ms_before: before?.execution_ms ?? null,
        query_ms_after: natural.execution_ms,
      })
    }
    ctx.writeArtifact('explain.txt', explains.join('\n'))
    return {
      indexes,
      migrations: {
        up_sql: upPath,
        down_sql: downPath,
        alembic_revision: revisionPath,
        applied_with: plan.target.alembic?.apply ? 'alembic' : 'runner',
      },
    }
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
