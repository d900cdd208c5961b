import { createHash } from 'node:crypto'
import { pythonString as python } from '../appSource/python.ts'
import { quoteIdent } from '../db/quote.ts'
import { CAPTURE_TRIGGER, captureFunctionName, DEQUEUE_TRIGGER, type RunnerSchema } from '../db/runnerSchema/objects.ts'
import { MIGRATIONS } from '../db/runnerSchema/migrations.ts'
import type { Target } from '../db/target.ts'
import { captureFunctionSql, captureTriggerSql } from './installPipeline.ts'

// The capture as an Alembic revision of its own (target.alembic.capture_revision), so that a
// database the application builds from scratch with `alembic upgrade head` gets it: the
// runner's schema at this runner's version, each table's capture function and its triggers.
// Every part is skipped where it is already there, so on a database where the pipeline batch
// installed it the revision only records itself. Statements run through the driver's own
// cursor, with no parameters: nothing in them is taken for a placeholder.

export function captureRevisionId(rs: RunnerSchema, targets: Target[], vectorSchema: string): string {
  const text = [rs.name, ...targets.map((t) => captureFunctionSql(rs, t, vectorSchema))].join('\n')
  return createHash('sha256').update(text).digest('hex').slice(0, 12)
}

export function captureRevision(
  rs: RunnerSchema,
  targets: Target[],
  vectorSchema: string,
  ids: { revision: string; downRevision: string | null; createdAt: string },
): string {
  const vectorType = `${quoteIdent(vectorSchema)}.vector`
  const migrations = MIGRATIONS.map((m) => `    (${m.version}, ${python(m.description)}, ${python(m.sql(rs.ident, { vectorType }))}),`)
  const functions = targets.map((t) => `    ${python(captureFunctionSql(rs, t, vectorSchema))},`)
  const triggers = targets.flatMap((t) =>
    Object.entries(captureTriggerSql(rs, t)).map(
      ([name, sql]) =>
        `    (${python(t.plan.schema)}, ${python(t.plan.table)}, ${python(name)}, ${python(sql)}, ${python(`DROP TRIGGER IF EXISTS ${quoteIdent(name)} ON ${t.table}`)}),`,
    ),
  )
  const created = [
    `    ("schema", ${python(rs.name)}, ${python(rs.name)}, ""),`,
    ...targets.map((t) => `    ("function", ${python(rs.name)}, ${python(captureFunctionName(t.plan))}, ""),`),
    ...targets.flatMap((t) =>
      [CAPTURE_TRIGGER, DEQUEUE_TRIGGER].map(
        (name) => `    ("trigger", ${python(t.plan.schema)}, ${python(name)}, ${python(t.plan.table)}),`,
      ),
    ),
  ]
  const dropFunctions = targets.map((t) => `    ${python(`DROP FUNCTION IF EXISTS ${rs.captureFunction(t.plan)}()`)},`)
  return `"""runner: the auto-embedding capture (its schema, capture functions and triggers)

Revision ID: ${ids.revision}
Revises: ${ids.downRevision ?? ''}
Create Date: ${ids.createdAt}

Written by runner's pipeline batch. \`runner worker\` embeds what these triggers queue.
"""
from alembic import op

revision = ${python(ids.revision)}
down_revision = ${ids.downRevision ? python(ids.downRevision) : 'None'}
branch_labels = None
depends_on = None

SCHEMA = ${python(rs.ident)}
MIGRATIONS_TABLE = ${python(rs.migrations)}
CREATED_TABLE = ${python(rs.created)}
# (version, description, SQL) of the runner's schema, each applied once.
MIGRATIONS = [
${migrations.join('\n')}
]
FUNCTIONS = [
${functions.join('\n')}
]
# (schema, table, trigger, CREATE, DROP)
TRIGGERS = [
${triggers.join('\n')}
]
# What runner created, as its record lists it (\`runner pipeline uninstall\` removes only these).
CREATED = [
${created.join('\n')}
]
DROP_FUNCTIONS = [
${dropFunctions.join('\n')}
]


def run(sql, params=None):
    cursor = op.get_bind().connection.cursor()
    try:
        cursor.execute(sql, params) if params is not None else cursor.execute(sql)
        return cursor.fetchall() if cursor.description else []
    finally:
        cursor.close()


def upgrade():
    run(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    run(f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (version int PRIMARY KEY, description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
    done = {row[0] for row in run(f"SELECT version FROM {MIGRATIONS_TABLE}")}
    for version, description, sql in MIGRATIONS:
        if version not in done:
            run(sql)
            run(f"INSERT INTO {MIGRATIONS_TABLE} (version, description) VALUES (%s, %s)", (version, description))
    for sql in FUNCTIONS:
        run(sql)
    for schema, table, name, create, _ in TRIGGERS:
        found = run(
            "SELECT 1 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s AND t.tgname = %s",
            (schema, table, name),
        )
        if not found:
            run(create)
    for kind, schema, name, on_table in CREATED:
        run(f"INSERT INTO {CREATED_TABLE} (kind, schema_name, name, on_table) VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING", (kind, schema, name, on_table))


def downgrade():
    # The triggers and functions go; the schema stays with the queue and the record of which
    # model embedded each column (\`runner pipeline uninstall\` removes it).
    for _, _, _, _, drop in TRIGGERS:
        run(drop)
    for sql in DROP_FUNCTIONS:
        run(sql)
`
}
