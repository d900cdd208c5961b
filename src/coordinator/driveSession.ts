import { userInfo } from 'node:os'
import { join } from 'node:path'
import { Session } from '../checkpoint/session.ts'
import type { CriterionResult, SessionOptions } from '../checkpoint/sessionState.ts'
import type { Database } from '../db/database.ts'
import { openTarget } from '../db/openTarget.ts'
import { withTargetLock } from '../db/withTargetLock.ts'
import { runnerSchema } from '../db/runnerSchema/objects.ts'
import { resolveTargets } from '../db/target.ts'
import { createProvider, providerSlot } from '../embeddings/createProvider.ts'
import { UsageError } from '../errors.ts'
import { acquireProcessLock } from '../processLock.ts'
import type { Log } from '../log/log.ts'
import { createProgress } from '../log/progress.ts'
import { type LoadedPlan, loadPlan } from '../plan/loadPlan.ts'
import type { Batch, Plan } from '../plan/schema.ts'
import { orderBatches } from '../plan/orderBatches.ts'
import type { StepRegistry } from '../steps/step.ts'
import { applySessionOptions } from './applySessionOptions.ts'
import { checkPlanRunnable } from './checkPlanRunnable.ts'
import { preflight } from './preflight.ts'
import { type RunOptions, type RunResult, runSession } from './runSession.ts'

// A session's life: created by start, continued by resume, driven by one process at a time
// against the one target it began with. The CLI only parses, calls these and prints.

export interface SessionOutcome {
  status: 'completed' | 'failed' | 'paused' | 'already_completed'
  criteria: CriterionResult[]
  sessionDir: string
}

interface Common {
  sessionsDir: string
  registry: StepRegistry
  signal: AbortSignal
  log: Log
  /** The command line's choices for this run. */
  options: SessionOptions
  /** --confirm: asked before each batch that writes; false pauses the session there. */
  confirm?: (batch: Batch) => Promise<boolean>
}

/** Who is at the keyboard, for the session's record of check-ins: $RUNNER_OPERATOR, else the OS user. */
export function operatorName(): string {
  return process.env.RUNNER_OPERATOR || userInfo().username
}

export async function startSession(loaded: LoadedPlan, common: Common): Promise<SessionOutcome> {
  checkPlanRunnable(loaded.plan, common.registry)
  checkPauseAfter(loaded, common.options.pause_after)
  const plan = applySessionOptions(loaded.plan, common.options)
  // The target is reached and the plan checked against it before a session folder exists:
  // a start that cannot connect leaves nothing for resume to pick up.
  const db = await openTarget(plan, common.log)
  try {
    await resolveTargets(db, plan, loaded.path)
    // One run per database: a second start is refused before it has a session folder.
    const id = Session.newId(loaded.plan.id)
    return await withTargetLock(db, runnerSchema(plan.target.runner_schema), id, async () => {
      const session = Session.create(common.sessionsDir, loaded, orderBatches(loaded.plan.batches), common.options, id)
      session.event('session_started', { plan: loaded.path, plan_sha256: loaded.sha256 })
      return drive(session, plan, db, common, common.options)
    })
  } finally {
    await db.close()
  }
}

export async function resumeSession(common: Common & { sessionDir?: string; allowPlanChange: boolean }): Promise<SessionOutcome> {
  const dir = common.sessionDir ?? Session.findLatest(common.sessionsDir, { unfinished: true })
  if (!dir) throw new UsageError(`no unfinished session in ${common.sessionsDir}/; start one with \`runner start plans/feature-1.yaml\``)
  const session = Session.open(dir)
  if (session.state.status === 'completed') {
    common.log(`session ${session.dir} is already completed; nothing to resume`)
    return { status: 'already_completed', criteria: session.state.criteria ?? [], sessionDir: session.dir }
  }
  const loaded = loadPlan(session.state.plan_path)
  if (loaded.sha256 !== session.state.plan_sha256) {
    if (!common.allowPlanChange) {
      throw new UsageError(
        `the plan ${loaded.path} changed since this session started (sha256 ${session.state.plan_sha256.slice(0, 12)} then, ${loaded.sha256.slice(0, 12)} now); ` +
          'start a new session, or resume anyway with --allow-plan-change',
      )
    }
    session.acceptPlan(loaded.sha256)
  }
  const known = new Set(session.state.batches.map((b) => b.id))
  const added = loaded.plan.batches.filter((b) => !known.has(b.id))
  if (added.length > 0) {
    throw new UsageError(`the plan now has batches this session does not know (${added.map((b) => b.id).join(', ')}); start a new session`)
  }
  checkPlanRunnable(loaded.plan, common.registry)
  checkPauseAfter(loaded, common.options.pause_after)
  // What the session started with holds unless this command line says otherwise.
  const options = { ...session.state.options, ...definedOnly(common.options) }
  const plan = applySessionOptions(loaded.plan, options)
  const db = await openTarget(plan, common.log)
  try {
    const recorded = session.state.target_fingerprint ?? session.state.target
    const now = session.state.target_fingerprint ? db.fingerprint : db.description
    if (recorded && recorded !== now) {
      throw new UsageError(
        `this session ran against ${session.state.target}, but the target now is ${db.description}; ` +
          `resume with the same $${plan.target.database_url_env}${recorded.startsWith('embedded') ? ' (unset)' : ''}, or start a new session`,
      )
    }
    session.event('session_resumed', { pid: process.pid, by: operatorName() })
    return await withTargetLock(db, runnerSchema(plan.target.runner_schema), session.state.session_id, () =>
      drive(session, plan, db, common, options),
    )
  } finally {
    await db.close()
  }
}

