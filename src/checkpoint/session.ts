import { makeOwnDir } from '../ownDirs.ts'
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import type { z } from 'zod'
import { UsageError } from '../errors.ts'
import type { LoadedPlan } from '../plan/loadPlan.ts'
import type { Batch } from '../plan/schema.ts'
import { redactSecrets } from './redactSecrets.ts'
import {
  type BatchState,
  type CheckIn,
  type CriterionResult,
  type ProgressEntries,
  progressSchema,
  READABLE_STATE_VERSIONS,
  type SessionOptions,
  type SessionState,
  type SessionStatus,
  STATE_VERSION,
  sessionStateSchema,
  upgradeState,
} from './sessionState.ts'
import { diskError, writeFileAtomic } from './writeFileAtomic.ts'

// The session folder is the whole record of one run of a plan (sessions/README.md explains
// its layout for reviewers). coordination-state.json says where each batch is,
// batch-progress.json holds the cursors inside batches, events.ndjson is append-only. The
// state changes only through the methods below, each of which writes it atomically.

export type { BatchState, CriterionResult, SessionState }

/** A step's cursor format: its version, and the schema a stored cursor must match. */
export interface CursorSpec<C> {
  version: number
  schema: z.ZodType<C>
}

const STATE_FILE = 'coordination-state.json'
const PROGRESS_FILE = 'batch-progress.json'

export class Session {
  private constructor(
    readonly dir: string,
    private current: SessionState,
    private progress: ProgressEntries,
  ) {}

  /** The state as last saved; change it through the methods below. */
  get state(): Readonly<SessionState> {
    return this.current
  }

  /** A new session's id: its UTC start time and the feature, which also names its folder. */
  static newId(featureId: string, now = new Date()): string {
    return `${now.toISOString().replace(/[:.]/g, '-')}-${featureId}`
  }

  static create(
    sessionsRoot: string,
    loaded: LoadedPlan,
    orderedBatches: Batch[],
    options: SessionOptions = {},
    id = Session.newId(loaded.plan.id),
  ): Session {
    const now = new Date()
    const dir = resolve(sessionsRoot, id)
    makeOwnDir(join(dir, 'batches'), sessionsRoot)
    const state: SessionState = {
      version: STATE_VERSION,
      session_id: id,
      feature_id: loaded.plan.id,
      plan_path: resolve(loaded.path),
      plan_sha256: loaded.sha256,
      options,
      created_at: now.toISOString(),
      updated_at: now.toISOString(),
      status: 'running',
      batches: orderedBatches.map((b) => ({ id: b.id, title: b.title, step: b.step, agent: b.agent, status: 'pending', attempts: 0 })),
    }
    const session = new Session(dir, state, {})
    session.save()
    session.saveProgress()
    return session
  }

