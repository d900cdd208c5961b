import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import { UsageError } from '../errors.ts'
import type { LoadedPlan } from '../plan/loadPlan.ts'
import type { Batch } from '../plan/schema.ts'
import { redactSecrets } from './redactSecrets.ts'
import { diskError, writeFileAtomic, writeJsonAtomic } from './writeFileAtomic.ts'

// The session folder is the whole record of one run of a plan (sessions/README.md explains
// its layout for reviewers). coordination-state.json says where each batch is,
// batch-progress.json holds the cursors inside batches, events.ndjson is append-only.

export type BatchStatus = 'pending' | 'running' | 'completed' | 'failed' | 'interrupted'

export interface BatchState {
  id: string
  title: string
  step: string
  agent: string
  status: BatchStatus
  attempts: number
  started_at?: string
  ended_at?: string
  error?: string
  summary?: string
  /** Relative to the session folder. */
  output_path?: string
  report_path?: string
}

export interface CriterionResult {
  id: string
  description: string
  threshold: string
  measured: string
  passed: boolean
}

export interface SessionState {
  version: 1
  session_id: string
  feature_id: string
  plan_path: string
  plan_sha256: string
  target?: string
  created_at: string
  updated_at: string
  status: 'running' | 'completed' | 'failed' | 'interrupted'
  batches: BatchState[]
  criteria?: CriterionResult[]
}

type Progress = Record<string, { cursor: unknown; updated_at: string }>

const STATE_FILE = 'coordination-state.json'
const PROGRESS_FILE = 'batch-progress.json'

export class Session {
  private constructor(
    readonly dir: string,
    public state: SessionState,
    private progress: Progress,
  ) {}

  static create(sessionsRoot: string, loaded: LoadedPlan, orderedBatches: Batch[]): Session {
    const now = new Date()
    const id = `${now.toISOString().replace(/[:.]/g, '-')}-${loaded.plan.id}`
    const dir = resolve(sessionsRoot, id)
    mkdirSync(join(dir, 'batches'), { recursive: true })
    const state: SessionState = {
      version: 1,
      session_id: id,
      feature_id: loaded.plan.id,
      plan_path: resolve(loaded.path),
      plan_sha256: loaded.sha256,
      created_at: now.toISOString(),
      updated_at: now.toISOString(),
      status: 'running',
      batches: orderedBatches.map((b) => ({ id: b.id, title: b.title, step: b.step, agent: b.agent, status: 'pending', attempts: 0 })),
    }
    const session = new Session(dir, state, {})
    session.saveState()
    writeJsonAtomic(join(dir, PROGRESS_FILE), {})
    return session
  }

  static open(dir: string): Session {
    const statePath = join(dir, STATE_FILE)
    if (!existsSync(statePath)) throw new UsageError(`${dir} is not a session folder (no ${STATE_FILE})`)
    const readJson = (file: string) => {
      try {
        return JSON.parse(readFileSync(join(dir, file), 'utf8'))
      } catch (error) {
        throw new UsageError(`${join(dir, file)}: cannot read it (${(error as Error).message})`)
      }
    }
    const progress = existsSync(join(dir, PROGRESS_FILE)) ? (readJson(PROGRESS_FILE) as Progress) : {}
    return new Session(resolve(dir), readJson(STATE_FILE) as SessionState, progress)
  }

  /** The newest session folder under root, optionally only among unfinished ones. */
  static findLatest(sessionsRoot: string, options: { unfinished?: boolean } = {}): string | undefined {
    if (!existsSync(sessionsRoot)) return undefined
    const candidates = readdirSync(sessionsRoot)
      .filter((name) => existsSync(join(sessionsRoot, name, STATE_FILE)))
      .sort()
      .reverse()
    for (const name of candidates) {
      const dir = join(sessionsRoot, name)
      if (!options.unfinished) return dir
      const state = JSON.parse(readFileSync(join(dir, STATE_FILE), 'utf8')) as SessionState
      if (state.status !== 'completed') return dir
    }
    return undefined
  }

  batch(id: string): BatchState {
    const found = this.state.batches.find((b) => b.id === id)
    if (!found) throw new Error(`no batch ${id} in session ${this.dir}`)
    return found
  }

  updateBatch(id: string, patch: Partial<BatchState>): void {
    Object.assign(this.batch(id), patch)
    this.saveState()
  }

  saveState(): void {
    this.state.updated_at = new Date().toISOString()
    writeFileAtomic(join(this.dir, STATE_FILE), redactSecrets(`${JSON.stringify(this.state, null, 2)}\n`))
  }

  /** batches/02-index */
  batchDir(id: string): string {
    const position = this.state.batches.findIndex((b) => b.id === id) + 1
    const dir = join(this.dir, 'batches', `${String(position).padStart(2, '0')}-${id}`)
    mkdirSync(dir, { recursive: true })
    return dir
  }

  /** Writes a file of the session atomically, with secrets redacted; returns its path relative to the session. */
  writeArtifact(path: string, content: string): string {
    const full = resolve(this.dir, path)
    mkdirSync(join(full, '..'), { recursive: true })
    writeFileAtomic(full, redactSecrets(content))
    return relative(this.dir, full)
  }

  readArtifact(path: string): string {
    return readFileSync(resolve(this.dir, path), 'utf8')
  }

  cursor<T>(batchId: string): T | undefined {
    return this.progress[batchId]?.cursor as T | undefined
  }

  saveCursor(batchId: string, cursor: unknown): void {
    this.progress[batchId] = { cursor, updated_at: new Date().toISOString() }
    writeFileAtomic(join(this.dir, PROGRESS_FILE), redactSecrets(`${JSON.stringify(this.progress, null, 2)}\n`))
  }

  event(type: string, data: Record<string, unknown> = {}): void {
    const line = JSON.stringify({ at: new Date().toISOString(), type, ...data })
    const path = join(this.dir, 'events.ndjson')
    try {
      appendFileSync(path, `${redactSecrets(line)}\n`)
    } catch (error) {
      throw diskError(path, error)
    }
  }
}
