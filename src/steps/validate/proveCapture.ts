import { readTriggerDetails } from '../../db/catalog/readTriggers.ts'
import type { Database } from '../../db/database.ts'
import { quoteIdent } from '../../db/quote.ts'
import { CAPTURE_TRIGGER, type RunnerSchema } from '../../db/runnerSchema/objects.ts'
import type { Target } from '../../db/target.ts'

// Proves the capture half of the pipeline without writing to the application's table: the
// trigger is installed and enabled on the table (the catalog says so), and the very function
// it runs, attached to a temporary copy of the table inside a transaction that is rolled
// back, queues an inserted row and nulls and queues a row whose text changes. The
// application's table is only read: its insert, update and delete counters and its sequences
// do not move.

export interface CaptureProof {
  proved: boolean
  detail: string
}

const PROBE_TABLE = 'runner_capture_probe'

class Proved extends Error {}

export async function proveCapture(db: Pick<Database, 'transaction'>, rs: RunnerSchema, t: Target): Promise<CaptureProof> {
  const installed = await db.transaction(async (tx) =>
    (await readTriggerDetails(tx, t.plan.schema, t.plan.table)).find((tr) => tr.name === CAPTURE_TRIGGER && tr.table === t.name),
  )
  if (!installed) return { proved: false, detail: `no ${CAPTURE_TRIGGER} trigger on ${t.name}: run the pipeline batch` }
  if (installed.enabled === 'D' || installed.enabled === 'R')
    return { proved: false, detail: `${CAPTURE_TRIGGER} on ${t.name} is disabled (tgenabled ${installed.enabled})` }

  const probe = `pg_temp.${quoteIdent(PROBE_TABLE)}`
  const firstText = quoteIdent(t.plan.text_columns[0]!)
  try {
    await db.transaction(async (tx) => {
      await tx.exec(`CREATE TEMP TABLE ${quoteIdent(PROBE_TABLE)} (LIKE ${t.table}) ON COMMIT DROP`)
      await tx.exec(
        `CREATE TRIGGER ${quoteIdent(CAPTURE_TRIGGER)} BEFORE INSERT OR UPDATE OF ${t.textColumns} ON ${probe} FOR EACH ROW EXECUTE FUNCTION ${rs.captureFunction(t.plan)}()`,
      )
      const { rows } = await tx.query<{ key: string }>(`SELECT ${t.key}::text AS key FROM ${t.table} LIMIT 1`)
      const key = rows[0]?.key
      if (key === undefined) throw new Proved(`${t.name} is empty: nothing to copy for the check`)
      const queued = async () =>
        (await tx.query(`SELECT 1 FROM ${rs.queue} WHERE table_name = $1 AND row_key = $2`, [t.name, key])).rows.length === 1
      const unqueue = () => tx.query(`DELETE FROM ${rs.queue} WHERE table_name = $1 AND row_key = $2`, [t.name, key])
      // A copy of one row, inserted without an embedding, is queued.
      const columns = t.columns.map((c) => c.name)
      const values = columns.map((c) => (c === t.plan.embedding_column ? `NULL::${t.embeddingType}` : quoteIdent(c))).join(', ')
      await tx.query(`INSERT INTO ${probe} SELECT ${values} FROM ${t.table} WHERE ${t.key} = $1::${t.keyType}`, [key])
      const insertQueued = await queued()
      // A write of the embedding alone is not captured (the worker's own writes).
      await unqueue()
      const { rows: vector } = await tx.query<{ v: string }>(
        `SELECT ${t.embedding}::text AS v FROM ${t.table} WHERE ${t.embedding} IS NOT NULL LIMIT 1`,
      )
      if (vector[0]) await tx.query(`UPDATE ${probe} SET ${t.embedding} = $1::${t.embeddingType}`, [vector[0].v])
      const embeddingWriteQueued = await queued()
      // A change of text nulls the stale embedding and queues the row again.
      await tx.exec(`UPDATE ${probe} SET ${firstText} = coalesce(${firstText}::text, '') || ' (runner capture check)'`)
      const { rows: after } = await tx.query<{ empty: boolean }>(`SELECT ${t.embedding} IS NULL AS empty FROM ${probe}`)
      const updateQueued = after[0]!.empty && (await queued())
      const failed = [
        !insertQueued && 'queue an inserted row',
        embeddingWriteQueued && 'leave a write of the embedding alone',
        !updateQueued && 'null and queue a changed text',
      ].filter(Boolean)
      throw new Proved(failed.length ? `on a copy of ${t.name}, the capture function did not ${failed.join(', nor ')}` : '')
    })
  } catch (error) {
    if (!(error instanceof Proved)) throw error
    return error.message === ''
      ? {
          proved: true,
          detail: `${CAPTURE_TRIGGER} is enabled on ${t.name}; on a rolled-back copy its function queued an insert, left an embedding write alone, and nulled and queued a text change`,
        }
      : { proved: false, detail: error.message }
  }
  return { proved: false, detail: 'unreachable' }
}
