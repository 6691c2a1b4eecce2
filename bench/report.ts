/**
 * The benchmark's report: bench/results.md (machine, settings, images, the table, ratios to the
 * floor), bench/chart.svg (hand-written: grouped bars of median wall time with min-max whiskers)
 * and bench/results.json (every run, for whoever wants to look again). All three are rewritten
 * after every run, so an interrupted benchmark still leaves what it measured.
 */
import { readFile, rename, writeFile } from 'node:fs/promises'
import { cpus, release, totalmem } from 'node:os'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'

export interface RunRecord {
  image: string
  command: string
  round: number
  ok: boolean
  error?: string
  wallS: number
  cpuS: number
  maxRssKB: number | null
  dockerdCpuS: number | null
  peakDiskB: number
  keptDiskB: number
  load1: number
  /** The image the run left under its result name, and that image's top (new) layer. */
  result?: { id: string; topLayer: string }
  /** dflatten's own stage times (--json), for the dflatten commands. */
  timings?: Record<string, number>
}

export interface ImageInfo {
  key: string
  ref: string
  description: string
  layers: number
  sizeB: number
  baseRef: string
  baseSizeB: number
  flatLayerB: number
  floorArchiveB: number
  /** The image id the floor's archive holds. */
  flatImageId: string
  defaultMethod: string
}

export interface Settings {
  scale: number
  rounds: number
  manyLayers: number
  settleS: number
  cache: 'warm' | 'drop'
  commands: Array<{ key: string; label: string; isDflatten: boolean }>
}

export interface ReportData {
  /** The command line that reproduces the run, BENCH_* knobs included. */
  command: string
  startedAt: string
  finishedAt: string | null
  interrupted: boolean
  machine: Record<string, string>
  settings: Settings
  images: ImageInfo[]
  runs: RunRecord[]
}

// ---------------------------------------------------------------------------------------------
// The machine.

async function run(cmd: string, args: string[]): Promise<string> {
  const r = await execa(cmd, args, { reject: false })
  return r.exitCode === 0 ? r.stdout.trim() : '?'
}

