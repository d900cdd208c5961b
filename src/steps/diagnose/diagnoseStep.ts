import { resolve } from 'node:path'
import type { Step } from '../step.ts'
import { explainNearestNeighbour } from './explainNearestNeighbour.ts'
import { findFindings } from './findFindings.ts'
import {
  inspectExtension,
  inspectPrivileges,
  inspectVectorColumns,
  inspectVectorIndexes,
  inspectWriters,
  serverVersion,
} from './inspectDatabase.ts'
import { diagnoseOutputSchema, type DiagnoseOutput, type QueryPlan, type TargetColumn } from './output.ts'
import { scanSource } from './scanSource.ts'
import { renderDiagnosis } from './renderDiagnosis.ts'

// Batch 1 of the seed: find out exactly why semantic search is broken, with evidence, and
// change nothing. The plan runs it as a read_only batch, so every statement here executes
// inside one READ ONLY transaction and PostgreSQL itself would refuse a write.

export const diagnoseStep: Step<DiagnoseOutput> = {
  name: 'diagnose',
  output: diagnoseOutputSchema,

  async run({ db, plan, log, writeArtifact }) {
    const extension = await inspectExtension(db)
    const vectorColumns = await inspectVectorColumns(db, plan)
    const targets: TargetColumn[] = []
    for (const t of plan.target.tables) {
      const found = vectorColumns.find((c) => c.schema === t.schema && c.table === t.table && c.column === t.embedding_column)
      const base = {
        schema: t.schema,
        table: t.table,
        key: t.key,
        column: t.embedding_column,
        text_columns: t.text_columns,
        distance: t.distance,
      }
      targets.push(
        found
          ? { ...base, type: found.type, dimensions: found.dimensions, rows: found.rows, nulls: found.nulls }
          : { ...base, type: null, dimensions: null, rows: 0, nulls: 0 },
      )
    }
    const indexes = await inspectVectorIndexes(db, vectorColumns)
    const writers = await inspectWriters(db, plan)
    const queryPlans: QueryPlan[] = []
    for (const target of targets) {
      const explained = await explainNearestNeighbour(db, target)
      if (explained) {
        queryPlans.push(explained)
        log(
          `  ${explained.table}: nearest-10 query is ${explained.scan === 'index' ? `an index scan (${explained.index_name})` : `a ${explained.scan} scan`}, ${explained.execution_ms.toFixed(1)} ms`,
        )
      }
    }
    const sourceReferences = plan.target.app_source ? scanSource(resolve(plan.target.app_source)) : []
    const measured = {
      database: { kind: db.kind, server_version: await serverVersion(db) },
      extension,
      vector_columns: vectorColumns,
      targets,
      indexes,
      writers,
      query_plans: queryPlans,
      privileges: await inspectPrivileges(db, plan),
      source_references: sourceReferences,
    }
    const output: DiagnoseOutput = { ...measured, ...findFindings(plan, measured) }
    writeArtifact('explain.txt', queryPlans.map((q) => `-- ${q.table}.${q.column}\n${q.sql}\n\n${q.plan}\n`).join('\n'))
    return output
  },

  summarize(output) {
    const errors = output.findings.filter((f) => f.severity === 'error')
    return `${errors.length} errors (${[...new Set(errors.map((f) => f.code))].join(', ') || 'none'}); ${output.root_cause}`
  },

  details: renderDiagnosis,
}
