import { readTriggerDetails } from '../../db/catalog/readTriggers.ts'
import type { Database } from '../../db/database.ts'
import { quoteIdent } from '../../db/quote.ts'
import { CAPTURE_TRIGGER, DEQUEUE_TRIGGER, type RunnerSchema } from '../../db/runnerSchema/objects.ts'
import { errorMessage } from '../../errors.ts'
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
  /** The role the writes were made as; absent when they were made as the runner's own role. */
  role?: string
}

const PROBE_TABLE = 'runner_capture_probe'
const SOURCE_TABLE = 'runner_capture_source'

class Proved extends Error {}

/**
 * Proves the capture on a rolled-back temporary copy of the table, its writes made as `role`
 * when given (SET LOCAL ROLE: the application's own role, whose rights the trigger runs with
 * unless its function is SECURITY DEFINER): an insert is queued, a write of the embedding alone
 * is not, a change of text nulls the embedding and queues the row, and a delete unqueues it.
 */
export async function proveCapture(db: Pick<Database, 'transaction'>, rs: RunnerSchema, t: Target, role?: string): Promise<CaptureProof> {
  const installed = await db.transaction(async (tx) =>
    (await readTriggerDetails(tx, t.plan.schema, t.plan.table)).find((tr) => tr.name === CAPTURE_TRIGGER && tr.table === t.name),
  )
  if (!installed) return { proved: false, detail: `no ${CAPTURE_TRIGGER} trigger on ${t.name}: run the pipeline batch`, role }
  if (installed.enabled === 'D' || installed.enabled === 'R')
    return { proved: false, detail: `${CAPTURE_TRIGGER} on ${t.name} is disabled (tgenabled ${installed.enabled})`, role }
  const proof = await proveCaptureOnCopy(db, rs, t, role)
  return proof.proved ? { ...proof, detail: `${CAPTURE_TRIGGER} is enabled on ${t.name}; ${proof.detail}` } : proof
}

/** The copy half of proveCapture: the capture function on a temporary copy, whether or not the real table's trigger exists yet. */
export async function proveCaptureOnCopy(
  db: Pick<Database, 'transaction'>,
  rs: RunnerSchema,
  t: Target,
  role?: string,
): Promise<CaptureProof> {
  const as = role ? ` as role ${role}` : ''

  const probe = `pg_temp.${quoteIdent(PROBE_TABLE)}`
  const source = `pg_temp.${quoteIdent(SOURCE_TABLE)}`
  const firstText = quoteIdent(t.plan.text_columns[0]!)
  const fn = rs.captureFunction(t.plan)
  try {
    await db.transaction(async (tx) => {
      await tx.exec(`CREATE TEMP TABLE ${quoteIdent(PROBE_TABLE)} (LIKE ${t.table}) ON COMMIT DROP;
        CREATE TEMP TABLE ${quoteIdent(SOURCE_TABLE)} (LIKE ${t.table}) ON COMMIT DROP;
        CREATE TRIGGER ${quoteIdent(CAPTURE_TRIGGER)} BEFORE INSERT OR UPDATE OF ${t.textColumns} ON ${probe} FOR EACH ROW EXECUTE FUNCTION ${fn}();
        CREATE TRIGGER ${quoteIdent(DEQUEUE_TRIGGER)} AFTER DELETE ON ${probe} FOR EACH ROW EXECUTE FUNCTION ${fn}()`)
      if (role) await tx.exec(`GRANT SELECT, INSERT, UPDATE, DELETE ON ${probe}, ${source} TO ${quoteIdent(role)}`)
      const { rows } = await tx.query<{ key: string }>(`SELECT ${t.keyText()} AS key FROM ${t.table} LIMIT 1`)
      const key = rows[0]?.key
      if (key === undefined) throw new Proved(`${t.name} is empty: nothing to copy for the check`)
      // A copy of one row, without its embedding, for the role to insert.
      const columns = t.columns.map((c) => c.name)
      const values = columns.map((c) => (c === t.plan.embedding_column ? `NULL::${t.embeddingType}` : quoteIdent(c))).join(', ')
      await tx.query(`INSERT INTO ${source} SELECT ${values} FROM ${t.table} WHERE ${t.keyValue()} = ${t.keyOf('$1::text')}`, [key])
      const { rows: vector } = await tx.query<{ v: string }>(
        `SELECT ${t.embedding}::text AS v FROM ${t.table} WHERE ${t.embedding} IS NOT NULL LIMIT 1`,
      )
      // The application's writes, made as its role; what they queued is read back as the runner's.
      const asRole = async (sql: string, params: unknown[] = []) => {
        if (role) await tx.exec(`SET LOCAL ROLE ${quoteIdent(role)}`)
        const failure = await tx.query(sql, params).then(
          () => undefined,
          (error: unknown) => errorMessage(error),
        )
        // (the transaction is aborted after a failure: it only rolls back from here)
        if (failure) throw new Proved(`on a copy of ${t.name}${as}, \`${sql.split(' ').slice(0, 2).join(' ')} …\` failed: ${failure}`)
        if (role) await tx.exec('RESET ROLE')
      }
      const queued = async () =>
        (await tx.query(`SELECT 1 FROM ${rs.queue} WHERE table_name = $1 AND row_key = $2`, [t.name, key])).rows.length === 1
      const unqueue = () => tx.query(`DELETE FROM ${rs.queue} WHERE table_name = $1 AND row_key = $2`, [t.name, key])
      await asRole(`INSERT INTO ${probe} SELECT * FROM ${source}`)
      const insertQueued = await queued()
      // A write of the embedding alone is not captured (the worker's own writes).
      await unqueue()
      if (vector[0]) await asRole(`UPDATE ${probe} SET ${t.embedding} = $1::${t.embeddingType}`, [vector[0].v])
      const embeddingWriteQueued = await queued()
      // A change of text nulls the stale embedding and queues the row again.
      await asRole(`UPDATE ${probe} SET ${firstText} = coalesce(${firstText}::text, '') || ' (runner capture check)'`)
      const { rows: after } = await tx.query<{ empty: boolean }>(`SELECT ${t.embedding} IS NULL AS empty FROM ${probe}`)
      const updateQueued = after[0]!.empty && (await queued())
      // A delete takes the row off the queue.
      await asRole(`DELETE FROM ${probe}`)
      const deleteUnqueued = !(await queued())
      const failed = [
        !insertQueued && 'queue an inserted row',
        embeddingWriteQueued && 'leave a write of the embedding alone',
        !updateQueued && 'null and queue a changed text',
        !deleteUnqueued && 'unqueue a deleted row',
      ].filter(Boolean)
      throw new Proved(failed.length ? `on a copy of ${t.name}${as}, the capture function did not ${failed.join(', nor ')}` : '')
    })
  } catch (error) {
    if (!(error instanceof Proved)) throw error
    return error.message === ''
      ? {
          proved: true,
          detail: `on a rolled-back copy${as}, an insert was queued, an embedding write left alone, a text change nulled and queued, and a delete unqueued`,
          role,
        }
      : { proved: false, detail: error.message, role }
  }
  return { proved: false, detail: 'unreachable', role }
}
