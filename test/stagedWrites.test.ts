import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import type { Database } from '../src/db/database.ts'
import { bindColumnModels } from '../src/db/runnerSchema/columnModels.ts'
import { runnerSchema } from '../src/db/runnerSchema/objects.ts'
import { resolveTargets, type Target } from '../src/db/target.ts'
import { installPipeline } from '../src/pipeline/installPipeline.ts'
import { stageEmbeddings, writeStaged, writeStagedBatch } from '../src/pipeline/writeEmbeddings.ts'
import { planSchema } from '../src/plan/schema.ts'
import { createTarget, targetKinds, type TestTarget } from './helpers/databases.ts'

// The backfill's saved batches on both databases: each embedded batch saved in the runner's
// schema before the next is embedded, removed by the transaction that writes it, and written by
// the next run when the run that saved it ended first, with the same checks as every write (the
// text unchanged since it was embedded, the column bound to the model). On a table with a text
// key that needs quoting, in a runner schema and an application schema that need quoting.

const DIMS = 4
const MODEL = 'model-a'

describe.each(targetKinds)('staged writes on %s', (kind) => {
  let target: TestTarget
  let db: Database
  let t: Target
  const rs = runnerSchema('runner staging')
  const policy = { suppressTriggers: true }
  const vectorOf = (key: string) => [key.length, -0.5, 0.1, Number(key.length % 2)]
  const rowsOf = async () =>
    (await db.query<{ code: string; e: string | null }>('SELECT code, embedding::text AS e FROM "Shop"."Items" ORDER BY code')).rows
  const count = async (sql: string) => (await db.query<{ n: number }>(sql)).rows[0]!.n
  const hashes = async () =>
    new Map(
      (await t.readNullPage(db, null, 100)).map((r) => [r.key, r.hash] as const), // key -> hash of its current text
    )

  beforeAll(async () => {
    target = await createTarget(kind)
    db = await target.open()
    await db.exec(`CREATE EXTENSION IF NOT EXISTS vector; CREATE SCHEMA "Shop";
      CREATE TABLE "Shop"."Items" (code text PRIMARY KEY, "Label" text NOT NULL, embedding vector(${DIMS}))`)
    const plan = planSchema.parse({
      id: 'staged',
      title: 'staged',
      target: {
        runner_schema: rs.name,
        tables: [
          { schema: 'Shop', table: 'Items', key: 'code', text_columns: ['Label'], embedding_column: 'embedding', distance: 'cosine' },
        ],
      },
      embedding: { provider: 'local', model: MODEL, dimensions: DIMS },
      batches: [{ id: 'b', title: 'b', agent: 'a', step: 'backfill' }],
    })
    ;[t] = (await resolveTargets(db, plan)) as [Target]
    await installPipeline(db, rs, [t])
    await bindColumnModels(db, rs, [t], { name: 'local', model: MODEL, dimensions: DIMS })
  })
  beforeEach(async () => {
    await db.exec(`DELETE FROM "Shop"."Items"; DELETE FROM ${rs.meta}; DELETE FROM ${rs.staging};
      INSERT INTO "Shop"."Items" (code, "Label") VALUES ('a''1', 'first'), ('b "2"', 'second'), ('ç 3', 'third')`)
  })
  afterAll(async () => {
    await db?.close()
    await target?.drop()
  })

  const staged = async () =>
    (await db.query<{ batch: string }>(`SELECT batch FROM ${rs.staging} ORDER BY staged_at`)).rows.map((r) => r.batch)

  it('saves a batch (committed on its own), and the write that writes it removes it', async () => {
    const current = await hashes()
    const rows = [...current].map(([key, hash]) => ({ key, hash, vector: vectorOf(key) }))
    const batch = await stageEmbeddings(db, rs, t, rows, MODEL)
    expect(await staged()).toEqual([batch])
    expect(await count(`SELECT count(*)::int AS n FROM "Shop"."Items" WHERE embedding IS NOT NULL`)).toBe(0)

    expect((await writeStagedBatch(db, rs, t, batch, policy)).written.sort()).toEqual([...current.keys()].sort())
    expect(await rowsOf()).toEqual([...current.keys()].sort().map((code) => ({ code, e: `[${vectorOf(code).join(',')}]` })))
    expect(await staged()).toEqual([])
  })

  it('a write that fails keeps the batch saved; the next run writes it exactly, without the provider', async () => {
    const current = await hashes()
    const rows = [...current].map(([key, hash]) => ({ key, hash, vector: vectorOf(key) }))
    const batch = await stageEmbeddings(db, rs, t, rows, MODEL)
    // The application refuses the write (a trigger that fires even under the runner's replica role).
    await db.exec(`CREATE FUNCTION "Shop".refuse() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'refused by the application'; END$$;
      CREATE TRIGGER refuse BEFORE UPDATE ON "Shop"."Items" FOR EACH ROW EXECUTE FUNCTION "Shop".refuse();
      ALTER TABLE "Shop"."Items" ENABLE ALWAYS TRIGGER refuse`)
    await expect(writeStagedBatch(db, rs, t, batch, policy)).rejects.toThrow(/refused by the application/)
    await db.exec('DROP TRIGGER refuse ON "Shop"."Items"; DROP FUNCTION "Shop".refuse()')
    expect(await staged()).toEqual([batch])
    expect(await count(`SELECT count(*)::int AS n FROM "Shop"."Items" WHERE embedding IS NOT NULL`)).toBe(0)

    expect(await writeStaged(db, rs, t, policy)).toEqual({ batches: 1, written: 3, busy: [] })
    expect(await rowsOf()).toEqual([...current.keys()].sort().map((code) => ({ code, e: `[${vectorOf(code).join(',')}]` })))
    expect(await count(`SELECT count(*)::int AS n FROM ${rs.meta} WHERE model = '${MODEL}'`)).toBe(3)
    expect(await staged()).toEqual([])
  })

  it('writing saved batches leaves out a row whose text changed since, and vectors of a model the column is not bound to', async () => {
    const current = await hashes()
    const rows = [...current].map(([key, hash]) => ({ key, hash, vector: vectorOf(key) }))
    await stageEmbeddings(db, rs, t, rows, 'model-b')
    await stageEmbeddings(db, rs, t, rows, MODEL)
    await db.exec(`UPDATE "Shop"."Items" SET "Label" = 'changed' WHERE code = 'ç 3'`)

    expect(await writeStaged(db, rs, t, policy)).toEqual({ batches: 2, written: 2, busy: [] })
    expect((await rowsOf()).filter((r) => r.e !== null).map((r) => r.code)).toEqual(["a'1", 'b "2"'])
    expect(await count(`SELECT count(*)::int AS n FROM ${rs.meta} WHERE model = 'model-b'`)).toBe(0)
    expect(await staged()).toEqual([])
  })
})
