// Progress on long work, on stderr: a line rewritten in place on a terminal (count, rate,
// time left), plain lines at most every few seconds otherwise (CI logs, files).

export interface Progress {
  /** Starts a counted task; call update with the number done so far. */
  start(label: string, total: number): { update(done: number, note?: string): void; finish(note?: string): void }
  /** A one-off status line (phases of an index build, for example). */
  note(message: string): void
}

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?'
  if (seconds < 60) return `${Math.round(seconds)}s`
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${String(Math.round(seconds % 60)).padStart(2, '0')}s`
  return `${Math.floor(seconds / 3600)}h${String(Math.floor((seconds % 3600) / 60)).padStart(2, '0')}m`
}

export function createProgress(stream: NodeJS.WriteStream = process.stderr, plainIntervalMs = 5000): Progress {
  const interactive = Boolean(stream.isTTY)
  return {
    note(message) {
      stream.write(`${message}\n`)
    },
    start(label, total) {
      const startedAt = Date.now()
      let lastPrint = 0
      const line = (done: number, note?: string) => {
        const elapsed = (Date.now() - startedAt) / 1000
        const rate = elapsed > 0 ? done / elapsed : 0
        const left = rate > 0 ? (total - done) / rate : Number.POSITIVE_INFINITY
        const percent = total > 0 ? Math.floor((100 * done) / total) : 100
        return `${label}: ${done.toLocaleString('en-US')}/${total.toLocaleString('en-US')} (${percent}%), ${rate.toFixed(0)}/s, ${formatDuration(left)} left${note ? `, ${note}` : ''}`
      }
      return {
        update(done, note) {
          const now = Date.now()
          if (interactive) {
            if (now - lastPrint >= 100) stream.write(`\r\x1b[K${line(done, note)}`)
          } else if (now - lastPrint >= plainIntervalMs) {
            stream.write(`${line(done, note)}\n`)
          } else return
          lastPrint = now
        },
        finish(note) {
          const elapsed = (Date.now() - startedAt) / 1000
          stream.write(
            `${interactive ? '\r\x1b[K' : ''}${label}: ${total.toLocaleString('en-US')} done in ${formatDuration(elapsed)}${note ? `, ${note}` : ''}\n`,
          )
        },
      }
    },
  }
}
