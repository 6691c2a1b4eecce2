/**
 * A model of how a daemon applies image layers (OCI whiteouts and opaque markers), and random
 * layers that only do what a real build step can leave behind. Methods are checked against it.
 */
import type { LayerEntry } from '../../src/entry.js'
import { must } from './must.js'

export type Node = { type: 'dir' | 'file' | 'symlink'; content?: string }
export type Fs = Map<string, Node>

/**
 * Apply one layer as Docker does: opaque and whiteouts act on what was there before it. An opaque
 * marker spares what the layer itself wrote before it, wherever it comes in the layer (Docker's
 * applier keeps the layer's unpacked paths, overlayfs marks the directory).
 */
export function apply(fs: Fs, layer: Array<{ name: string; type: string; content?: string; link?: string }>): void {
  const before = new Set(fs.keys())
  const written = new Set<string>()
  const drop = (p: string, self: boolean): void => {
    for (const k of [...fs.keys()]) if ((self && k === p) || k.startsWith(p + '/') || (p === '' && k !== '')) fs.delete(k)
  }
  for (const e of layer) {
    const base = e.name.slice(e.name.lastIndexOf('/') + 1)
    const dir = e.name.includes('/') ? e.name.slice(0, e.name.lastIndexOf('/')) : ''
    if (base === '.wh..wh..opq') {
      for (const k of [...fs.keys()]) if (before.has(k) && !written.has(k) && (dir === '' ? k !== '' : k.startsWith(dir + '/'))) fs.delete(k)
    } else if (base.startsWith('.wh.')) {
      drop((dir ? dir + '/' : '') + base.slice(4), true)
    } else if (e.type === 'dir') {
      if (fs.get(e.name)?.type !== 'dir') drop(e.name, true)
      fs.set(e.name, { type: 'dir' })
      written.add(e.name)
    } else {
      drop(e.name, true)
      if (e.type === 'link') fs.set(e.name, { ...must(fs.get(must(e.link, 'a link target')), `${e.link} in the model`) })
      else fs.set(e.name, { type: e.type as 'file' | 'symlink', content: e.content })
      written.add(e.name)
    }
  }
}

export function rng(seed: number): () => number {
  let s = seed
  return () => ((s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff)
}

export const NAMES = ['a', 'b', 'c']

/** A random layer over `fs` that only does what a real build step can leave behind. */
export function randomLayer(fs: Fs, r: () => number, tag: string) {
  const out: Array<{ name: string; type: string; content?: string; link?: string }> = []
  const paths = (depth: number, prefix = ''): string[] =>
    depth === 0 ? [] : NAMES.flatMap((n) => [prefix + n, ...paths(depth - 1, prefix + n + '/')])
  const all = paths(3)
  const touched = new Set<string>()
  for (let i = 0; i < 4; i++) {
    const p = all[Math.floor(r() * all.length)]
    if (touched.has(p) || [...touched].some((t) => p.startsWith(t + '/') || t.startsWith(p + '/'))) continue
    touched.add(p)
    const parents = p.split('/').slice(0, -1).map((_, j, a) => a.slice(0, j + 1).join('/'))
    if (parents.some((q) => fs.has(q) && fs.get(q)?.type !== 'dir')) continue
    for (const q of parents) out.push({ name: q, type: 'dir' })
    const roll = r()
    const dir = p.includes('/') ? p.slice(0, p.lastIndexOf('/') + 1) : ''
    const name = p.slice(dir.length)
    if (roll < 0.25 && fs.has(p)) out.push({ name: `${dir}.wh.${name}`, type: 'file' })
    else if (roll < 0.4 && fs.get(p)?.type === 'dir') out.push({ name: p, type: 'dir' }, { name: `${p}/.wh..wh..opq`, type: 'file' })
    else if (roll < 0.6) out.push({ name: p, type: 'dir' })
    else if (roll < 0.7) out.push({ name: p, type: 'symlink', content: `->${tag}${i}` })
    else {
      out.push({ name: p, type: 'file', content: `${tag}${i}` })
      const twin = `${dir}${name}-link`
      if (roll > 0.9 && !fs.has(twin)) out.push({ name: twin, type: 'link', link: p })
    }
  }
  // Real layers list a directory before what is in it; duplicates keep the first.
  const seen = new Set<string>()
  return out.filter((e) => !seen.has(e.name) && seen.add(e.name))
}

export type RawLayer = ReturnType<typeof randomLayer>

export function whiteName(p: string): string {
  const i = p.lastIndexOf('/')
  return i === -1 ? `.wh.${p}` : `${p.slice(0, i)}/.wh.${p.slice(i + 1)}`
}

export function opqName(p: string): string {
  return p ? `${p}/.wh..wh..opq` : '.wh..wh..opq'
}

export type ModelEntry = { name: string; type: string; content?: string; link?: string }

/** A method's layer entry as the model's tar-style entry; `content` is a file's bytes. */
export function asModel(e: LayerEntry, content: string | undefined): ModelEntry {
  const p = e.path.toString()
  if (e.kind === 'whiteout') return { name: whiteName(p), type: 'file' }
  if (e.kind === 'opaque') return { name: opqName(p), type: 'file' }
  if (e.kind === 'hardlink') return { name: p, type: 'link', link: must(e.linkname, 'a hardlink target').toString() }
  if (e.kind === 'symlink') return { name: p, type: 'symlink', content: must(e.linkname, 'a symlink target').toString() }
  return { name: p, type: e.kind, content }
}

/** A model filesystem as sorted lines, to compare. */
export function show(fs: Fs): string[] {
  return [...fs].map(([k, v]) => `${k} ${v.type} ${v.content ?? ''}`).sort()
}
