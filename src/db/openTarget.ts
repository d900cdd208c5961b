import { errorMessage, WorkError } from '../errors.ts'
import type { Log } from '../log/log.ts'
import type { Plan } from '../plan/schema.ts'
import { connectPostgres } from './connectPostgres.ts'
import type { Database } from './database.ts'

// The plan decides the target: the URL in its database_url_env when that is set, the
// embedded database otherwise. The runner always says which, without the password.

export function targetUrl(plan: Plan, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const url = env[plan.target.database_url_env]
  return url && url.trim() !== '' ? url : undefined
}

export async function connectUrl(url: string, applicationName?: string): Promise<Database> {
  try {
    return await connectPostgres(url, { applicationName })
  } catch (error) {
    throw new WorkError(`cannot connect to the database (${errorMessage(error)}); check the URL and that the server is running`)
  }
}

export async function openTarget(plan: Plan, log: Log, env: NodeJS.ProcessEnv = process.env, applicationName?: string): Promise<Database> {
  const url = targetUrl(plan, env)
  if (url) {
    const db = await connectUrl(url, applicationName)
    log(`target: ${db.description} (from $${plan.target.database_url_env})`)
    return db
  }
  log(`target: embedded PostgreSQL in ${plan.target.embedded.path} ($${plan.target.database_url_env} is not set)`)
  const db = await openEmbeddedLazily(plan.target.embedded.path)
  const { ensureEmbeddedDemo } = await import('../demo/seedDemo.ts')
  await ensureEmbeddedDemo(db, plan.target.embedded, log)
  return db
}

/** The embedded database, with PGlite (a WebAssembly PostgreSQL) loaded only when it is the target. */
export async function openEmbeddedLazily(dataDir: string): Promise<Database> {
  const { openEmbedded } = await import('./openEmbedded.ts')
  return openEmbedded(dataDir)
}