/** Drives a session on an open target whose lock this process holds: one process per session (the session lock). */
async function drive(session: Session, plan: Plan, db: Database, common: Common, options: SessionOptions): Promise<SessionOutcome> {
  const { log } = common
  const release = acquireProcessLock(
    join(session.dir, 'session.lock'),
    (pid) => `session ${session.dir} is being driven by another runner process (pid ${pid}); wait for it to finish or stop it`,
  )
  try {
    log(`session: ${session.dir}`)
    if (session.state.status === 'paused') session.goOn(operatorName())
    session.begin(db.description, db.fingerprint)
    const result = await runChecked({
      session,
      plan,
      registry: common.registry,
      db,
      progress: createProgress(),
      signal: common.signal,
      log,
      checkIns: { pauseAfter: options.pause_after ?? [], confirm: common.confirm, operator: operatorName() },
    })
    if (result.status === 'paused') return { ...result, sessionDir: session.dir }
    const failed = result.criteria.filter((c) => !c.passed && !c.pending)
    const pending = result.criteria.filter((c) => !c.passed && c.pending)
    if (result.status === 'completed' && failed.length > 0)
      log(`criteria not met: ${failed.map((c) => `${c.id} (${c.measured})`).join(', ')}`)
    if (result.status === 'completed' && pending.length > 0)
      log(`fixed, with one thing left to you: ${[...new Set(pending.map((c) => c.pending))].join('; ')}`)
    log(`${result.status === 'completed' ? 'done' : 'stopped'}; the session's artifacts are in ${session.dir} (start with summary.md)`)
    return { ...result, sessionDir: session.dir }
  } finally {
    release()
  }
}

/**
 * Runs what is left of a session on an open target: the plan resolved against it and the
 * read-only preflight first, then the batches, which stop before the first that writes if
 * the preflight refused.
 */
export async function runChecked(options: Omit<RunOptions, 'preflight' | 'embeddings'>): Promise<RunResult> {
  const { session, plan, db, log } = options
  const targets = await resolveTargets(db, plan, session.state.plan_path) // a plan that does not fit the database stops here, unchanged
  const provider = providerSlot(async () => {
    const created = await createProvider(plan, db.kind, log)
    session.recordProvider(created.name) // one model per column: a resume continues with this provider
    return created
  })
  const left = new Set(plan.batches.filter((b) => session.batch(b.id).status !== 'completed').map((b) => b.step))
  const rs = runnerSchema(plan.target.runner_schema)
  const checked = await db.transaction((tx) => preflight(tx, plan, targets, rs, left, embedsIn(left) ? provider.load : undefined), {
    readOnly: true,
  })
  if (left.has('backfill') && plan.backfill.mode === 'queue' && db.kind === 'embedded')
    checked.refusals.push({
      path: 'backfill.mode',
      object: 'queue',
      problem: 'needs workers that reach the database, and the embedded database is opened by this process alone: use mode direct with it',
    })
  for (const note of checked.notes) log(`preflight: ${note}`)
  if (checked.refusals.length)
    log(`preflight: ${checked.refusals.length} refusal(s); read-only batches run, then the session stops before its first change`)
  return runSession({ ...options, preflight: checked, embeddings: provider.get })
}

/** Whether batches of these steps call the embedding provider. */
export function embedsIn(steps: Set<string>): boolean {
  return steps.has('backfill') || steps.has('validate')
}

/** --pause-after names batches or steps of the plan, or "each". */
function checkPauseAfter(loaded: LoadedPlan, pauseAfter: string[] | undefined): void {
  const known = new Set(['each', ...loaded.plan.batches.flatMap((b) => [b.id, b.step])])
  const unknown = (pauseAfter ?? []).filter((p) => !known.has(p))
  if (unknown.length)
    throw new UsageError(
      `--pause-after: ${unknown.map((u) => `"${u}"`).join(', ')} is not a batch or step of ${loaded.path} (${loaded.plan.batches.map((b) => b.id).join(', ')}, or each)`,
    )
}

function definedOnly(options: SessionOptions): SessionOptions {
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined && v !== false)) as SessionOptions
}
