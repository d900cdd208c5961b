// Errors say what kind of failure they are, so that one place (src/cli/main.ts) can print a
// clean line and pick the exit code, and so retry decisions are made on the kind, never on
// the message text. Commands and steps only throw.

export type FailureKind = 'usage' | 'target' | 'provider' | 'work' | 'interrupted'

export class RunnerError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    readonly kind: FailureKind,
  ) {
    super(message)
    this.name = new.target.name
  }
}

/** The user's input (arguments, plan file, environment) is wrong; nothing was touched: exit 2. */
export class UsageError extends RunnerError {
  constructor(message: string) {
    super(message, 2, 'usage')
  }
}

/** The target database cannot take the plan as it is (a missing column, a wrong type, a schema of another version); nothing was changed: exit 2. */
export class TargetError extends RunnerError {
  constructor(message: string) {
    super(message, 2, 'target')
  }
}

/** The embedding provider refused for good (a rejected key, an unknown model, wrong dimensions): retrying cannot help. */
export class ProviderError extends RunnerError {
  constructor(message: string) {
    super(message, 1, 'provider')
  }
}

/** The work could not be done (a batch failed, a criterion could not be measured): exit 1. */
export class WorkError extends RunnerError {
  constructor(message: string) {
    super(message, 1, 'work')
  }
}

/** SIGINT or SIGTERM arrived; the current unit of work finished and the checkpoint is written. */
export class Interrupted extends RunnerError {
  constructor(signal = 'SIGINT') {
    super(`interrupted by ${signal}; the checkpoint is saved, run \`runner resume\` to continue`, 130, 'interrupted')
  }
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

// Database errors worth another try: the connection was lost or the server is restarting, or
// the transaction lost a race (serialization failure, deadlock), or too many connections.
// Everything else (a bad plan, an SQL error in the 42xxx class, missing rights) is permanent.
const TRANSIENT_SQLSTATES = new Set(['57P01', '57P02', '57P03', '08000', '08001', '08003', '08004', '08006', '40001', '40P01', '53300'])
const TRANSIENT_NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH'])
// (node-postgres says "Client has encountered a connection error and is not queryable" of a
// pooled connection the server closed, when a query reaches it before the pool drops it.)
const TRANSIENT_MESSAGES =
  /Connection terminated|terminating connection|the database system is (starting up|shutting down)|encountered a connection error and is not queryable/i

/** A failure that another try may not meet: a lost connection, a restarting server, a lost race. */
export function isTransient(error: unknown): boolean {
  if (error instanceof RunnerError) return false
  const code = (error as { code?: unknown } | undefined)?.code
  if (typeof code === 'string' && (TRANSIENT_SQLSTATES.has(code) || TRANSIENT_NETWORK_CODES.has(code))) return true
  return error instanceof Error && TRANSIENT_MESSAGES.test(error.message)
}

/** An error PostgreSQL itself sent (it carries an SQLSTATE), as opposed to one of the runner's. */
export function databaseErrorCode(error: unknown): string | undefined {
  const e = error as { code?: unknown; severity?: unknown } | undefined
  return typeof e?.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) && typeof e.severity === 'string' ? e.code : undefined
}
