import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, relative, resolve } from 'node:path'
import { execa } from 'execa'
import { z } from 'zod'
import { findInVirtualEnv, pythonString } from '../../appSource/python.ts'
import type { Target } from '../../db/target.ts'
import type { Plan } from '../../plan/schema.ts'
import type { QueryMeasurement, TableValidation } from './output.ts'
import { probeInsertSql } from './probeAutoEmbedding.ts'

// The seed's fourth batch writes tests for semantic search into the application's suite, so
// the team keeps it fixed with its own tools. The file asserts what validate proved, measured
// again where the tests run: every row with text embedded, the HNSW index with its operator
// class and valid, each application query served by the index at the application's settings,
// a row found by its own vector, and (when a worker was deployed) a new row embedded within the
// plan's bound. It needs a PostgreSQL driver (psycopg 3 or psycopg2) and pytest, nothing of
// the runner's; it connects with the application's database URL, as the application's role.

export const appTestsResultSchema = z.object({
  /** The file written, relative to the folder the runner ran in. */
  path: z.string(),
  framework: z.literal('pytest'),
  /** The application's test runner as found (a .venv beside the tests, else python3 on PATH), or null. */
  command: z.string().nullable(),
  ran: z.boolean(),
  passed: z.number().int(),
  failed: z.number().int(),
  skipped: z.number().int(),
  exit_code: z.number().int().nullable(),
  /** Why it did not run, or the last lines of its output. */
  detail: z.string(),
})
export type AppTestsResult = z.infer<typeof appTestsResultSchema>

/** A Python literal for a JSON value (true/false/null spelled the Python way), one item a line. */
function pyLiteral(value: unknown, indent = ''): string {
  if (value === null || value === undefined) return 'None'
  if (value === true) return 'True'
  if (value === false) return 'False'
  const inner = `${indent}    `
  if (Array.isArray(value)) return value.length ? `[\n${value.map((v) => `${inner}${pyLiteral(v, inner)},`).join('\n')}\n${indent}]` : '[]'
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
    return entries.length
      ? `{\n${entries.map(([k, v]) => `${inner}${pythonString(k)}: ${pyLiteral(v, inner)},`).join('\n')}\n${indent}}`
      : '{}'
  }
  return JSON.stringify(value) // a string or a number: the same in Python
}

/** $1, $2 … as the DB-API's named placeholders (both psycopg and psycopg2 take them); a literal % doubled. */
const dbapi = (sql: string) => sql.replace(/%/g, '%%').replace(/\$(\d+)(?!\d)/g, '%(p$1)s')

interface QuerySpec {
  name: string
  sql: string
  /** The query's parameters after the vector ($2 …). */
  params: unknown[]
  settings: string[]
  index: string | null
}

function querySpec(q: QueryMeasurement, params: unknown[]): QuerySpec {
  const s = q.at_default.setting
  return {
    name: q.name,
    sql: dbapi(q.sql),
    params,
    settings: [
      `SET LOCAL hnsw.ef_search = ${s.ef_search}`,
      ...(s.iterative_scan !== 'off' ? [`SET LOCAL hnsw.iterative_scan = ${s.iterative_scan}`] : []),
    ],
    index: q.at_default.index_name,
  }
}