  static open(dir: string): Session {
    const statePath = join(dir, STATE_FILE)
    if (!existsSync(statePath)) throw new UsageError(`${dir} is not a session folder (no ${STATE_FILE})`)
    const readJson = (file: string) => {
      try {
        return JSON.parse(readFileSync(join(dir, file), 'utf8')) as Record<string, unknown>
      } catch (error) {
        throw new UsageError(`${join(dir, file)}: cannot read it (${(error as Error).message})`)
      }
    }
    const raw = readJson(STATE_FILE)
    if (!READABLE_STATE_VERSIONS.includes(raw.version as number)) {
      throw new UsageError(
        `${statePath} was written in session format ${JSON.stringify(raw.version)}; this runner reads formats ${READABLE_STATE_VERSIONS.join(' and ')}. ` +
          'Resume it with the runner version that started it, or start a new session with `runner start <plan>`',
      )
    }
    const upgraded = upgradeState(raw, existsSync(join(dir, PROGRESS_FILE)) ? readJson(PROGRESS_FILE) : {})
    const state = sessionStateSchema.safeParse(upgraded.state)
    const progress = progressSchema.safeParse(upgraded.progress)
    if (!state.success) throw new UsageError(`${statePath} is damaged (${state.error.issues[0]?.message}); start a new session`)
    if (!progress.success)
      throw new UsageError(`${join(dir, PROGRESS_FILE)} is damaged (${progress.error.issues[0]?.message}); start a new session`)
    return new Session(resolve(dir), state.data, progress.data)
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
      const state = JSON.parse(readFileSync(join(dir, STATE_FILE), 'utf8')) as { status?: string }
      if (state.status !== 'completed') return dir
    }
    return undefined
  }

  batch(id: string): Readonly<BatchState> {
    const found = this.current.batches.find((b) => b.id === id)
    if (!found) throw new Error(`no batch ${id} in session ${this.dir}`)
    return found
  }

  /** The session is about to run (again) against this target. */
  begin(target: string, fingerprint: string): void {
    this.current.target = target
    this.current.target_fingerprint = fingerprint
    this.current.status = 'running'
    this.save()
  }

  /** The provider the session embeds with, once known: `runner resume` continues with it. */
  recordProvider(name: 'local' | 'openai'): void {
    if (this.current.options.provider === name) return
    this.current.options = { ...this.current.options, provider: name }
    this.save()
  }

  /** A changed plan the user accepted with --allow-plan-change. */
  acceptPlan(sha256: string): void {
    this.event('plan_changed', { from: this.current.plan_sha256, to: sha256 })
    this.current.plan_sha256 = sha256
    this.save()
  }

  startBatch(id: string): void {
    const batch = this.mutableBatch(id)
    Object.assign(batch, {
      status: 'running',
      attempts: batch.attempts + 1,
      started_at: new Date().toISOString(),
      ended_at: undefined,
      error: undefined,
    })
    this.save()
  }

  completeBatch(id: string, result: { summary: string; output_path: string; report_path: string; ended_at: string }): void {
    Object.assign(this.mutableBatch(id), { status: 'completed', ...result })
    this.save()
  }

  failBatch(id: string, error: string, reportPath?: string): void {
    Object.assign(this.mutableBatch(id), { status: 'failed', ended_at: new Date().toISOString(), error, report_path: reportPath })
    this.save()
  }

  interruptBatch(id: string): void {
    Object.assign(this.mutableBatch(id), { status: 'interrupted', ended_at: new Date().toISOString(), error: 'interrupted' })
    this.current.status = 'interrupted'
    this.save()
  }

  /** A check-in: the session stops here, as asked; `runner resume` goes on. */
  pause(checkIn: Omit<CheckIn, 'paused_at'>): void {
    this.current.check_ins = [...(this.current.check_ins ?? []), { ...checkIn, paused_at: new Date().toISOString() }]
    this.current.status = 'paused'
    this.save()
  }

  /** Who went on from the last check-in (a resume of a paused session). */
  goOn(by: string): void {
    const last = this.current.check_ins?.at(-1)
    if (!last || last.went_on_at) return
    Object.assign(last, { went_on_by: by, went_on_at: new Date().toISOString() })
    this.save()
  }

  finish(status: Exclude<SessionStatus, 'running' | 'interrupted'>, criteria: CriterionResult[]): void {
    this.current.status = status
    this.current.criteria = criteria
    this.save()
  }

  /** batches/02-index */
  batchDir(id: string): string {
    const position = this.current.batches.findIndex((b) => b.id === id) + 1
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

  hasCursor(batchId: string): boolean {
    return this.progress[batchId] !== undefined
  }

  /**
   * The batch's saved cursor, checked against the step's cursor format. A cursor of another
   * version (a runner upgraded between the crash and the resume) is refused, never misread.
   */
  cursor<C>(batchId: string, spec: CursorSpec<C>): C | undefined {
    const entry = this.progress[batchId]
    if (!entry) return undefined
    const advice = 'resume with the runner version that wrote it, or start a new session'
    if (entry.cursor_version !== spec.version) {
      throw new UsageError(
        `batch ${batchId}: its checkpoint is in cursor format ${entry.cursor_version}, this runner writes format ${spec.version}; ${advice}`,
      )
    }
    const parsed = spec.schema.safeParse(entry.cursor)
    if (!parsed.success) throw new UsageError(`batch ${batchId}: its checkpoint does not match cursor format ${spec.version}; ${advice}`)
    return parsed.data
  }

  saveCursor<C>(batchId: string, spec: CursorSpec<C>, cursor: C): void {
    this.progress[batchId] = { cursor_version: spec.version, cursor, updated_at: new Date().toISOString() }
    this.saveProgress()
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

  private mutableBatch(id: string): BatchState {
    return this.batch(id) as BatchState
  }

  private save(): void {
    this.current.updated_at = new Date().toISOString()
    writeFileAtomic(join(this.dir, STATE_FILE), redactSecrets(`${JSON.stringify(this.current, null, 2)}\n`))
  }

  private saveProgress(): void {
    writeFileAtomic(join(this.dir, PROGRESS_FILE), redactSecrets(`${JSON.stringify(this.progress, null, 2)}\n`))
  }
}
