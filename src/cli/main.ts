import { existsSync } from 'node:fs'
import { Command, CommanderError, Option } from 'commander'
import type { SessionOptions } from '../checkpoint/sessionState.ts'
import { databaseErrorCode, errorMessage, isTransient, RunnerError } from '../errors.ts'
import { redactSecrets } from '../checkpoint/redactSecrets.ts'
import { type LogFormat, lineBreak, logLine, setLogFormat } from '../log/log.ts'
import { RUNNER_VERSION } from '../version.ts'
import type { StepRegistry } from '../steps/step.ts'

// Parses arguments and hands each command to its own function. Commands only throw; this is
// the one place that prints an error and picks the exit code. Each command's module is loaded
// when that command runs: `--help` and `status` do not load the database drivers, the API SDKs,
// PGlite or the word vectors (see bench/startup.ts).

export interface MainOptions {
  /** Tests pass a registry with test steps; the shipped one has only real steps. */
  registry?: StepRegistry
}

const providerOption = () =>
  new Option('--provider <name>', "embedding provider, overriding the plan's embedding.provider").choices(['local', 'openai'])

const sessionsDir = () =>
  new Option('--sessions-dir <dir>', 'where session folders live').default(process.env.RUNNER_SESSIONS_DIR ?? 'sessions')

/** The command line's choices for a session: plan settings for this session (coordinator/applySessionOptions.ts). */
function withSessionOptions(command: Command): Command {
  return command
    .addOption(providerOption())
    .option('--with-worker', "run a worker during the validate batch's auto-embedding check")
    .option('--change-model', 'bind columns embedded by another model to this one, and embed their rows again (shows the cost first)')
    .option('--narrate', "let each batch's agent write a narrative through the Anthropic API (sends the batch's report to it)")
    .option(
      '--pause-after <batches>',
      'stop after these batches (ids or steps, comma-separated; "each": after every one; "none" on resume: no more stops) for a check-in',
    )
    .option('--confirm', 'at a terminal, ask before each batch that writes; "no" pauses the session there')
}

function sessionOptions(opts: Record<string, unknown>): SessionOptions {
  return {
    provider: opts.provider as SessionOptions['provider'],
    with_worker: opts.withWorker === true || undefined,
    change_model: opts.changeModel === true || undefined,
    narrate: opts.narrate === true || undefined,
    pause_after:
      typeof opts.pauseAfter === 'string'
        ? String(opts.pauseAfter)
            .split(',')
            .map((p) => p.trim())
            .filter((p) => p && p !== 'none')
        : undefined,
  }
}

/** --confirm: a question at the terminal before each batch that writes. */
async function confirmer(opts: Record<string, unknown>) {
  if (opts.confirm !== true) return undefined
  const { confirmAtTerminal } = await import('./confirm.ts')
  return confirmAtTerminal()
}

