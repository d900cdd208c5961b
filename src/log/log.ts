// Logs go to stderr; stdout carries only results (a session folder, search hits, --json).
// Every command and step logs through this one function, so the format has one home: plain
// lines by default, or one JSON object per line (time, level, message, fields) with
// --log-format json, for a service's log collector.

export type Log = (message: string, fields?: Record<string, unknown>) => void

export type LogFormat = 'text' | 'json'
let format: LogFormat = 'text'

export function setLogFormat(chosen: LogFormat): void {
  format = chosen
}

export function logLine(level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown> = {}): string {
  if (format === 'text') return `${message}\n`
  return `${JSON.stringify({ time: new Date().toISOString(), level, message, ...fields })}\n`
}

/** Before a line written while a progress line may be on the terminal: a line break in text, nothing in JSON. */
export function lineBreak(): string {
  return format === 'text' ? '\n' : ''
}

export const log: Log = (message, fields) => {
  process.stderr.write(logLine(message.startsWith('warning:') ? 'warn' : 'info', message, fields))
}