export async function machineInfo(dockerRoot: string, repo: string): Promise<Record<string, string>> {
  const pkg = JSON.parse(await readFile(join(repo, 'package.json'), 'utf8')) as { version: string }
  const rev = await run('git', ['-C', repo, 'rev-parse', '--short', 'HEAD'])
  const dirty = (await run('git', ['-C', repo, 'status', '--porcelain', '--', 'src', 'bin'])) ? ' + uncommitted changes in src/bin' : ''
  const [source = '?', fstype = '?', size = '?', avail = '?', options = '?'] = (
    await run('findmnt', ['-no', 'SOURCE,FSTYPE,SIZE,AVAIL,OPTIONS', '-T', dockerRoot])
  ).split(/\s+/)
  // "/dev/vda[/var/lib/docker]" for a bind mount: the device is the part before the bracket.
  const dev = source.replace(/\[.*$/, '').replace('/dev/', '')
  const rota = await readFile(`/sys/block/${dev}/queue/rotational`, 'utf8').then((s) => (s.trim() === '1' ? 'rotational' : 'non-rotational'), () => '')
  return {
    cpus: `${availableParallelism()} (nproc), ${cpus()[0]?.model ?? '?'}`,
    memory: `${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    kernel: release(),
    disk: `${dockerRoot} on ${source}, ${fstype}, ${size} (${avail} free at the start), ${rota || '?'} as the kernel sees it, mount options ${options}`,
    docker: await run('docker', ['version', '--format', 'daemon {{.Server.Version}}, client {{.Client.Version}}']),
    storage: await run('docker', ['info', '--format', '{{.Driver}}']),
    node: process.version,
    dflatten: `${pkg.version} at ${rev}${dirty}`,
  }
}

// ---------------------------------------------------------------------------------------------
// Numbers.

interface Stats {
  n: number
  median: number
  min: number
  max: number
}

export function stats(values: number[]): Stats | null {
  if (!values.length) return null
  const v = [...values].sort((a, b) => a - b)
  const mid = v.length >> 1
  const median = v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2
  return { n: v.length, median, min: v[0], max: v[v.length - 1] }
}

function okRuns(d: ReportData, image: string, command: string): RunRecord[] {
  return d.runs.filter((r) => r.image === image && r.command === command && r.ok)
}

/** Text for a markdown table cell: a bare | would end the cell. */
function td(s: string): string {
  return s.replace(/\|/g, '\\|')
}

function seconds(x: number): string {
  return x < 10 ? x.toFixed(2) : x.toFixed(1)
}

function mb(bytes: number): string {
  return (bytes / 1e6).toFixed(bytes < 10e6 ? 1 : 0)
}

/** "median (min–max)" in one unit, or "-" when there is nothing to show. */
function cell(values: Array<number | null>, fmt: (x: number) => string, unit: string): string {
  const s = stats(values.filter((v): v is number => v !== null))
  if (!s) return '-'
  if (s.n === 1) return `${fmt(s.median)} ${unit}`
  return `${fmt(s.median)} ${unit} (${fmt(s.min)}–${fmt(s.max)})`
}

function medianWall(d: ReportData, image: string, command: string): number | null {
  return stats(okRuns(d, image, command).map((r) => r.wallS))?.median ?? null
}

// ---------------------------------------------------------------------------------------------
// results.md

export function markdown(d: ReportData): string {
  const s = d.settings
  const out: string[] = []
  out.push('# dflatten benchmark')
  out.push('')
  if (s.scale !== 1 || s.manyLayers !== 100) {
    out.push(
      `> **Reduced run** (BENCH_SCALE=${s.scale}, ${s.manyLayers}-layer "many" image): sizes and times are not the full benchmark's.`,
    )
    out.push('')
  }
  const state = d.finishedAt
    ? `from ${d.startedAt} to ${d.finishedAt}`
    : `started ${d.startedAt}, **${d.interrupted ? 'interrupted' : 'still running (or killed)'}** after ${d.runs.length} runs`
  out.push(`Run ${state}: \`${d.command}\`.`)
  out.push('')
  out.push('## Machine')
  out.push('')
  for (const [k, v] of Object.entries(d.machine)) out.push(`- ${k}: ${v}`)
  out.push('')
  out.push('## How it was measured')
  out.push('')
  out.push(
    `- ${s.rounds} round(s). Per image, the commands alternate: ${s.commands.map((c) => c.key).join(', ')}, then again in the next round. ` +
      'Medians over the rounds, min–max in parentheses; failed runs are left out and listed below.',
  )
  out.push(
    '- Before each run, untimed: its previous result image is removed (`docker rmi`; the dflatten methods and the floor load the same image id, so each of them removes it), ' +
      `then \`sync\`, then ${s.settleS > 0 ? `a ${s.settleS} s wait so the run does not pay for the slow creates that follow large deletions on this disk` : 'no wait: each run follows the removal of its own previous result directly, so runs loading the same image pay for the same deletion'}, then ` +
      (s.cache === 'warm'
        ? 'its inputs are read once (the image\'s layer dirs, or the floor\'s archive) so they are in the page cache: **warm** runs.'
        : 'the page cache is dropped (`echo 3 > /proc/sys/vm/drop_caches`): **cold** runs.'),
  )
  out.push(
    '- dflatten runs as `dflatten IMAGE -t dfb-flat-KEY:METHOD --base dfb-debian:bookworm --method METHOD --no-cache --json`; ' +
      'the floor is `docker load -i` of the archive `dflatten --output` wrote once beforehand (only the new layer, config and manifests: the daemon has the base); ' +
      '`docker export | docker import` works on a container created beforehand (untimed); `docker save` writes to /dev/null.',
  )
  out.push(
    '- wall: start to exit. CPU: user+sys of the command and every child it waited for (GNU time). ' +
      "dflatten RSS: GNU time's max RSS, the largest of node and its children (rsync, the docker CLI). " +
      'dockerd CPU: utime+stime of the daemon over the run (the load happens there). ' +
      'peak disk: highest used bytes, sampled every 100 ms on the filesystems of $TMPDIR and Docker\'s root, minus the used bytes before the run; it includes the new layer the daemon stores, and other activity on the disk during the run.',
  )
  out.push('')
  out.push('## Images')
  out.push('')
  out.push('| image | layers | size | above the base | flattened layer | default method | what it is |')
  out.push('|---|---:|---:|---:|---:|---|---|')
  for (const i of d.images) {
    out.push(
      `| \`${i.ref}\` | ${i.layers} | ${mb(i.sizeB)} MB | ${mb(i.sizeB - i.baseSizeB)} MB | ${mb(i.flatLayerB)} MB | ${i.defaultMethod} | ${i.description} |`,
    )
  }
  const base = d.images.at(0)
  if (base) out.push(`\nBase of all of them: \`${base.baseRef}\`, ${mb(base.baseSizeB)} MB, one layer (debootstrap --variant=minbase bookworm, docker import).`)
  out.push('')
  out.push('## Results')
  out.push('')
  out.push('| image | command | runs | wall | user+sys CPU | dflatten peak RSS | dockerd CPU | peak disk |')
  out.push('|---|---|---:|---:|---:|---:|---:|---:|')
  for (const i of d.images) {
    for (const c of s.commands) {
      const all = d.runs.filter((r) => r.image === i.key && r.command === c.key)
      if (!all.length) continue
      const ok = all.filter((r) => r.ok)
      out.push(
        `| ${i.key} | ${td(c.label)} | ${ok.length}/${all.length} | ${cell(ok.map((r) => r.wallS), seconds, 's')} | ` +
          `${cell(ok.map((r) => r.cpuS), seconds, 's')} | ` +
          `${c.isDflatten ? cell(ok.map((r) => r.maxRssKB && r.maxRssKB * 1024), mb, 'MB') : '-'} | ` +
          `${cell(ok.map((r) => r.dockerdCpuS), seconds, 's')} | ${cell(ok.map((r) => r.peakDiskB), mb, 'MB')} |`,
      )
    }
  }
  out.push('')
  out.push('![wall time per image and command](chart.svg)')
  out.push('')
  out.push('## Against the floor')
  out.push('')
  out.push('Median wall time divided by the floor\'s median (1.00 = as fast as `docker load` of the finished layer alone).')
  out.push('')
  const ratioCommands = s.commands.filter((c) => c.key !== 'floor')
  out.push(`| image | ${ratioCommands.map((c) => td(c.label)).join(' | ')} |`)
  out.push(`|---|${ratioCommands.map(() => '---:').join('|')}|`)
  for (const i of d.images) {
    const floor = medianWall(d, i.key, 'floor')
    const cells = ratioCommands.map((c) => {
      const m = medianWall(d, i.key, c.key)
      if (m === null || !floor) return '-'
      const isDefault = c.key === i.defaultMethod ? ' (default)' : ''
      return `${(m / floor).toFixed(2)}×${isDefault}`
    })
    out.push(`| ${i.key} | ${cells.join(' | ')} |`)
  }
  out.push('')
  // The save method's own yardstick: it cannot avoid reading the image from the daemon once.
  const saveRatios = d.images.flatMap((i) => {
    const [m, saved, floor] = [medianWall(d, i.key, 'save'), medianWall(d, i.key, 'docker-save'), medianWall(d, i.key, 'floor')]
    return m !== null && saved !== null && floor !== null ? [`${i.key} ${(m / (saved + floor)).toFixed(2)}×`] : []
  })
  if (saveRatios.length) {
    out.push(`\`--method save\` against \`docker save\` + the floor (both medians): ${saveRatios.join(', ')}.`)
    out.push('')
  }
  const stageLines = stageBreakdown(d)
  if (stageLines.length) {
    out.push('## dflatten stage times (median, from --json)')
    out.push('')
    out.push(...stageLines)
    out.push('')
  }
  const checks = sameLayerCheck(d)
  if (checks.length) {
    out.push('## Checks')
    out.push('')
    out.push(...checks)
    out.push('')
  }
  const failed = d.runs.filter((r) => !r.ok)
  if (failed.length) {
    out.push('## Failed runs')
    out.push('')
    for (const r of failed) out.push(`- ${r.image} / ${r.command} / round ${r.round}: ${r.error ?? 'failed'}`)
    out.push('')
  }
  return out.join('\n')
}

