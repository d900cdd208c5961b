import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { PGlite } from '@electric-sql/pglite'

// A new embedded database starts from a dump of a freshly initialized data folder, written once
// by the build (`npm run build`, which `npm install` runs). PGlite's own initdb runs a second
// WebAssembly instance beside the database's and peaks near 800 MB; loading the dump peaks near
// 360 MB and takes half the time (bench/firstRun.ts). The dump holds what initdb writes and
// nothing else, so a folder made from it is the folder initdb would have made; it is used only
// with the PGlite version that wrote it, and without it PGlite's initdb runs as before.

/** The package's dist/, found from src/db or dist/db alike. */
const DIST = fileURLToPath(new URL('../../dist/', import.meta.url))
const dump = (dir: string) => join(dir, 'embedded-template.tar.gz')
const manifest = (dir: string) => join(dir, 'embedded-template.json')

function installedPGliteVersion(): string {
  const require = createRequire(import.meta.url)
  const main = require.resolve('@electric-sql/pglite')
  // The package's main file is in dist/; its package.json one folder up.
  return JSON.parse(readFileSync(join(main, '..', '..', 'package.json'), 'utf8')).version
}

/** The dump to start a new folder from, if the build wrote one with the PGlite this process loads. */
export function readEmbeddedTemplate(dir = DIST): Blob | undefined {
  if (!existsSync(dump(dir)) || !existsSync(manifest(dir))) return undefined
  const { pglite } = JSON.parse(readFileSync(manifest(dir), 'utf8')) as { pglite?: string }
  if (pglite !== installedPGliteVersion()) return undefined
  return new Blob([readFileSync(dump(dir))])
}

/** Runs PGlite's initdb once in a scratch folder and keeps the dump (the build's last step). */
export async function writeEmbeddedTemplate(dir = DIST): Promise<void> {
  const scratch = mkdtempSync(join(tmpdir(), 'runner-template-'))
  try {
    const db = await PGlite.create(scratch)
    const data = await db.dumpDataDir('gzip')
    await db.close()
    mkdirSync(dir, { recursive: true })
    writeFileSync(dump(dir), Buffer.from(await data.arrayBuffer()))
    writeFileSync(manifest(dir), `${JSON.stringify({ pglite: installedPGliteVersion() })}\n`)
  } finally {
    rmSync(scratch, { recursive: true, force: true })
  }
}
