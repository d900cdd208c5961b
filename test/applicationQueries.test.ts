import { readdirSync, readFileSync } from 'node:fs'
import { sessionFolders } from './helpers/sessions.ts'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { Database } from '../src/db/database.ts'
import { planFor, shapeOf, TITLE_AND_BODY } from './helpers/appSchemas.ts'
import { createServerDatabase, serverUrl, tempDir, type TestTarget } from './helpers/databases.ts'
import { chainedBatches, writePlan } from './helpers/plans.ts'
import { runCli } from './helpers/runCli.ts'

// Fixed as the application runs it: the application's own key (several columns, on a table
// partitioned by time), the application's own text (text_template), and relevance shown
// without labelled queries, as most applications have none.

const docs = shapeOf({ textColumns: TITLE_AND_BODY })
// Known-item retrieval needs vectors with room to tell rows apart: at 16 dimensions the local
// provider found 0.43 of them on these texts, at 64 0.90, at 256 1.00 (a real model has 384 or more).
const DIMS = 64
const relevance = { criteria: { relevance_recall_at_k: { k: 5, min: 0.5 } }, embedding: { dimensions: DIMS } }

describe.skipIf(!serverUrl)('as the application runs it (real server)', () => {
  let target: TestTarget
  let db: Database
  const dir = tempDir()
  beforeEach(async () => {
    target = await createServerDatabase()
    db = await target.open()
    await db.exec('CREATE EXTENSION IF NOT EXISTS vector')
  })
  afterEach(async () => {
    await db.close()
    await target.drop()
  })

  const write = (plan: unknown) => writePlan(dir, plan, `plan-${Math.random().toString(36).slice(2)}.yaml`)
  const run = (args: string[], sessions = join(dir, `sessions-${Math.random().toString(36).slice(2)}`)) =>
    runCli([...args, ...(['start', 'resume'].includes(args[0]!) ? ['--sessions-dir', sessions] : [])], {
      env: { DATABASE_URL: target.url! },
    })
  const count = async (sql: string) => (await db.query<{ n: number }>(sql)).rows[0]!.n
  const lastSession = (sessions: string) => join(sessions, sessionFolders(sessions).at(-1)!)
  const stateOf = (sessions: string) => JSON.parse(readFileSync(join(lastSession(sessions), 'coordination-state.json'), 'utf8'))
  const batchOutput = (sessions: string, id: string) => {
    const session = lastSession(sessions)
    const folder = readdirSync(join(session, 'batches')).find((f) => f.endsWith(`-${id}`))!
    return JSON.parse(readFileSync(join(session, 'batches', folder, 'output.json'), 'utf8'))
  }
  const createDocs = (rows: number) =>
    db.exec(`CREATE TABLE docs (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, title text, body text, embedding vector(${DIMS}));
      INSERT INTO docs (title, body) SELECT 'note ' || g, 'about ' || (ARRAY['pgvector indexes', 'queue workers', 'search latency', 'embedding models'])[1 + g % 4] || ' and item ' || g
      FROM generate_series(1, ${rows}) g`)

  it('a table partitioned by time keyed (id, sent_at), its ids repeated across partitions: backfilled, captured, embedded by the worker', async () => {
    await db.exec(`CREATE TABLE messages (id bigint NOT NULL, sent_at timestamptz NOT NULL, body text, embedding vector(${DIMS}),
        PRIMARY KEY (id, sent_at)) PARTITION BY RANGE (sent_at);
      CREATE TABLE messages_2025 PARTITION OF messages FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
      CREATE TABLE messages_2026 PARTITION OF messages FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
      INSERT INTO messages SELECT g, '2025-06-01'::timestamptz + g * interval '1 minute 0.123456 second', 'message ' || g || ' about search latency' FROM generate_series(1, 80) g;
      INSERT INTO messages SELECT g, '2026-06-01'::timestamptz + g * interval '1 minute', 'reply ' || g || ' about queue workers' FROM generate_series(1, 80) g`)
    const plan = planFor(
      { ...docs, table: 'messages', textColumns: [{ name: 'body', type: 'text' }] },
      {
        ...relevance,
        target: {
          tables: [
            { table: 'messages', key: ['id', 'sent_at'], text_columns: ['body'], embedding_column: 'embedding', distance: 'cosine' },
          ],
        },
      },
    )
    const sessions = join(dir, 'sessions-partitioned')
    const started = await run(['start', write(plan)], sessions)
    expect(started.exitCode, started.all).toBe(3) // every criterion met but the worker, still to deploy
    expect(stateOf(sessions).criteria.filter((c: { passed: boolean; pending?: string }) => !c.passed && !c.pending)).toEqual([])
    expect(await count('SELECT count(*)::int AS n FROM messages WHERE embedding IS NULL')).toBe(0)
    // The key is stored whole: a JSON array of its columns, the timestamp to the microsecond.
    const keys = (await db.query<{ row_key: string }>(`SELECT row_key FROM runner.embedding_meta ORDER BY row_key LIMIT 1`)).rows
    expect(JSON.parse(keys[0]!.row_key)).toHaveLength(2)
    expect(await count(`SELECT count(DISTINCT row_key)::int AS n FROM runner.embedding_meta WHERE table_name = 'public.messages'`)).toBe(
      160,
    )

    // The application writes: a new row whose id exists in the other partition, and an edit of one of two rows with id 7.
    await db.exec(`INSERT INTO messages VALUES (7, '2026-11-30 10:00:00.654321+00', 'a new message about embedding models');
      UPDATE messages SET body = 'edited: about pgvector indexes' WHERE id = 7 AND sent_at < '2026-01-01'`)
    expect(await count('SELECT count(*)::int AS n FROM runner.embedding_queue')).toBe(2)
    const worker = await run(['worker', write(plan), '--until-empty'])
    expect(worker.exitCode, worker.all).toBe(0)
    expect(await count('SELECT count(*)::int AS n FROM messages WHERE embedding IS NULL')).toBe(0)
    expect(
      await count(`SELECT count(*)::int AS n FROM messages t JOIN runner.embedding_meta m
                   ON m.table_name = 'public.messages' AND m.row_key = jsonb_build_array(t.id, t.sent_at)::text
                   AND m.content_hash = encode(sha256(convert_to(t.body, 'UTF8')), 'hex')`),
    ).toBe(161)
  })

  it("LangChain's table as langchain-postgres creates it (an untyped vector column, varchar key, collections, jsonb metadata) works end to end", async () => {
    // langchain-postgres's own definitions (without embedding_length): the column is `vector`, of no dimension.
    await db.exec(`CREATE TABLE langchain_pg_collection (uuid uuid PRIMARY KEY, name varchar NOT NULL UNIQUE, cmetadata json);
      CREATE TABLE langchain_pg_embedding (id varchar PRIMARY KEY, collection_id uuid REFERENCES langchain_pg_collection (uuid) ON DELETE CASCADE,
        embedding vector, document varchar, cmetadata jsonb);
      CREATE INDEX ix_cmetadata_gin ON langchain_pg_embedding USING gin (cmetadata jsonb_path_ops);
      INSERT INTO langchain_pg_collection VALUES ('11111111-1111-1111-1111-111111111111', 'notes', '{}'), ('22222222-2222-2222-2222-222222222222', 'old', '{}');
      INSERT INTO langchain_pg_embedding (id, collection_id, document, cmetadata)
        SELECT md5(g::text), '11111111-1111-1111-1111-111111111111', 'note ' || g || ' about ' || (ARRAY['pgvector indexes', 'queue workers', 'search latency', 'embedding models'])[1 + g % 4],
               jsonb_build_object('topic', (ARRAY['db', 'ops', 'perf', 'ml'])[1 + g % 4])
        FROM generate_series(1, 300) g;
      -- Another collection, embedded by another model of another length: not the plan's, and left alone.
      INSERT INTO langchain_pg_embedding (id, collection_id, document, embedding)
        SELECT 'old-' || g, '22222222-2222-2222-2222-222222222222', 'old note ' || g, array_fill(0.5, ARRAY[8])::vector FROM generate_series(1, 5) g`)
    // LangChain's query (SQLAlchemy's .label("distance")), with the cast and the length the index needs, filtered by collection and metadata.
    const cast = `langchain_pg_embedding.embedding::vector(${DIMS})`
    const byCollection = `SELECT langchain_pg_embedding.id, langchain_pg_embedding.document, ${cast} <=> $1::vector(${DIMS}) AS distance
      FROM langchain_pg_embedding JOIN langchain_pg_collection ON langchain_pg_embedding.collection_id = langchain_pg_collection.uuid
      WHERE langchain_pg_embedding.collection_id = $2::uuid AND vector_dims(langchain_pg_embedding.embedding) = ${DIMS}
        AND langchain_pg_embedding.cmetadata @> $3::jsonb ORDER BY distance ASC LIMIT 4`
    const plan = planFor(
      { ...docs, table: 'langchain_pg_embedding', textColumns: [{ name: 'document', type: 'text' }] },
      {
        embedding: { dimensions: DIMS }, // (its texts are too alike for known items to mean much: relevance is the other tests')
        target: {
          tables: [
            {
              table: 'langchain_pg_embedding',
              key: 'id',
              text_columns: ['document'],
              embedding_column: 'embedding',
              distance: 'cosine',
              queries: [
                { name: 'by collection and topic', sql: byCollection, params: ['11111111-1111-1111-1111-111111111111', '{"topic": "db"}'] },
              ],
            },
          ],
        },
      },
    )
    const sessions = join(dir, 'sessions-langchain')
    const started = await run(['start', write(plan)], sessions)
    expect(started.exitCode, started.all).toBe(3)
    expect(started.stderr).toContain(
      `the application's query must order by ("embedding"::vector(${DIMS})) <=> $1::vector(${DIMS}) and hold vector_dims("embedding") = ${DIMS}`,
    )
    const diagnosis = batchOutput(sessions, 'diagnose')
    expect(diagnosis.targets[0].stored_dimensions).toEqual([{ dimensions: 8, model: null, rows: 5 }])
    expect(diagnosis.findings.map((f: { code: string }) => f.code)).toContain('UNTYPED_VECTOR_COLUMN')
    const index = batchOutput(sessions, 'index').indexes[0]
    expect(index.definition).toContain(`((embedding)::vector(${DIMS})) vector_cosine_ops`)
    expect(index.definition).toContain(`WHERE (vector_dims(embedding) = ${DIMS})`)
    expect(await count(`SELECT count(*)::int AS n FROM langchain_pg_embedding WHERE embedding IS NULL`)).toBe(0)
    // The other collection's vectors are as they were.
    expect(await count(`SELECT count(*)::int AS n FROM langchain_pg_embedding WHERE vector_dims(embedding) = 8`)).toBe(5)
    const query = batchOutput(sessions, 'validate').tables[0].app_queries[0]
    expect(query).toMatchObject({ name: 'by collection and topic', index_usable: true })
    // LangChain writing another model's vector of another length still works: the index is partial to the plan's.
    await db.exec(
      `INSERT INTO langchain_pg_embedding (id, collection_id, document, embedding) VALUES ('old-6', '22222222-2222-2222-2222-222222222222', 'old note 6', array_fill(0.25, ARRAY[8])::vector)`,
    )
    expect((await run(['worker', write(plan), '--until-empty'])).exitCode).toBe(0)
    expect(await count(`SELECT count(*)::int AS n FROM langchain_pg_embedding WHERE vector_dims(embedding) = 8`)).toBe(6)
  })

  it('types a column without dimensions when the plan chooses it, after saying what the rewrite costs; refuses it when other lengths are stored', async () => {
    await db.exec(`CREATE TABLE langchain_pg_embedding (id varchar PRIMARY KEY, collection_id uuid, embedding vector, document varchar, cmetadata jsonb);
      INSERT INTO langchain_pg_embedding (id, document) SELECT md5(g::text), 'note ' || g || ' about search latency' FROM generate_series(1, 100) g;
      INSERT INTO langchain_pg_embedding (id, document, embedding) VALUES ('other', 'another model', array_fill(0.5, ARRAY[8])::vector)`)
    const table = {
      table: 'langchain_pg_embedding',
      key: 'id',
      text_columns: ['document'],
      embedding_column: 'embedding',
      distance: 'cosine',
    }
    // LangChain's query as the library sends it: no cast, once the column is typed.
    const asLangChain = `SELECT id, embedding <=> $1 AS distance FROM langchain_pg_embedding ORDER BY distance ASC LIMIT 4`
    const plan = planFor(
      { ...docs, table: 'langchain_pg_embedding', textColumns: [{ name: 'document', type: 'text' }] },
      {
        embedding: { dimensions: DIMS },
        target: { tables: [{ ...table, untyped_column: 'set_type', queries: [{ name: 'as LangChain', sql: asLangChain }] }] },
      },
    )
    const refused = await run(['start', write(plan)])
    expect(refused.exitCode, refused.all).toBe(2)
    expect(refused.stderr).toContain(
      `target.tables[0].untyped_column: public.langchain_pg_embedding.embedding holds 1 vectors of 8 dimensions besides the plan's ${DIMS}`,
    )
    expect(
      await count(`SELECT count(*)::int AS n FROM pg_indexes WHERE tablename = 'langchain_pg_embedding' AND indexdef ILIKE '%hnsw%'`),
    ).toBe(0)

    await db.exec(`DELETE FROM langchain_pg_embedding WHERE id = 'other'`)
    const sessions = join(dir, 'sessions-typed')
    const typed = await run(['start', write(plan)], sessions)
    expect(typed.exitCode, typed.all).toBe(3)
    expect(typed.stderr).toMatch(
      /rewrites the table under ACCESS EXCLUSIVE: the application's reads and writes of it wait until it ends\. A cast of its 0 vectors took [\d.]+ s here/,
    )
    expect(
      (
        await db.query<{ t: string }>(
          `SELECT format_type(atttypid, atttypmod) AS t FROM pg_attribute WHERE attrelid = 'langchain_pg_embedding'::regclass AND attname = 'embedding'`,
        )
      ).rows[0]!.t,
    ).toBe(`vector(${DIMS})`)
    const index = batchOutput(sessions, 'index')
    expect(index.indexes[0].definition).toContain('USING hnsw (embedding vector_cosine_ops)')
    const session = join(sessions, sessionFolders(sessions).at(-1)!)
    expect(readFileSync(join(session, index.migrations.up_sql), 'utf8')).toContain(
      `ALTER TABLE "public"."langchain_pg_embedding" ALTER COLUMN "embedding" TYPE vector(${DIMS})`,
    )
    expect(readFileSync(join(session, index.migrations.down_sql), 'utf8')).toContain('ALTER COLUMN "embedding" TYPE vector;')
    expect(batchOutput(sessions, 'validate').tables[0].app_queries[0]).toMatchObject({ name: 'as LangChain', index_usable: true })
    expect(await count('SELECT count(*)::int AS n FROM langchain_pg_embedding WHERE embedding IS NULL')).toBe(0)
  })

  it("LlamaIndex's table as PGVectorStore creates it (hybrid search's generated tsvector), searched as it searches", async () => {
    await db.exec(`CREATE TABLE data_docs (id bigserial PRIMARY KEY, text varchar NOT NULL, metadata_ json, node_id varchar, embedding vector(${DIMS}),
        text_search_tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED);
      CREATE INDEX data_docs_idx_1 ON data_docs ((metadata_ ->> 'ref_doc_id'));
      INSERT INTO data_docs (text, metadata_, node_id)
        SELECT 'chunk ' || g || ' on ' || (ARRAY['pgvector indexes', 'queue workers', 'search latency', 'embedding models'])[1 + g % 4], json_build_object('ref_doc_id', 'doc' || (g % 7)), md5(g::text)
        FROM generate_series(1, 200) g`)
    // LlamaIndex orders by the distance's alias.
    const asLlamaIndex = 'SELECT id, node_id, text, metadata_, embedding <=> $1 AS distance FROM data_docs ORDER BY distance asc LIMIT 2'
    const plan = planFor(
      { ...docs, table: 'data_docs', textColumns: [{ name: 'text', type: 'text' }] },
      {
        embedding: { dimensions: DIMS },
        target: {
          tables: [
            {
              table: 'data_docs',
              key: 'id',
              text_columns: ['text'],
              embedding_column: 'embedding',
              distance: 'cosine',
              queries: [{ name: 'as LlamaIndex', sql: asLlamaIndex }],
            },
          ],
        },
      },
    )
    const sessions = join(dir, 'sessions-llamaindex')
    const started = await run(['start', write(plan)], sessions)
    expect(started.exitCode, started.all).toBe(3)
    expect(batchOutput(sessions, 'diagnose').app_queries[0]).toMatchObject({ name: 'as LlamaIndex', servable: true })
    expect(batchOutput(sessions, 'validate').tables[0].app_queries[0]).toMatchObject({ name: 'as LlamaIndex', index_usable: true })
    expect(await count('SELECT count(*)::int AS n FROM data_docs WHERE embedding IS NULL')).toBe(0)
  })

  it('refuses a key the table does not make unique, naming the columns', async () => {
    await createDocs(10)
    const plan = planFor(docs, {
      target: {
        tables: [
          { table: 'docs', key: ['title', 'body'], text_columns: ['title', 'body'], embedding_column: 'embedding', distance: 'cosine' },
        ],
      },
    })
    const refused = await run(['start', write(plan)])
    expect(refused.exitCode, refused.all).toBe(2)
    expect(refused.stderr).toContain('target.tables[0].key: public.docs (title, body) must be NOT NULL and unique together')
  })

  it('embeds the text the application embeds (text_template): the backfill, the capture and the worker all use it', async () => {
    await createDocs(40)
    const template = 'title: {title}\n\n{body}'
    const plan = planFor(docs, {
      ...relevance,
      target: {
        tables: [
          {
            table: 'docs',
            key: 'id',
            text_columns: ['title', 'body'],
            text_template: template,
            embedding_column: 'embedding',
            distance: 'cosine',
          },
        ],
      },
    })
    const sessions = join(dir, 'sessions-template')
    const started = await run(['start', write(plan)], sessions)
    expect(started.exitCode, started.all).toBe(3)
    const templated = `encode(sha256(convert_to(concat('title: ', d.title, E'\\n\\n', d.body), 'UTF8')), 'hex')`
    const recorded = `SELECT count(*)::int AS n FROM docs d JOIN runner.embedding_meta m ON m.table_name = 'public.docs' AND m.row_key = d.id::text AND m.content_hash = ${templated}`
    expect(await count(recorded)).toBe(40)
    // Embedded again by the model, the templated text lands on the stored vectors: they are that text's.
    const known = batchOutput(sessions, 'validate').tables[0].known_items
    expect(known.consistency.matched).toBe(known.consistency.sampled)
    // A change to a column the template reads is captured; the worker embeds the templated text.
    await db.exec(`UPDATE docs SET title = 'renamed' WHERE id = 3`)
    expect(await count('SELECT count(*)::int AS n FROM runner.embedding_queue')).toBe(1)
    expect((await run(['worker', write(plan), '--until-empty'])).exitCode).toBe(0)
    expect(await count(recorded)).toBe(40)
  })

  it('refuses a template that names a column not among text_columns', async () => {
    await createDocs(5)
    const plan = planFor(docs, {
      target: {
        tables: [
          {
            table: 'docs',
            key: 'id',
            text_columns: ['body'],
            text_template: '{title}: {body}',
            embedding_column: 'embedding',
            distance: 'cosine',
          },
        ],
      },
    })
    const refused = await run(['start', write(plan)])
    expect(refused.exitCode, refused.all).toBe(2)
    expect(refused.stderr).toContain('target.tables[0].text_template')
    expect(refused.stderr).toContain('{title} is not one of text_columns (body)')
  })

  it('without labelled queries, relevance is shown by known items; a column holding another model’s vectors fails it', async () => {
    await createDocs(200)
    const sessions = join(dir, 'sessions-known')
    const started = await run(['start', write(planFor(docs, relevance))], sessions)
    expect(started.exitCode, started.all).toBe(3)
    const judged = stateOf(sessions).criteria.find((c: { id: string }) => c.id === 'relevance')
    expect(judged).toMatchObject({ passed: true })
    expect(judged.measured).toMatch(/docs (0\.[5-9]\d|1\.00) over 30 known items/)

    // Another model's vectors (unit norm, like any model's), recorded as if they were this one's.
    await db.exec(`ALTER TABLE docs DISABLE TRIGGER USER;
      UPDATE docs SET embedding = l2_normalize((SELECT array_agg(random() - 0.5)::vector FROM generate_series(1, ${DIMS}) WHERE docs.id > 0));
      ALTER TABLE docs ENABLE TRIGGER USER`)
    const validateOnly = { ...planFor(docs, relevance), batches: chainedBatches('validate') }
    const sessions2 = join(dir, 'sessions-foreign')
    const checked = await run(['start', write(validateOnly)], sessions2)
    expect(checked.exitCode, checked.all).toBe(1)
    const failed = stateOf(sessions2).criteria.find((c: { id: string }) => c.id === 'relevance')
    expect(failed).toMatchObject({ passed: false })
    expect(failed.measured).toContain("the column holds another model's vectors")
  })
})
