import { createHash } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { initDemo, demoExists } from '../demo/initDemo.ts'
import { errorMessage, WorkError } from '../errors.ts'
import type { Plan } from '../plan/schema.ts'
import { connectPostgres } from './connectPostgres.ts'
import type { Database } from './database.ts'
import { openEmbedded } from './openEmbedded.ts'

// The plan decides the target: the URL in its database_url_env when that is set, the
// embedded database otherwise. The runner always says which, without the password.

export function targetUrl(plan: Plan, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const url = env[plan.target.database_url_env]
  return url && url.trim() !== '' ? url : undefined
}

/**
 * Where the demo's labelled queries for one target live: the ids are that database's, so
 * each target has its own file (named after its description, which holds no password).
 */
export function demoLabelsPath(folder: string, targetDescription: string): string {
  return join(folder, `demo-labelled-queries-${createHash('sha256').update(targetDescription).digest('hex').slice(0, 12)}.json`)
}

export async function connectUrl(url: string, applicationName?: string): Promise<Database> {
  try {
    return await connectPostgres(url, { applicationName })
  } catch (error) {
    throw new WorkError(`cannot connect to the database (${errorMessage(error)}); check the URL and that the server is running`)
  }
}

export async function openTarget(
  plan: Plan,
  log: (message: string) => void,
  env: NodeJS.ProcessEnv = process.env,
  applicationName?: string,
): Promise<Database> {
  const url = targetUrl(plan, env)
  if (url) {
    const db = await connectUrl(url, applicationName)
    log(`target: ${db.description} (from $${plan.target.database_url_env})`)
    return db
  }
  const { path, demo_rows } = plan.target.embedded
  log(`target: embedded PostgreSQL in ${path} ($${plan.target.database_url_env} is not set)`)
  const db = await openEmbedded(path)
  if (!(await demoExists(db))) {
    log(`creating the demo application in its broken state: ${demo_rows} rows, embeddings all NULL, no index`)
    const result = await initDemo(db, demo_rows)
    const labelsPath = demoLabelsPath(dirname(path), db.description)
    mkdirSync(dirname(labelsPath), { recursive: true })
    writeFileSync(labelsPath, `${JSON.stringify(result.labels, null, 2)}\n`)
  }
  return db
}
