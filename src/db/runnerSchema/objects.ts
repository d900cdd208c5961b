import type { TargetTable } from '../../plan/schema.ts'
import { fitIdentifier, quoteIdent } from '../quote.ts'

// The names of everything the runner creates in a target database, in one place. All of it
// lives in the plan's runner_schema, except the two capture triggers on each target table.
// The schema name is escaped once here; nothing else from a plan is ever interpolated.

export const QUEUE_TABLE = 'embedding_queue'
export const FAILED_TABLE = 'embedding_failures'
export const META_TABLE = 'embedding_meta'
/** Which migrations have run: its presence marks the schema as the runner's. */
export const MIGRATIONS_TABLE = 'schema_migrations'
/** What the runner created beyond its own tables (schema, capture functions, triggers). */
export const CREATED_TABLE = 'created_objects'
/** The model and dimensions each target column is embedded with. */
export const MODELS_TABLE = 'column_models'
/** The workers running against this database, with their heartbeats. */
export const WORKERS_TABLE = 'workers'
/** Batches the backfill has embedded and not yet written: a crash does not embed them again. */
export const STAGING_TABLE = 'embedding_staging'
/** The tables of the runner's schema, in the order uninstall drops them. */
export const RUNNER_TABLES = [
  QUEUE_TABLE,
  FAILED_TABLE,
  META_TABLE,
  STAGING_TABLE,
  MODELS_TABLE,
  WORKERS_TABLE,
  CREATED_TABLE,
  MIGRATIONS_TABLE,
] as const

/** BEFORE INSERT OR UPDATE OF the text columns: nulls the stale embedding and queues the row. */
export const CAPTURE_TRIGGER = 'runner_enqueue_embedding'
/** AFTER DELETE: removes the row's queue entry and metadata. */
export const DEQUEUE_TRIGGER = 'runner_dequeue_embedding'
export const TRIGGER_NAMES = [CAPTURE_TRIGGER, DEQUEUE_TRIGGER] as const

/** application_name of `runner worker` connections. */
export const WORKER_APPLICATION_NAME = 'runner worker'

export interface RunnerSchema {
  name: string
  /** The schema name, quoted. */
  ident: string
  queue: string
  failed: string
  meta: string
  migrations: string
  created: string
  models: string
  workers: string
  staging: string
  /** The NOTIFY channel the capture triggers wake the workers on. */
  channel: string
  /** The capture trigger function of one target table, qualified and quoted. */
  captureFunction(t: Pick<TargetTable, 'schema' | 'table'>): string
}

export function runnerSchema(name: string): RunnerSchema {
  const ident = quoteIdent(name)
  const qualified = (object: string) => `${ident}.${quoteIdent(object)}`
  return {
    name,
    ident,
    queue: qualified(QUEUE_TABLE),
    failed: qualified(FAILED_TABLE),
    meta: qualified(META_TABLE),
    migrations: qualified(MIGRATIONS_TABLE),
    created: qualified(CREATED_TABLE),
    models: qualified(MODELS_TABLE),
    workers: qualified(WORKERS_TABLE),
    staging: qualified(STAGING_TABLE),
    channel: `${name}_embedding`,
    captureFunction: (t) => qualified(captureFunctionName(t)),
  }
}

export function captureFunctionName(t: Pick<TargetTable, 'schema' | 'table'>): string {
  return fitIdentifier(`enqueue_${t.schema}_${t.table}`)
}
