import { TargetError } from '../../errors.ts'
import type { Database, Queryable } from '../database.ts'
import { LATEST_SCHEMA_VERSION, MIGRATIONS } from './migrations.ts'
import { MIGRATIONS_TABLE, type RunnerSchema } from './objects.ts'

// Brings the runner's schema to the version this runner knows, and tells a process whether
// the schema it finds is one it can work with.

export interface SchemaVersion {
  /** 0 when the runner's schema is not installed. */
  version: number
  latest: number
}

export async function readSchemaVersion(db: Queryable, rs: RunnerSchema): Promise<SchemaVersion> {
  const access = await readSchemaAccess(db, rs)
  if (access.exists && !access.usage) throw new TargetError(`target.runner_schema: ${describeSchemaAccess(access, rs)}`)
  const { rows } = await db.query<{ exists: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS exists`, [`${rs.ident}.${MIGRATIONS_TABLE}`])
  if (!rows[0]!.exists) return { version: 0, latest: LATEST_SCHEMA_VERSION }
  const { rows: applied } = await db.query<{ version: number | null }>(`SELECT max(version)::int AS version FROM ${rs.migrations}`)
  return { version: applied[0]!.version ?? 0, latest: LATEST_SCHEMA_VERSION }
}

export interface SchemaAccess {
  exists: boolean
  owner: string | null
  role: string
  /** USAGE on the schema (true when it does not exist yet). */
  usage: boolean
  /** CREATE in the schema, or, when it does not exist yet, CREATE on the database to create it. */
  create: boolean
}

/** What the current role may do with the runner's schema: it must use it, and create in it (each capture function is replaced there). */
export async function readSchemaAccess(db: Queryable, rs: RunnerSchema): Promise<SchemaAccess> {
  const { rows } = await db.query<SchemaAccess>(
    `SELECT n.oid IS NOT NULL AS exists, pg_get_userbyid(n.nspowner)::text AS owner, current_user::text AS role,
            coalesce(has_schema_privilege(n.oid, 'USAGE'), true) AS usage,
            coalesce(has_schema_privilege(n.oid, 'CREATE'), has_database_privilege(current_database(), 'CREATE')) AS create
     FROM (SELECT 1) one LEFT JOIN pg_namespace n ON n.nspname = $1`,
    [rs.name],
  )
  return rows[0]!
}

/** Why the role cannot work in the runner's schema, naming its owner and what to grant. */
export function describeSchemaAccess(a: SchemaAccess, rs: RunnerSchema): string {
  if (!a.exists)
    return `schema ${rs.name} does not exist and role ${a.role} may not create it (CREATE on the database): GRANT CREATE ON DATABASE, or create the schema for it beforehand`
  const lacks = [!a.usage && 'USAGE', !a.create && 'CREATE'].filter(Boolean).join(' and ')
  return `schema ${rs.name} exists, owned by ${a.owner}, and role ${a.role} lacks ${lacks} on it: GRANT USAGE, CREATE ON SCHEMA ${rs.ident} TO ${a.role}, or name another target.runner_schema`
}

function newerThanKnown(rs: RunnerSchema, found: SchemaVersion): TargetError {
  return new TargetError(
    `the runner's schema "${rs.name}" is at version ${found.version}, written by a newer runner; this runner knows versions up to ${found.latest}. ` +
      'Upgrade runner on this machine (every worker too) before running it against this database',
  )
}

/** Applies the migrations this database has not run yet, in one transaction; returns the versions before and after. */
export async function migrateRunnerSchema(db: Pick<Database, 'transaction'>, rs: RunnerSchema): Promise<{ from: number; to: number }> {
  return db.transaction(async (tx) => {
    // Two installers at once: the second waits here, then finds the work done.
    await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`runner schema ${rs.name}`])
    const { rows: schema } = await tx.query<{ exists: boolean }>(
      'SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AS exists',
      [rs.name],
    )
    if (!schema[0]!.exists) await tx.exec(`CREATE SCHEMA ${rs.ident}`)
    await tx.exec(`CREATE TABLE IF NOT EXISTS ${rs.migrations} (
      version int PRIMARY KEY,
      description text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`)
    const found = await readSchemaVersion(tx, rs)
    if (found.version > found.latest) throw newerThanKnown(rs, found)
    const { rows: vector } = await tx.query<{ type: string | null }>(
      `SELECT format('%I.vector', n.nspname) AS type FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'`,
    )
    const database = { vectorType: vector[0]?.type ?? null }
    for (const migration of MIGRATIONS.filter((m) => m.version > found.version)) {
      await tx.exec(migration.sql(rs.ident, database))
      await tx.query(`INSERT INTO ${rs.migrations} (version, description) VALUES ($1, $2)`, [migration.version, migration.description])
    }
    // Only a schema the runner created itself is ever dropped by uninstall.
    if (!schema[0]!.exists) await recordCreated(tx, rs, { kind: 'schema', schema_name: rs.name, name: rs.name })
    return { from: found.version, to: LATEST_SCHEMA_VERSION }
  })
}

/**
 * For a process that uses the schema without changing it (the worker, search, status): the
 * schema must be installed and at exactly the version this runner knows.
 */
export async function requireSchemaVersion(db: Queryable, rs: RunnerSchema): Promise<void> {
  const found = await readSchemaVersion(db, rs)
  if (found.version > found.latest) throw newerThanKnown(rs, found)
  if (found.version === 0) {
    throw new TargetError(
      `the auto-embedding pipeline is not installed in this database (no schema "${rs.name}" of the runner's): run \`runner start <plan>\` first`,
    )
  }
  if (found.version < found.latest) {
    throw new TargetError(
      `the runner's schema "${rs.name}" is at version ${found.version}; this runner needs version ${found.latest}: ` +
        'run `runner start <plan>` (its pipeline batch upgrades the schema), then start the workers again',
    )
  }
}

export interface CreatedObject {
  kind: 'schema' | 'function' | 'trigger'
  schema_name: string
  name: string
  /** For a trigger: the table it is on. */
  on_table?: string
}

/** Adds an object to the runner's record of what it created (idempotent). */
export async function recordCreated(db: Queryable, rs: RunnerSchema, object: CreatedObject): Promise<void> {
  await db.query(`INSERT INTO ${rs.created} (kind, schema_name, name, on_table) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`, [
    object.kind,
    object.schema_name,
    object.name,
    object.on_table ?? '',
  ])
}

export async function readCreated(db: Queryable, rs: RunnerSchema): Promise<CreatedObject[]> {
  const { rows } = await db.query<CreatedObject>(
    `SELECT kind, schema_name, name, nullif(on_table, '') AS on_table FROM ${rs.created} ORDER BY created_at, kind, name`,
  )
  return rows.map((r) => ({ ...r, on_table: r.on_table ?? undefined }))
}
