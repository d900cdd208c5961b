// Logs go to stderr; stdout carries only results (a session folder, search hits, --json).
// Every command and step logs through this one function, so the format has one home.

export type Log = (message: string) => void

export const log: Log = (message) => {
  process.stderr.write(`${message}\n`)
}
