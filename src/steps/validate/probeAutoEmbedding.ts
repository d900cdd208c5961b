import { z } from 'zod'
import type { CursorSpec } from '../../checkpoint/session.ts'
import type { Queryable } from '../../db/database.ts'
import { quoteIdent } from '../../db/quote.ts'
import type { RunnerSchema } from '../../db/runnerSchema/objects.ts'
import type { Target } from '../../db/target.ts'

// Auto-embedding end to end, timed: by default an existing row queued again (requeueProbe,
// nothing written to the application's table but its embedding); on the plan's explicit
// choice (validate.auto_embed_check: insert_row) a probe row inserted through the
// application's table, a copy of an existing row with a probe text, then deleted.

export type ProbeResult = { measured: true; delay_ms: number; key: string } | { measured: false; reason: string; key?: string }

export const probeSchema = z.object({ table: z.string(), key: z.string(), text: z.string() })
export type Probe = z.infer<typeof probeSchema>

/**
 * The validate batch's cursor: the probe rows in flight, so a crash never leaves one behind, and
 * the check's own worker, so a crash never leaves its registration counted as a deployed worker.
 */
export const probesCursor: CursorSpec<ProbesCursor> = {
  version: 1,
  schema: z.object({ probes: z.array(probeSchema), check_worker: z.string().optional() }),
}
export interface ProbesCursor {
  probes: Probe[]
  /** The worker id of the worker the check runs in this process, while it runs. */
  check_worker?: string
}

/** Removes probe rows a crashed run left behind: only the recorded key, and only while it still holds the probe text. */
export async function removeLeftoverProbes(db: Queryable, targets: Target[], probes: Probe[]): Promise<number> {
  let removed = 0
  for (const probe of probes) {
    const t = targets.find((x) => x.name === probe.table)
    if (!t) continue
    const { rowCount } = await db.query(
      `DELETE FROM ${t.table} WHERE ${t.keyValue()} = ${t.keyOf('$1::text')} AND ${t.text()} LIKE '%' || $2 || '%'`,
      [probe.key, probe.text],
    )
    removed += rowCount
  }
  return removed
}

/**
 * A new row through the application's table: an existing row's other columns copied, its text
 * columns set to $1, its key from the key's default. The application's generated tests insert
 * their probe with the same statement.
 */
export function probeInsertSql(t: Target): { sql: string } | { reason: string } {
  const columns = t.columns.filter((c) => !c.generated)
  const keys = t.keyColumns
  if (!keys.every((k) => columns.find((c) => c.name === k)?.has_default))
    return {
      reason: `${t.name} (${keys.join(', ')}) has a key column without a default, so the runner cannot insert a probe row without inventing a key`,
    }
  const copied = columns.filter((c) => !keys.includes(c.name) && c.name !== t.plan.embedding_column)
  const texts = new Set(t.plan.text_columns)
  const list = copied.map((c) => quoteIdent(c.name)).join(', ')
  const values = copied.map((c) => (texts.has(c.name) ? '$1::text' : quoteIdent(c.name))).join(', ')
  return { sql: `INSERT INTO ${t.table} (${list}) SELECT ${values} FROM ${t.table} LIMIT 1 RETURNING ${t.keyText()} AS key` }
}

export async function probeAutoEmbedding(
  db: Queryable,
  t: Target,
  withinSeconds: number,
  onInserted: (probe: Probe) => void = () => {},
): Promise<ProbeResult> {
  const insert = probeInsertSql(t)
  if ('reason' in insert) return { measured: false, reason: insert.reason }
  const probeText = `runner probe ${new Date().toISOString()}`
  const inserted = await db.query<{ key: string }>(insert.sql, [probeText])
  const key = inserted.rows[0]?.key
  if (!key) return { measured: false, reason: `${t.name} is empty: there is no row to copy for a probe` }
  onInserted({ table: t.name, key, text: probeText })
  const started = performance.now()
  try {
    for (;;) {
      const { rows } = await db.query<{ done: boolean }>(
        `SELECT ${t.embedding} IS NOT NULL AS done FROM ${t.table} WHERE ${t.keyValue()} = ${t.keyOf('$1::text')}`,
        [key],
      )
      if (rows[0]?.done) return { measured: true, delay_ms: performance.now() - started, key }
      if (performance.now() - started > withinSeconds * 1000)
        return { measured: false, reason: `no embedding after ${withinSeconds} s`, key }
      await new Promise((r) => setTimeout(r, 20))
    }
  } finally {
    await db.query(`DELETE FROM ${t.table} WHERE ${t.keyValue()} = ${t.keyOf('$1::text')}`, [key])
  }
}

/**
 * The worker half, without writing to the application's table: an existing row is queued for
 * re-embedding, and timed until a worker has written its embedding again (its metadata says
 * when). The row's text is unchanged, so is its embedding's meaning.
 */
export async function requeueProbe(db: Queryable, rs: RunnerSchema, t: Target, withinSeconds: number): Promise<ProbeResult> {
  const { rows } = await db.query<{ key: string }>(`SELECT ${t.keyText()} AS key FROM ${t.table} WHERE ${t.embedding} IS NOT NULL LIMIT 1`)
  const key = rows[0]?.key
  if (key === undefined) return { measured: false, reason: `${t.name} has no embedded row to queue again` }
  const { rows: queued } = await db.query<{ at: string }>(
    `INSERT INTO ${rs.queue} (table_name, row_key) VALUES ($1, $2)
     ON CONFLICT (table_name, row_key) DO UPDATE SET enqueued_at = now(), run_at = now(), attempts = 0, locked_by = NULL, locked_at = NULL, last_error = NULL
     RETURNING clock_timestamp()::text AS at`,
    [t.name, key],
  )
  await db.query('SELECT pg_notify($1, $2)', [rs.channel, t.name])
  const started = performance.now()
  for (;;) {
    const { rows: done } = await db.query<{ done: boolean }>(
      `SELECT embedded_at >= $3::timestamptz AS done FROM ${rs.meta} WHERE table_name = $1 AND row_key = $2`,
      [t.name, key, queued[0]!.at],
    )
    if (done[0]?.done) return { measured: true, delay_ms: performance.now() - started, key }
    if (performance.now() - started > withinSeconds * 1000)
      return { measured: false, reason: `row ${key} queued again was not embedded within ${withinSeconds} s`, key }
    await new Promise((r) => setTimeout(r, 20))
  }
}