export function renderPytest(plan: Plan, targets: Target[], tables: TableValidation[], workerDeployed: boolean): string {
  const specs = targets.flatMap((t) => {
    const v = tables.find((x) => x.table === t.name)
    if (!v?.index.name) return []
    const planQueries = t.plan.queries ?? []
    const queries = [
      ...(v.latency ? [querySpec(v.latency, [10])] : []),
      ...v.app_queries.map((q) => querySpec(q, planQueries.find((p) => p.name === q.name)?.params ?? [])),
    ]
    const insert = probeInsertSql(t)
    return [
      {
        table: t.name,
        column: t.plan.embedding_column,
        index_schema: t.plan.schema,
        index: v.index.name,
        opclass: v.index.opclass,
        missing_sql: dbapi(`SELECT count(*) FROM ${t.table} WHERE ${t.embedding} IS NULL AND ${t.hasText()}`),
        sample_sql: dbapi(
          `SELECT ${t.keyText()} AS key, ${t.embedding}::text FROM ${t.table} WHERE ${t.embedding} IS NOT NULL ORDER BY ${t.keyOrder()} LIMIT 1`,
        ),
        insert_sql: 'sql' in insert ? dbapi(insert.sql) : null,
        insert_refused: 'reason' in insert ? insert.reason : null,
        embedded_sql: dbapi(`SELECT ${t.embedding} IS NOT NULL FROM ${t.table} WHERE ${t.keyValue()} = ${t.keyOf('$1::text')}`),
        delete_sql: dbapi(`DELETE FROM ${t.table} WHERE ${t.keyValue()} = ${t.keyOf('$1::text')}`),
        queries,
      },
    ]
  })
  const bound = plan.criteria.auto_embed_within_seconds ?? 10
  return `"""Semantic search, as runner's validate batch proved it: kept true by the application's own suite.

Written by runner (plan ${plan.id}); each validate writes it again from what it measured. Run it with
\`pytest ${'{'}this file${'}'}\`. It needs a PostgreSQL driver (psycopg 3 or psycopg2) and pytest, and
connects with $${plan.target.database_url_env}: point it at a database where runner ran, as the
application's own role. What it asserts, per table: every row with text has an embedding; the
HNSW index exists with its operator class and is valid; each search query of the application
is served by that index at the application's settings; a row is found by its own vector; and,
when a worker was deployed, a new row is embedded within ${bound} s (the row is inserted, then
deleted).
"""
import os
import time

import pytest

try:
    import psycopg as driver
except ImportError:  # psycopg2 takes the same placeholders
    import psycopg2 as driver

DATABASE_URL_ENV = ${pythonString(plan.target.database_url_env)}
WORKER_DEPLOYED = ${pyLiteral(workerDeployed)}
EMBEDDED_WITHIN_SECONDS = ${bound}
TABLES = ${pyLiteral(specs)}


@pytest.fixture(scope="module")
def db():
    url = os.environ.get(DATABASE_URL_ENV)
    if not url:
        pytest.skip(f"\${DATABASE_URL_ENV} is not set: these tests read the application's database")
    connection = driver.connect(url)
    connection.autocommit = True
    yield connection
    connection.close()


def one(db, sql, params=None):
    with db.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()


def ids(table):
    return f"{table['table']}"


def index_names(plan):
    """Every index an EXPLAIN (FORMAT JSON) plan reads."""
    found = set()
    stack = [plan]
    while stack:
        node = stack.pop()
        if "Index Name" in node:
            found.add(node["Index Name"])
        stack.extend(node.get("Plans", []))
    return found


@pytest.mark.parametrize("table", TABLES, ids=ids)
def test_every_row_with_text_is_embedded(db, table):
    # New rows may be in flight to the worker: they have until the bound.
    deadline = time.monotonic() + (EMBEDDED_WITHIN_SECONDS if WORKER_DEPLOYED else 0)
    while True:
        (missing,) = one(db, table["missing_sql"])
        if missing == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert missing == 0, f"{table['table']}.{table['column']}: {missing} row(s) with text have no embedding"


@pytest.mark.parametrize("table", TABLES, ids=ids)
def test_hnsw_index_is_valid_with_its_operator_class(db, table):
    row = one(
        db,
        """SELECT i.indisvalid, am.amname, opc.opcname
           FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_am am ON am.oid = c.relam JOIN pg_opclass opc ON opc.oid = i.indclass[0]
           WHERE n.nspname = %(schema)s AND c.relname = %(index)s""",
        {"schema": table["index_schema"], "index": table["index"]},
    )
    assert row is not None, f"{table['index']} is missing on {table['table']}"
    valid, method, opclass = row
    assert method == "hnsw"
    assert valid, f"{table['index']} is invalid (a failed build): REINDEX INDEX CONCURRENTLY it"
    if table["opclass"]:
        assert opclass == table["opclass"]


def query_vector(db, table):
    row = one(db, table["sample_sql"])
    if row is None:
        pytest.skip(f"{table['table']} has no embedded row to search with")
    return row


QUERIES = [(t, q) for t in TABLES for q in t["queries"]]


@pytest.mark.parametrize("table,query", QUERIES, ids=[f"{t['table']}-{q['name']}" for t, q in QUERIES])
def test_query_is_served_by_the_index_at_the_application_settings(db, table, query):
    _, vector = query_vector(db, table)
    params = {"p1": vector, **{f"p{i + 2}": v for i, v in enumerate(query["params"])}}
    with db.transaction() if hasattr(db, "transaction") else _transaction(db):
        with db.cursor() as cur:
            for statement in query["settings"]:
                cur.execute(statement)
            cur.execute("EXPLAIN (FORMAT JSON) " + query["sql"], params)
            (explained,) = cur.fetchone()
    plan = (explained if isinstance(explained, list) else __import__("json").loads(explained))[0]["Plan"]
    used = index_names(plan)
    assert used, f"{query['name']} on {table['table']} is a sequential scan at {'; '.join(query['settings'])}"
    if query["index"]:
        assert query["index"] in used, f"{query['name']} reads {sorted(used)}, not {query['index']}"


class _transaction:
    """psycopg2 has no connection.transaction(): BEGIN … ROLLBACK by hand (SET LOCAL needs a transaction)."""

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.autocommit = False

    def __exit__(self, *exc):
        self.db.rollback()
        self.db.autocommit = True


@pytest.mark.parametrize("table", TABLES, ids=ids)
def test_a_row_is_found_by_its_own_vector(db, table):
    key, vector = query_vector(db, table)
    if not table["queries"]:
        pytest.skip("no query to search with")
    query = table["queries"][0]
    params = {"p1": vector, **{f"p{i + 2}": v for i, v in enumerate(query["params"])}}
    with db.cursor() as cur:
        cur.execute(query["sql"], params)
        keys = [str(r[0]) for r in cur.fetchall()]
    assert str(key) in keys, f"{table['table']} row {key} is not among the nearest rows to its own vector"


@pytest.mark.parametrize("table", TABLES, ids=ids)
def test_a_new_row_is_embedded_by_the_worker(db, table):
    if not WORKER_DEPLOYED:
        pytest.skip("no worker was deployed when runner validated: deploy \`runner worker <plan>\`, then run validate again")
    if table["insert_sql"] is None:
        pytest.skip(table["insert_refused"])
    (key,) = one(db, table["insert_sql"], {"p1": f"runner pytest probe {time.time()}"})
    try:
        deadline = time.monotonic() + EMBEDDED_WITHIN_SECONDS
        while not one(db, table["embedded_sql"], {"p1": str(key)})[0]:
            assert time.monotonic() < deadline, f"{table['table']} row {key}: no embedding after {EMBEDDED_WITHIN_SECONDS} s; is the worker running?"
            time.sleep(0.1)
    finally:
        one_or_none = db.cursor()
        one_or_none.execute(table["delete_sql"], {"p1": str(key)})
        one_or_none.close()
`
}

