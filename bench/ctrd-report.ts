/**
 * Reports of the containerd-store benchmark (ctrd.ts) and the registry benchmark (registry.ts):
 * a results-KIND.md with the table and the issue's ratios, the runs as results-KIND.json, and a
 * chart-KIND.svg drawn by report.ts's chart.
 */
import { rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { stats, svgChart, type ImageInfo, type ReportData, type RunRecord } from './report.js'
import type { Traffic } from './pulled.js'

export interface CtrdImage extends ImageInfo {
  /** The floor archive's new layer blob as stored (gzip on this store). */
  blob: { mediaType: string; size: number } | null
}

export interface ExtraRun extends RunRecord {
  /** `docker image inspect .Size` of the result (containerd store: its content, compressed). */
  resultSizeB?: number
  /** What the registry's access log shows for the run. */
  traffic?: Traffic
}

export interface CtrdData extends Omit<ReportData, 'images' | 'runs'> {
  images: CtrdImage[]
  runs: ExtraRun[]
}

const seconds = (x: number): string => (x < 10 ? x.toFixed(2) : x.toFixed(1))
const mb = (b: number): string => (b / 1e6).toFixed(b < 10e6 ? 1 : 0)

function ok(d: CtrdData, image: string, command: string): ExtraRun[] {
  return d.runs.filter((r) => r.image === image && r.command === command && r.ok)
}

export function median(d: CtrdData, image: string, command: string, f: (r: ExtraRun) => number | null | undefined = (r) => r.wallS): number | null {
  return stats(ok(d, image, command).flatMap((r) => { const v = f(r); return v === null || v === undefined ? [] : [v] }))?.median ?? null
}

function cell(values: number[], fmt: (x: number) => string, unit: string): string {
  const s = stats(values)
  if (!s) return '-'
  return s.n === 1 ? `${fmt(s.median)} ${unit}` : `${fmt(s.median)} ${unit} (${fmt(s.min)}–${fmt(s.max)})`
}

export function ratio(a: number | null, b: number | null, target: number): string {
  if (a === null || b === null || !b) return '-'
  const r = a / b
  return `${r.toFixed(2)}× (target ≤ ${target}×: ${r <= target ? 'met' : '**missed**'})`
}

/** The table every kind shares: per image and command, runs, wall, CPU, RSS, dockerd CPU. */
export function resultsTable(d: CtrdData, extra: { head: string; cell(runs: ExtraRun[]): string } | null): string[] {
  const out = [
    `| image | command | runs | wall | user+sys CPU | peak RSS |${extra ? ` ${extra.head} |` : ''}`,
    `|---|---|---:|---:|---:|---:|${extra ? '---:|' : ''}`,
  ]
  for (const i of d.images) {
    for (const c of d.settings.commands) {
      const all = d.runs.filter((r) => r.image === i.key && r.command === c.key)
      if (!all.length) continue
      const good = all.filter((r) => r.ok)
      const rss = good.flatMap((r) => (r.maxRssKB ? [r.maxRssKB * 1024] : []))
      out.push(
        `| ${i.key} | ${c.label.replace(/\|/g, '\\|')} | ${good.length}/${all.length} | ${cell(good.map((r) => r.wallS), seconds, 's')} | ` +
          `${cell(good.map((r) => r.cpuS), seconds, 's')} | ${rss.length ? cell(rss, mb, 'MB') : '-'} |${extra ? ` ${extra.cell(good)} |` : ''}`,
      )
    }
  }
  return out
}

export function header(d: CtrdData, title: string): string[] {
  const state = d.finishedAt ? `from ${d.startedAt} to ${d.finishedAt}` : `started ${d.startedAt}, **${d.interrupted ? 'interrupted' : 'still running (or killed)'}** after ${d.runs.length} runs`
  return [`# ${title}`, '', `Run ${state}: \`${d.command}\`.`, '', '## Machine', '', ...Object.entries(d.machine).map(([k, v]) => `- ${k}: ${v}`), '']
}

export function failures(d: CtrdData): string[] {
  const failed = d.runs.filter((r) => !r.ok)
  return failed.length ? ['## Failed runs', '', ...failed.map((r) => `- ${r.image} / ${r.command} / round ${r.round}: ${r.error ?? 'failed'}`), ''] : []
}

export function stageLines(d: CtrdData): string[] {
  const lines: string[] = []
  for (const i of d.images) {
    for (const c of d.settings.commands.filter((c) => c.isDflatten)) {
      const runs = ok(d, i.key, c.key).filter((r) => r.timings)
      const stages = Object.keys(runs[0]?.timings ?? {})
      if (!stages.length) continue
      lines.push(`- ${i.key}, ${c.label}: ${stages.map((st) => `${st} ${seconds(stats(runs.map((r) => r.timings?.[st] ?? 0))?.median ?? 0)} s`).join(', ')}`)
    }
  }
  return lines.length ? ['## dflatten stage times (median, from --json)', '', ...lines, ''] : []
}

/** How many rounds ran: one figure, or one per image where BENCH_ROUNDS_<IMAGE> set them apart. */
function roundsSaid(d: CtrdData): string {
  const per = d.images.map((i) => ({ key: i.key, n: new Set(d.runs.filter((r) => r.image === i.key).map((r) => r.round)).size }))
  const counts = new Set(per.map((p) => p.n))
  if (counts.size <= 1) return `${per[0]?.n ?? d.settings.rounds} round(s)`
  return `rounds per image: ${per.map((p) => `${p.key} ${p.n}`).join(', ')}`
}

/** Save against docker save + floor within each round, where a round has all three: how much the ratio moves. */
function perRound(d: CtrdData, image: string): string {
  const wall = (round: number, command: string): number | undefined => ok(d, image, command).find((r) => r.round === round)?.wallS
  const rounds = [...new Set(d.runs.filter((r) => r.image === image).map((r) => r.round))].sort((a, b) => a - b)
  const each = rounds.flatMap((n) => {
    const [s, saved, floor] = [wall(n, 'save'), wall(n, 'docker-save'), wall(n, 'floor')]
    return s !== undefined && saved !== undefined && floor !== undefined ? [`${(s / (saved + floor)).toFixed(2)}×`] : []
  })
  return each.length > 1 ? ` (per round: ${each.join(', ')})` : ''
}

function ctrdMarkdown(d: CtrdData): string {
  const out = header(d, 'dflatten benchmark: the containerd image store (Docker 26)')
  const s = d.settings
  out.push('## How it was measured', '')
  out.push(
    `- ${roundsSaid(d)}; per image and round the commands alternate (${s.commands.map((c) => c.key).join(', ')}) under the shared daemon lock. Medians, min–max in parentheses.`,
    '- The images are pulled-style: built on the classic daemon, pushed by `skopeo copy docker-daemon:… docker://127.0.0.1:PORT/…` (gzip layers) to a local docker-registry, then `docker pull localhost:PORT/…` into the containerd-store daemon.',
    `- Before each run, untimed: every result image is removed, \`sync\`, a ${s.settleS} s wait, then the daemon's containerd root (content store and snapshots) and the floor's archive are read once (warm page cache).`,
    '- The floor is `docker load -i` of `dflatten IMAGE --output FILE --output-layer-only` (written once, untimed): the new gzip layer, config and manifests, loaded into the daemon that has the base, so the daemon decompresses and unpacks it as it does for dflatten.',
    "- peak RSS: GNU time's max RSS, the largest of node and its children. Result size: `docker image inspect .Size` (this store counts the layers' compressed content).",
    '',
    '## Images',
    '',
    '| image | layers | content size | new layer (tar) | new layer (blob) | default method |',
    '|---|---:|---:|---:|---:|---|',
  )
  for (const i of d.images) {
    out.push(`| \`${i.ref}\` | ${i.layers} | ${mb(i.sizeB)} MB | ${mb(i.flatLayerB)} MB | ${i.blob ? `${mb(i.blob.size)} MB (${i.blob.mediaType.split('.').at(-1) ?? ''})` : '-'} | ${i.defaultMethod} |`)
  }
  const base = d.images.at(0)
  if (base) out.push('', `Base: \`${base.baseRef}\`, ${mb(base.baseSizeB)} MB.`)
  out.push('', '## Results', '')
  out.push(...resultsTable(d, { head: 'result size', cell: (runs) => cell(runs.flatMap((r) => (r.resultSizeB ? [r.resultSizeB] : [])), mb, 'MB') }))
  out.push('', '![wall time per image and command](chart-ctrd.svg)', '', "## Issue 14's targets", '')
  for (const i of d.images) {
    const size = median(d, i.key, i.defaultMethod, (r) => r.resultSizeB)
    const floor = median(d, i.key, 'floor')
    const saved = median(d, i.key, 'docker-save')
    const rss = d.settings.commands
      .filter((c) => c.isDflatten)
      .map((c) => {
        const top = Math.max(...ok(d, i.key, c.key).map((r) => (r.maxRssKB ?? 0) * 1024), 0)
        return `${c.key} ${mb(top)} MB (${top < 150e6 ? 'met' : '**missed**'})`
      })
    out.push(
      `- **${i.key}**: result / original content ${i.key === 'medium' ? ratio(size, i.sizeB, 0.6) : size !== null ? `${(size / i.sizeB).toFixed(2)}×` : '-'}` +
        `; result / (base + the new layer's blob) ${ratio(size, i.blob ? i.baseSizeB + i.blob.size : null, 1.1)}` +
        `; default (${i.defaultMethod}) / floor ${ratio(median(d, i.key, i.defaultMethod), floor, 1.5)}` +
        `; save / (docker save + floor) ${ratio(median(d, i.key, 'save'), saved !== null && floor !== null ? saved + floor : null, 1.3)}${perRound(d, i.key)}` +
        `; highest peak RSS (target < 150 MB): ${rss.join(', ')}.`,
    )
  }
  out.push('', "The issue's 1.1× is against base + `gzip -6` of the new layer; the blob here is dflatten's default gzip level, so that ratio shows how much the result adds beyond its two parts.")
  out.push('', ...stageLines(d), ...failures(d))
  return out.join('\n')
}

async function writeAtomic(path: string, text: string): Promise<void> {
  await writeFile(`${path}.tmp`, text)
  await rename(`${path}.tmp`, path)
}

export async function writeExtraReport(dir: string, kind: string, d: CtrdData, md: (d: CtrdData) => string): Promise<void> {
  await writeAtomic(join(dir, `results-${kind}.md`), md(d) + '\n')
  await writeAtomic(join(dir, `chart-${kind}.svg`), svgChart(d))
  await writeAtomic(join(dir, `results-${kind}.json`), JSON.stringify(d, null, 1) + '\n')
}

export function writeCtrdReport(dir: string, d: CtrdData): Promise<void> {
  return writeExtraReport(dir, 'ctrd', d, ctrdMarkdown)
}