function stageBreakdown(d: ReportData): string[] {
  const lines: string[] = []
  for (const i of d.images) {
    for (const c of d.settings.commands.filter((c) => c.isDflatten)) {
      const runs = okRuns(d, i.key, c.key).filter((r) => r.timings)
      if (!runs.length) continue
      const stages = Object.keys(runs[0].timings ?? {})
      // eslint-disable-next-line @typescript-eslint/no-non-null-assertion -- runs is not empty (checked above), so stats has a median
      const parts = stages.map((st) => `${st} ${seconds(stats(runs.map((r) => r.timings?.[st] ?? 0))!.median)} s`)
      lines.push(`- ${i.key}, ${c.label}: ${parts.join(', ')}`)
    }
  }
  return lines
}

/**
 * Every dflatten method and the floor should load the same new layer: same content in the same
 * order gives the same diff id. (Image ids differ by design: the history comment names the
 * method, so that a cache hit is the image that method builds.)
 */
function sameLayerCheck(d: ReportData): string[] {
  const lines: string[] = []
  const family = new Set(['floor', ...d.settings.commands.filter((c) => c.isDflatten).map((c) => c.key)])
  for (const i of d.images) {
    const byLayer = new Map<string, Set<string>>()
    for (const r of d.runs) {
      if (r.image !== i.key || !r.ok || !r.result || !family.has(r.command)) continue
      const cmds = byLayer.get(r.result.topLayer) ?? new Set<string>()
      byLayer.set(r.result.topLayer, cmds.add(r.command))
    }
    if (!byLayer.size) continue
    const short = (digest: string): string => digest.slice(7, 19)
    if (byLayer.size === 1) {
      const [[layer, cmds]] = [...byLayer]
      lines.push(`- ${i.key}: ${[...cmds].join(', ')} loaded the same new layer, ${short(layer)}.`)
    } else {
      const parts = [...byLayer].map(([layer, cmds]) => `${short(layer)} from ${[...cmds].join(', ')}`)
      lines.push(`- ${i.key}: **the new layers differ**: ${parts.join('; ')}.`)
    }
  }
  return lines
}

