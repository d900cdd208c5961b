// Small inline SVG charts for report.html: no scripts, no external assets. They scale with the
// page (a viewBox and width 100%), every colour has a legend entry, thresholds are drawn as
// labelled lines, and axes are zoomed to the data.

const escapeHtml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')

/** Colours by meaning, not by position: the baseline is neutral grey, never "bad" red. */
export const ROLE_COLORS = { baseline: '#9ca3af', result: '#2563eb', threshold: '#b91c1c', target: '#b45309' } as const
const SERIES = [
  { color: '#2563eb', dash: '', marker: 'circle' },
  { color: '#16a34a', dash: '6 3', marker: 'square' },
  { color: '#9333ea', dash: '2 3', marker: 'triangle' },
  { color: '#ea580c', dash: '8 3 2 3', marker: 'diamond' },
] as const

function figure(title: string, width: number, height: number, body: string, legend: string[]): string {
  return `<figure><figcaption>${escapeHtml(title)}</figcaption><svg viewBox="0 0 ${width} ${height}" width="100%" style="max-width:${width}px" role="img" aria-label="${escapeHtml(title)}">${body}</svg><div class="legend">${legend.join(' ')}</div></figure>`
}

const swatch = (color: string, label: string, dash = '') =>
  `<span class="key"><svg width="22" height="10" aria-hidden="true"><line x1="0" y1="5" x2="22" y2="5" stroke="${color}" stroke-width="${dash ? 2 : 8}" stroke-dasharray="${dash}"/></svg>${escapeHtml(label)}</span>`

export interface BarGroup {
  label: string
  bars: { label: string; value: number; role: 'baseline' | 'result' }[]
}

/** Grouped horizontal bars on a log scale (latencies span 0.2 ms to seconds), with a threshold line. */
export function groupedBarsLog(
  groups: BarGroup[],
  unit: string,
  title: string,
  legend: { baseline: string; result: string },
  threshold?: { value: number; label: string },
): string {
  const values = [...groups.flatMap((g) => g.bars.map((b) => b.value)), ...(threshold ? [threshold.value] : [])].filter((v) => v > 0)
  if (values.length === 0) return ''
  const min = 10 ** Math.floor(Math.log10(Math.min(...values)))
  const max = 10 ** Math.ceil(Math.log10(Math.max(...values)))
  const width = 760
  const left = 200
  const barHeight = 14
  const rows = groups.reduce((s, g) => s + g.bars.length, 0)
  const height = 40 + rows * (barHeight + 4) + groups.length * 28 + 30
  const x = (v: number) =>
    left + ((Math.log10(Math.max(v, min)) - Math.log10(min)) / (Math.log10(max) - Math.log10(min))) * (width - left - 90)
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
    for (const bar of group.bars) {
      parts.push(
        `<text x="${left - 6}" y="${y + 11}" font-size="11" text-anchor="end">${escapeHtml(bar.label)}</text>`,
        `<rect x="${left}" y="${y}" width="${Math.max(1, x(bar.value) - left)}" height="${barHeight}" fill="${ROLE_COLORS[bar.role]}"/>`,
        `<text x="${x(bar.value) + 4}" y="${y + 11}" font-size="11">${bar.value.toFixed(2)} ${unit}</text>`,
      )
      y += barHeight + 4
    }
    y += 10
  }
  if (threshold)
    parts.push(
      `<line x1="${x(threshold.value)}" y1="22" x2="${x(threshold.value)}" y2="${height - 25}" stroke="${ROLE_COLORS.threshold}" stroke-width="1.5" stroke-dasharray="5 3"/>`,
      `<text x="${x(threshold.value) + 4}" y="18" font-size="11" fill="${ROLE_COLORS.threshold}">${escapeHtml(threshold.label)}</text>`,
    )
  const keys = [
    swatch(ROLE_COLORS.baseline, legend.baseline),
    swatch(ROLE_COLORS.result, legend.result),
    ...(threshold ? [swatch(ROLE_COLORS.threshold, threshold.label, '5 3')] : []),
  ]
  return figure(title, width, height, parts.join(''), keys)
}

export interface Series {
  label: string
  points: { x: number; y: number }[]
}

