// Database errors worth another try: the connection was lost or the server is restarting,
// or the transaction lost a race (serialization failure, deadlock). Everything else (a bad
// plan, an SQL error in the 42xxx class, missing rights) fails at once.

const TRANSIENT_SQLSTATES = new Set(['57P01', '57P02', '57P03', '08000', '08001', '08003', '08004', '08006', '40001', '40P01', '53300'])
const TRANSIENT_MESSAGES =
  /Connection terminated|ECONNREFUSED|ECONNRESET|EPIPE|terminating connection|the database system is (starting up|shutting down)/i

export function isTransientDatabaseError(error: unknown): boolean {
  const code = (error as { code?: string } | undefined)?.code
  if (code && TRANSIENT_SQLSTATES.has(code)) return true
  return error instanceof Error && TRANSIENT_MESSAGES.test(error.message)
}