// ---------------------------------------------------------------------------------------------
// chart.svg: one panel per image (its own linear y axis, since the images differ in size by 10x
// and more), a bar per command at its median wall time, a whisker from min to max.

const COLORS = ['#1b6ca8', '#5fa8d3', '#9ecae1', '#e07a24', '#7b9e3a', '#8c6bb1', '#b04a5a']

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

/** Round numbers for axis ticks: 1, 2 or 5 times a power of ten, about five of them. */
function ticks(max: number): number[] {
  if (max <= 0) return [0, 1]
  const raw = max / 5
  const p = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 5, 10].map((m) => m * p).find((st) => st >= raw) ?? 10 * p
  const out: number[] = []
  for (let t = 0; t <= max + step * 1e-9; t += step) out.push(Number(t.toPrecision(12)))
  if (out[out.length - 1] < max) out.push(Number((out[out.length - 1] + step).toPrecision(12)))
  return out
}

function tickLabel(t: number): string {
  return Number.isInteger(t) ? String(t) : String(Number(t.toPrecision(3)))
}

export function svgChart(d: ReportData): string {
  const commands = d.settings.commands
  const images = d.images.filter((i) => commands.some((c) => okRuns(d, i.key, c.key).length))
  const bar = 26
  const gap = 6
  const panelInner = commands.length * (bar + gap) + gap
  const panelLeft = 58
  const panelRight = 18
  const panelW = panelLeft + panelInner + panelRight
  const top = 96
  const plotH = 260
  const bottom = 76
  const width = Math.max(panelW * Math.max(images.length, 1) + 20, 780)
  const height = top + plotH + bottom
  const o: string[] = []
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">`)
  o.push(`<rect width="${width}" height="${height}" fill="white"/>`)
  const scaleNote = d.settings.scale !== 1 ? ` (BENCH_SCALE=${d.settings.scale})` : ''
  o.push(`<text x="10" y="22" font-size="15" font-weight="bold">Wall time per image: median of ${d.settings.rounds} round(s), whiskers min–max${esc(scaleNote)}</text>`)
  // Legend, in rows of three.
  commands.forEach((c, k) => {
    const x = 10 + (k % 3) * 250
    const y = 40 + Math.floor(k / 3) * 18
    o.push(`<rect x="${x}" y="${y}" width="12" height="12" fill="${COLORS[k % COLORS.length]}"/>`)
    o.push(`<text x="${x + 17}" y="${y + 10}">${esc(c.label)}</text>`)
  })
  images.forEach((img, p) => {
    const x0 = 10 + p * panelW
    const px = x0 + panelLeft
    const values = commands.flatMap((c) => okRuns(d, img.key, c.key).map((r) => r.wallS))
    const t = ticks(Math.max(...values, 0))
    const ymax = t[t.length - 1]
    const y = (v: number): number => top + plotH - (v / ymax) * plotH
    for (const tv of t) {
      o.push(`<line x1="${px}" x2="${px + panelInner}" y1="${y(tv).toFixed(1)}" y2="${y(tv).toFixed(1)}" stroke="#e4e4e4"/>`)
      o.push(`<text x="${px - 5}" y="${(y(tv) + 4).toFixed(1)}" text-anchor="end" fill="#444">${tickLabel(tv)}</text>`)
    }
    o.push(`<line x1="${px}" x2="${px}" y1="${top}" y2="${top + plotH}" stroke="#333"/>`)
    o.push(`<line x1="${px}" x2="${px + panelInner}" y1="${top + plotH}" y2="${top + plotH}" stroke="#333"/>`)
    const cy = top + plotH / 2
    o.push(`<text x="${x0 + 14}" y="${cy}" text-anchor="middle" transform="rotate(-90 ${x0 + 14} ${cy})" fill="#333">wall time (s)</text>`)
    commands.forEach((c, k) => {
      const s = stats(okRuns(d, img.key, c.key).map((r) => r.wallS))
      const bx = px + gap + k * (bar + gap)
      if (!s) {
        o.push(`<text x="${bx + bar / 2}" y="${top + plotH - 4}" text-anchor="middle" fill="#999" font-size="10">n/a</text>`)
        return
      }
      const cx = bx + bar / 2
      o.push(`<rect x="${bx}" y="${y(s.median).toFixed(1)}" width="${bar}" height="${(top + plotH - y(s.median)).toFixed(1)}" fill="${COLORS[k % COLORS.length]}"><title>${esc(`${img.key}, ${c.label}: median ${seconds(s.median)} s, min ${seconds(s.min)} s, max ${seconds(s.max)} s, ${s.n} run(s)`)}</title></rect>`)
      if (s.max > s.min) {
        o.push(`<line x1="${cx}" x2="${cx}" y1="${y(s.max).toFixed(1)}" y2="${y(s.min).toFixed(1)}" stroke="#222" stroke-width="1.2"/>`)
        for (const v of [s.min, s.max]) o.push(`<line x1="${cx - 5}" x2="${cx + 5}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#222" stroke-width="1.2"/>`)
      }
      o.push(`<text x="${cx}" y="${(y(s.max) - 4).toFixed(1)}" text-anchor="middle" font-size="10" fill="#222">${seconds(s.median)}</text>`)
    })
    // The floor's median across the panel: how far each bar is from the least possible.
    const fk = commands.findIndex((c) => c.key === 'floor')
    const floor = fk >= 0 ? stats(okRuns(d, img.key, 'floor').map((r) => r.wallS)) : null
    if (floor) {
      const fy = y(floor.median).toFixed(1)
      o.push(`<line x1="${px}" x2="${px + panelInner}" y1="${fy}" y2="${fy}" stroke="${COLORS[fk % COLORS.length]}" stroke-dasharray="4 3"/>`)
    }
    const label = `${img.key}: ${img.layers} layers, ${mb(img.sizeB)} MB`
    o.push(`<text x="${px + panelInner / 2}" y="${top + plotH + 20}" text-anchor="middle" font-weight="bold">${esc(label)}</text>`)
    o.push(`<text x="${px + panelInner / 2}" y="${top + plotH + 36}" text-anchor="middle" fill="#555" font-size="11">flattened layer ${mb(img.flatLayerB)} MB</text>`)
  })
  o.push(`<text x="${width / 2}" y="${height - 10}" text-anchor="middle" fill="#333">image (each panel has its own scale; dashed line: the floor's median)</text>`)
  o.push('</svg>')
  return o.join('\n') + '\n'
}

// ---------------------------------------------------------------------------------------------

async function writeAtomic(path: string, text: string): Promise<void> {
  await writeFile(`${path}.tmp`, text)
  await rename(`${path}.tmp`, path)
}

export async function writeReport(dir: string, d: ReportData): Promise<void> {
  await writeAtomic(join(dir, 'results.md'), markdown(d) + '\n')
  await writeAtomic(join(dir, 'chart.svg'), svgChart(d))
  await writeAtomic(join(dir, 'results.json'), JSON.stringify(d, null, 1) + '\n')
}