export async function writeAndRunAppTests(
  plan: Plan,
  targets: Target[],
  tables: TableValidation[],
  workerDeployed: boolean,
  log: (m: string) => void,
): Promise<AppTestsResult> {
  const options = plan.target.app_tests!
  const path = resolve(options.path)
  mkdirSync(dirname(path), { recursive: true })
  writeFileSync(path, renderPytest(plan, targets, tables, workerDeployed))
  const shown = relative(process.cwd(), path)
  log(`  wrote the application's tests: ${shown}`)
  const base = { path: shown, framework: 'pytest' as const, passed: 0, failed: 0, skipped: 0 }
  if (!options.run) return { ...base, command: null, ran: false, exit_code: null, detail: 'not run (app_tests.run: false)' }
  // pytest as the application runs it: its virtual environment in the test file's folder or above, else python3 on PATH.
  const found = findInVirtualEnv(dirname(path), 'python', true)
  const python = found?.path ?? 'python3'
  const cwd = found?.folder ?? dirname(path)
  const url = process.env[options.database_url_env ?? plan.target.database_url_env]
  if (!url)
    return {
      ...base,
      command: null,
      ran: false,
      exit_code: null,
      detail: `$${options.database_url_env ?? plan.target.database_url_env} is not set`,
    }
  const env = { [plan.target.database_url_env]: url }
  const result = await execa(python, ['-m', 'pytest', '-q', '-p', 'no:cacheprovider', path], { cwd, reject: false, all: true, env })
  const output = (result.all ?? '').trim()
  if (/No module named pytest/.test(output))
    return { ...base, command: `${python} -m pytest`, ran: false, exit_code: null, detail: `pytest is not installed for ${python}` }
  const count = (word: string) => Number(new RegExp(`(\\d+) ${word}`).exec(output)?.[1] ?? 0)
  const tally = { passed: count('passed'), failed: count('failed') + count('error'), skipped: count('skipped') }
  log(`  the application's tests: ${tally.passed} passed, ${tally.failed} failed, ${tally.skipped} skipped (${python} -m pytest ${shown})`)
  return {
    ...base,
    ...tally,
    command: `${python} -m pytest ${shown}`,
    ran: true,
    exit_code: result.exitCode ?? null,
    detail: output.split('\n').slice(-8).join('\n'),
  }
}