export async function main(argv: string[], options: MainOptions = {}): Promise<number> {
  // Keys may live in a .env file, as in the seed's application.
  if (existsSync('.env')) process.loadEnvFile('.env')
  // The steps (and the drivers and SDKs they use) load only for the commands that run them.
  const registry = async () => options.registry ?? (await import('../steps/registry.ts')).defaultRegistry()
  const controller = new AbortController()
  let exitCode = 0
  let command = ''
  const onSignal = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) {
      // A session has a checkpoint to resume from; a worker's held jobs go to another worker.
      const after =
        command === 'worker'
          ? 'the jobs it held are claimed by another worker once its heartbeat stops'
          : '`runner resume` redoes the unit of work that was in flight'
      process.stderr.write(`${lineBreak()}${logLine('warn', `${signal} again: exiting now; ${after}`)}`)
      process.exit(130)
    }
    process.stderr.write(
      `${lineBreak()}${logLine('warn', `${signal}: stopping after the work in flight (press Ctrl-C again to exit at once)`)}`,
    )
    controller.abort(signal)
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  const program = new Command('runner')
    .description('Makes a broken pgvector semantic search work: diagnose, index, auto-embed, backfill, validate.')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s), writeOut: (s) => process.stdout.write(s) })
    .version(RUNNER_VERSION, '-V, --version', "print the runner's version")
    .showHelpAfterError('(run with --help for usage)')
    .hook('preAction', (_program, action) => {
      command = action.name()
    })

  const startCommand = program
    .command('start')
    .description('start a new session that runs every batch of the plan')
    .argument('<plan>', 'the plan file, for example plans/feature-1.yaml')
    .option('--dry-run', 'check the target read-only and print what each batch would do on it; change nothing')
    .option('--json', 'print the outcome as JSON on stdout (session_dir, status, exit_code, criteria, pending)')
    .addOption(sessionsDir())
  withSessionOptions(startCommand).action(async (plan: string, opts) => {
    const { start } = await import('./start.ts')
    exitCode = await start({
      planPath: plan,
      dryRun: Boolean(opts.dryRun),
      sessionsDir: opts.sessionsDir,
      registry: await registry(),
      signal: controller.signal,
      options: sessionOptions(opts),
      confirm: await confirmer(opts),
      json: Boolean(opts.json),
    })
  })

  const resumeCommand = program
    .command('resume')
    .description('continue a session: completed batches are skipped, the interrupted one continues from its checkpoint')
    .option('--session <dir>', 'the session folder (default: the latest unfinished one)')
    .option('--allow-plan-change', 'resume even though the plan file changed since the session started')
    .option('--json', 'print the outcome as JSON on stdout (session_dir, status, exit_code, criteria, pending)')
    .addOption(sessionsDir())
  withSessionOptions(resumeCommand).action(async (opts) => {
    const { resume } = await import('./resume.ts')
    exitCode = await resume({
      sessionDir: opts.session,
      sessionsDir: opts.sessionsDir,
      allowPlanChange: Boolean(opts.allowPlanChange),
      registry: await registry(),
      signal: controller.signal,
      options: sessionOptions(opts),
      confirm: await confirmer(opts),
      json: Boolean(opts.json),
    })
  })

  program
    .command('status')
    .description(
      "with a plan: the auto-embedding pipeline on its database (exit 1 when something needs attention); without: a session's batches and criteria",
    )
    .argument('[plan]', 'the plan whose database to look at')
    .option('--session <dir>', 'the session folder (default: the latest one)')
    .option('--json', 'print it as JSON (a session: coordination-state.json as it is)')
    .option('--max-backlog-seconds <s>', 'with a plan: a queued row older than this needs attention', '300')
    .addOption(sessionsDir())
    .action(async (plan: string | undefined, opts) => {
      exitCode = plan
        ? await (await import('./targetStatus.ts')).targetStatus({
            planPath: plan,
            json: Boolean(opts.json),
            maxBacklogSeconds: opts.maxBacklogSeconds,
          })
        : await (await import('./status.ts')).status({ sessionDir: opts.session, sessionsDir: opts.sessionsDir, json: Boolean(opts.json) })
    })

  program
    .command('worker')
    .description('embed new and changed rows as the triggers queue them (the background worker); stops cleanly on SIGTERM')
    .argument('<plan>', 'the plan file')
    .addOption(providerOption())
    .option('--until-empty', 'exit when the queue is empty instead of waiting for more')
    .option('--once', 'the same as --until-empty: drain the queue and exit (for cron)')
    .option('--http-port <port>', 'serve GET /healthz and GET /metrics (Prometheus) on this port (0: any free one)')
    .addOption(new Option('--log-format <format>', 'text lines, or one JSON object a line').choices(['text', 'json']).default('text'))
    .option('--json', 'with --once: print { embedded, failed, batches } as JSON on stdout when the queue is drained')
    .option('--concurrency <n>', 'batches in flight at once, sharing the provider rate budget', '1')
    .action(async (plan: string, opts) => {
      setLogFormat(opts.logFormat as LogFormat)
      const { worker } = await import('./worker.ts')
      exitCode = await worker({
        planPath: plan,
        provider: opts.provider,
        untilEmpty: Boolean(opts.untilEmpty || opts.once),
        httpPort: opts.httpPort,
        json: Boolean(opts.json),
        concurrency: opts.concurrency,
        signal: controller.signal,
      })
    })

  program
    .command('pipeline')
    .description('the auto-embedding pipeline')
    .command('uninstall')
    .description("remove the capture triggers and the runner's schema (embeddings are kept)")
    .argument('<plan>', 'the plan file')
    .action(async (plan: string) => {
      const { pipelineUninstall } = await import('./pipelineUninstall.ts')
      exitCode = await pipelineUninstall(plan)
    })

  program
    .command('search')
    .description('semantic search as the application runs it: the nearest rows to a text, with distances and time taken')
    .argument('<plan>', 'the plan file (with one argument only: the text, and the plan from --plan)')
    .argument('[text]', 'what to search for')
    .option('--plan <file>', 'the plan, the older way to give it', 'plans/feature-1.yaml')
    .option('--table <name>', 'only this target table')
    .option('-k <n>', 'rows per table', '5')
    .option('--ef-search <n>', 'hnsw.ef_search for the query (the validate batch recommends one)')
    .addOption(providerOption())
    .option('--json', 'print the hits as JSON on stdout')
    .action(async (first: string, second: string | undefined, opts) => {
      const { search } = await import('./search.ts')
      exitCode = await search({
        query: second ?? first,
        planPath: second === undefined ? opts.plan : first,
        table: opts.table,
        k: opts.k,
        efSearch: opts.efSearch,
        provider: opts.provider,
        json: Boolean(opts.json),
      })
    })

  program
    .command('init')
    .description('write the starter plan (the seed feature, on the embedded demo by default) to plans/feature-1.yaml')
    .option('--force', 'overwrite a plan already there')
    .action(async (opts) => {
      const { init } = await import('./init.ts')
      exitCode = init({ force: Boolean(opts.force) })
    })

  const demo = program.command('demo').description('the demo application, in its broken state')
  demo
    .command('init')
    .description('create the demo app (topics, atoms, messages; embeddings all NULL, no index)')
    .option('--rows <n>', 'atoms + messages to create', '2000')
    .option('--database <url>', 'a postgres:// URL (default: $DATABASE_URL, else the embedded database)')
    .option('--embedded <dir>', 'the embedded database folder', '.runner/embedded')
    .option('--labels <file>', 'where to write the labelled queries (default: .runner/, named after the target, where validate finds them)')
    .action(async (opts) => {
      const { demoInit } = await import('./demoInit.ts')
      exitCode = await demoInit({
        rows: opts.rows,
        database: opts.database ?? process.env.DATABASE_URL,
        embeddedPath: opts.embedded,
        labelsPath: opts.labels,
      })
    })

  try {
    await program.parseAsync(argv, { from: 'user' })
    return exitCode
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.exitCode === 0 ? 0 : 2
    }
    process.stderr.write(redactSecrets(logLine('error', describeFailure(error))))
    return error instanceof RunnerError ? error.exitCode : 1
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}

/**
 * One line for what a user can cause or meet (a bad plan, a target that does not fit, a
 * provider that refuses, the database refusing a statement, a lost connection); the stack
 * only for what is a bug of the runner's.
 */
export function describeFailure(error: unknown): string {
  if (error instanceof RunnerError) return `runner: ${error.message}`
  const sqlstate = databaseErrorCode(error)
  if (isTransient(error))
    return `runner: lost the database connection (${errorMessage(error)}); check the server, then run the command again`
  if (sqlstate) return `runner: the database refused: ${errorMessage(error)} (SQLSTATE ${sqlstate})`
  return `runner: unexpected error; please report it with the lines below\n${(error as Error)?.stack ?? String(error)}`
}
