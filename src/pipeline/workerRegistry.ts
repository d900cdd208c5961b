import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import type { Queryable } from '../db/database.ts'
import { readSchemaVersion } from '../db/runnerSchema/migrateRunnerSchema.ts'
import type { RunnerSchema } from '../db/runnerSchema/objects.ts'
import { RUNNER_VERSION } from '../version.ts'

// Workers register in the runner's schema and beat: "workers running" anywhere (diagnose,
// validate, uninstall) means registered in this database with a fresh heartbeat. Each beat
// also renews the leases of the jobs the worker holds, so a batch slower than the lease is
// not taken from a live worker; a worker silent for three beats is dead, and its jobs are
// claimed by others at once.

/** Beats a worker may miss before it is taken for dead. */
export const MISSED_BEATS = 3

export interface WorkerRecord {
  worker_id: string
  host: string
  pid: number
  version: string
  model: string
  started_at: string
  seconds_since_seen: number
}

/** host:pid:random, unique among the workers of every machine. */
export function newWorkerId(): string {
  return `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`
}

export async function registerWorker(db: Queryable, rs: RunnerSchema, workerId: string, model: string): Promise<void> {
  await db.query(
    `INSERT INTO ${rs.workers} (worker_id, host, pid, version, model) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (worker_id) DO UPDATE SET last_seen = now()`,
    [workerId, hostname(), process.pid, RUNNER_VERSION, model],
  )
}

/** I am alive, and still working on the jobs I hold. */
export async function beat(db: Queryable, rs: RunnerSchema, workerId: string): Promise<void> {
  await db.query(
    `WITH seen AS (UPDATE ${rs.workers} SET last_seen = now() WHERE worker_id = $1)
     UPDATE ${rs.queue} SET locked_at = now() WHERE locked_by = $1`,
    [workerId],
  )
}

export async function unregisterWorker(db: Queryable, rs: RunnerSchema, workerId: string): Promise<void> {
  await db.query(`DELETE FROM ${rs.workers} WHERE worker_id = $1`, [workerId])
}

/** The workers with a fresh heartbeat; none where the registry is not installed. */
export async function liveWorkers(db: Queryable, rs: RunnerSchema, heartbeatSeconds: number): Promise<WorkerRecord[]> {
  if ((await readSchemaVersion(db, rs)).version < 3) return []
  const { rows } = await db.query<WorkerRecord>(
    `SELECT worker_id, host, pid, version, model, started_at::text, extract(epoch FROM now() - last_seen)::float8 AS seconds_since_seen
     FROM ${rs.workers} WHERE last_seen > now() - make_interval(secs => $1) ORDER BY started_at`,
    [heartbeatSeconds * MISSED_BEATS],
  )
  return rows
}