function marker(kind: (typeof SERIES)[number]['marker'], cx: number, cy: number, color: string): string {
  const r = 4
  if (kind === 'square') return `<rect x="${cx - r}" y="${cy - r}" width="${2 * r}" height="${2 * r}" fill="${color}"/>`
  if (kind === 'triangle') return `<path d="M${cx},${cy - r - 1} L${cx + r + 1},${cy + r} L${cx - r - 1},${cy + r} Z" fill="${color}"/>`
  if (kind === 'diamond')
    return `<path d="M${cx},${cy - r - 1} L${cx + r + 1},${cy} L${cx},${cy + r + 1} L${cx - r - 1},${cy} Z" fill="${color}"/>`
  return `<circle cx="${cx}" cy="${cy}" r="${r}" fill="${color}"/>`
}

/**
 * Lines over a log x axis (ef_search) with a y axis zoomed to the data (recall near 1 is not
 * squeezed into the top of 0..1), and an optional target line. Series that overlap stay apart:
 * each has its own dash and marker, and is offset by a pixel or two.
 */
export function linesLogX(
  series: Series[],
  title: string,
  xLabel: string,
  yLabel: string,
  target?: { value: number; label: string },
): string {
  const xs = series.flatMap((s) => s.points.map((p) => p.x)).filter((v) => v > 0)
  if (xs.length === 0) return ''
  const ys = [...series.flatMap((s) => s.points.map((p) => p.y)), ...(target ? [target.value] : [])]
  const minY = Math.max(0, Math.floor((Math.min(...ys) - 0.02) * 20) / 20)
  const maxY = Math.min(1, Math.ceil((Math.max(...ys) + 0.005) * 20) / 20)
  const width = 760
  const height = 300
  const pad = { left: 56, right: 20, top: 20, bottom: 44 }
  const minX = Math.min(...xs)
  const maxX = Math.max(...xs)
  const sx = (v: number) =>
    pad.left + (maxX === minX ? 0 : ((Math.log(v) - Math.log(minX)) / (Math.log(maxX) - Math.log(minX))) * (width - pad.left - pad.right))
  const sy = (v: number) => height - pad.bottom - ((v - minY) / (maxY - minY || 1)) * (height - pad.top - pad.bottom)
  const parts = [
    `<line x1="${pad.left}" y1="${sy(minY)}" x2="${width - pad.right}" y2="${sy(minY)}" stroke="#9ca3af"/>`,
    `<line x1="${pad.left}" y1="${sy(minY)}" x2="${pad.left}" y2="${sy(maxY)}" stroke="#9ca3af"/>`,
  ]
  const step = (maxY - minY) / 4
  for (let i = 0; i <= 4; i++) {
    const v = minY + i * step
    parts.push(
      `<line x1="${pad.left}" y1="${sy(v)}" x2="${width - pad.right}" y2="${sy(v)}" stroke="#f3f4f6"/>`,
      `<text x="${pad.left - 6}" y="${sy(v) + 4}" font-size="11" text-anchor="end">${v.toFixed(3)}</text>`,
    )
  }
  for (const v of [...new Set(xs)])
    parts.push(`<text x="${sx(v)}" y="${height - pad.bottom + 14}" font-size="11" text-anchor="middle">${v}</text>`)
  parts.push(`<text x="${(width + pad.left) / 2}" y="${height - 8}" font-size="11" text-anchor="middle">${escapeHtml(xLabel)}</text>`)
  parts.push(
    `<text x="14" y="${(height - pad.bottom + pad.top) / 2}" font-size="11" text-anchor="middle" transform="rotate(-90 14 ${(height - pad.bottom + pad.top) / 2})">${escapeHtml(yLabel)}</text>`,
  )
  if (target)
    parts.push(
      `<line x1="${pad.left}" y1="${sy(target.value)}" x2="${width - pad.right}" y2="${sy(target.value)}" stroke="${ROLE_COLORS.target}" stroke-width="1.5" stroke-dasharray="5 3"/>`,
    )
  const keys: string[] = []
  series.forEach((s, i) => {
    const style = SERIES[i % SERIES.length]!
    const offset = (i - (series.length - 1) / 2) * 1.5 // overlapping lines at recall 1.0 stay visible side by side
    const path = s.points.map((p, j) => `${j ? 'L' : 'M'}${sx(p.x).toFixed(1)},${(sy(p.y) + offset).toFixed(1)}`).join(' ')
    parts.push(`<path d="${path}" fill="none" stroke="${style.color}" stroke-width="2" stroke-dasharray="${style.dash}"/>`)
    for (const p of s.points) parts.push(marker(style.marker, sx(p.x), sy(p.y) + offset, style.color))
    keys.push(swatch(style.color, s.label, style.dash || '1 0'))
  })
  if (target) keys.push(swatch(ROLE_COLORS.target, target.label, '5 3'))
  return figure(title, width, height, parts.join(''), keys)
}

export { escapeHtml }
