import { makeOwnDirFor } from '../ownDirs.ts'
import { createHash } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import type { Database } from '../db/database.ts'
import type { Log } from '../log/log.ts'
import { type DemoInitResult, demoExists, initDemo } from './initDemo.ts'

// The one way the demo application gets into a database: `runner demo init` and the embedded
// default of `runner start` both seed through here, and write the labelled queries the
// validate batch finds for that target.

/**
 * Where the demo's labelled queries for one target live: the ids are that database's, so
 * each target has its own file (named after its description, which holds no password).
 */
export function demoLabelsPath(folder: string, targetDescription: string): string {
  return join(folder, `demo-labelled-queries-${createHash('sha256').update(targetDescription).digest('hex').slice(0, 12)}.json`)
}

export async function seedDemo(
  db: Database,
  rows: number,
  labelsPath: string,
  onProgress?: (done: number, total: number) => void,
): Promise<DemoInitResult> {
  const result = await initDemo(db, rows, onProgress)
  if (result.created) {
    makeOwnDirFor(labelsPath)
    writeFileSync(labelsPath, `${JSON.stringify(result.labels, null, 2)}\n`)
  }
  return result
}

/** The embedded database of a plan with no DATABASE_URL: the demo app, seeded on first use. */
export async function ensureEmbeddedDemo(db: Database, embedded: { path: string; demo_rows: number }, log: Log): Promise<void> {
  if (await demoExists(db)) return
  log(`creating the demo application in its broken state: ${embedded.demo_rows} rows, embeddings all NULL, no index`)
  await seedDemo(db, embedded.demo_rows, demoLabelsPath(dirname(embedded.path), db.description))
}
