// Small inline SVG charts for report.html: no scripts, no external assets.

const escapeHtml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c']

export interface BarGroup {
  label: string
  bars: { label: string; value: number }[]
}

/** Grouped horizontal bars on a log scale (latencies span 0.2 ms to seconds). */
export function groupedBarsLog(groups: BarGroup[], unit: string, title: string): string {
  const values = groups.flatMap((g) => g.bars.map((b) => b.value)).filter((v) => v > 0)
  if (values.length === 0) return ''
  const min = 10 ** Math.floor(Math.log10(Math.min(...values)))
  const max = 10 ** Math.ceil(Math.log10(Math.max(...values)))
  const width = 720
  const left = 190
  const barHeight = 14
  const rows = groups.reduce((s, g) => s + g.bars.length, 0)
  const height = 40 + rows * (barHeight + 4) + groups.length * 28 + 30
  const x = (v: number) =>
    left + ((Math.log10(Math.max(v, min)) - Math.log10(min)) / (Math.log10(max) - Math.log10(min))) * (width - left - 80)
  let y = 30
  const parts: string[] = []
  for (let decade = min; decade <= max; decade *= 10) {
    parts.push(
      `<line x1="${x(decade)}" y1="25" x2="${x(decade)}" y2="${height - 25}" stroke="#e5e7eb"/><text x="${x(decade)}" y="${height - 10}" font-size="11" text-anchor="middle" fill="#6b7280">${decade} ${unit}</text>`,
    )
  }
  for (const group of groups) {
    parts.push(`<text x="4" y="${y + 11}" font-size="12" font-weight="bold">${escapeHtml(group.label)}</text>`)
    y += 18
    group.bars.forEach((bar, i) => {
      parts.push(
        `<text x="${left - 6}" y="${y + 11}" font-size="11" text-anchor="end">${escapeHtml(bar.label)}</text>`,
        `<rect x="${left}" y="${y}" width="${Math.max(1, x(bar.value) - left)}" height="${barHeight}" fill="${COLORS[i % COLORS.length]}"/>`,
        `<text x="${x(bar.value) + 4}" y="${y + 11}" font-size="11">${bar.value.toFixed(2)} ${unit}</text>`,
      )
      y += barHeight + 4
    })
    y += 10
  }
  return `<figure><figcaption>${escapeHtml(title)}</figcaption><svg viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${escapeHtml(title)}">${parts.join('')}</svg></figure>`
}

export interface Series {
  label: string
  points: { x: number; y: number }[]
}

/** Lines over a log x axis (ef_search) with a 0..1 y axis (recall) and an optional target line. */
export function linesLogX(series: Series[], title: string, xLabel: string, yLabel: string, target?: number): string {
  const xs = series.flatMap((s) => s.points.map((p) => p.x)).filter((v) => v > 0)
  if (xs.length === 0) return ''
  const width = 720
  const height = 300
  const pad = { left: 50, right: 150, top: 30, bottom: 40 }
  const minX = Math.min(...xs)
  const maxX = Math.max(...xs)
  const sx = (v: number) =>
    pad.left + (maxX === minX ? 0 : ((Math.log(v) - Math.log(minX)) / (Math.log(maxX) - Math.log(minX))) * (width - pad.left - pad.right))
  const sy = (v: number) => height - pad.bottom - v * (height - pad.top - pad.bottom)
  const parts = [
    `<line x1="${pad.left}" y1="${sy(0)}" x2="${width - pad.right}" y2="${sy(0)}" stroke="#9ca3af"/>`,
    `<line x1="${pad.left}" y1="${sy(0)}" x2="${pad.left}" y2="${sy(1)}" stroke="#9ca3af"/>`,
  ]
  for (const v of [0, 0.25, 0.5, 0.75, 1])
    parts.push(`<text x="${pad.left - 6}" y="${sy(v) + 4}" font-size="11" text-anchor="end">${v}</text>`)
  for (const v of [...new Set(xs)])
    parts.push(`<text x="${sx(v)}" y="${height - pad.bottom + 14}" font-size="11" text-anchor="middle">${v}</text>`)
  parts.push(
    `<text x="${(width - pad.right + pad.left) / 2}" y="${height - 6}" font-size="11" text-anchor="middle">${escapeHtml(xLabel)}</text>`,
  )
  parts.push(`<text x="${pad.left}" y="${pad.top - 14}" font-size="11" text-anchor="middle">${escapeHtml(yLabel)}</text>`)
  if (target !== undefined)
    parts.push(
      `<line x1="${pad.left}" y1="${sy(target)}" x2="${width - pad.right}" y2="${sy(target)}" stroke="#f59e0b" stroke-dasharray="4 3"/>`,
    )
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]
    const path = s.points.map((p, j) => `${j ? 'L' : 'M'}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' ')
    parts.push(`<path d="${path}" fill="none" stroke="${color}" stroke-width="2"/>`)
    for (const p of s.points) parts.push(`<circle cx="${sx(p.x)}" cy="${sy(p.y)}" r="3" fill="${color}"/>`)
    parts.push(
      `<text x="${width - pad.right + 8}" y="${pad.top + 60 + 16 * i}" font-size="11" fill="${color}">${escapeHtml(s.label)}</text>`,
    )
  })
  if (target !== undefined)
    parts.push(
      `<text x="${width - pad.right + 8}" y="${pad.top + 60 + 16 * series.length}" font-size="11" fill="#b45309">- - target ${target}</text>`,
    )
  return `<figure><figcaption>${escapeHtml(title)}</figcaption><svg viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${escapeHtml(title)}">${parts.join('')}</svg></figure>`
}

export { escapeHtml }
