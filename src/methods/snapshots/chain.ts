/**
 * Which of containerd's snapshots are the image's layers. Each layer is unpacked as a committed
 * snapshot whose key is its chain id, on top of the one below. An image the daemon committed from
 * a container (the classic builder's RUN step) may have a container's `-init` snapshot in
 * between, which holds Docker's files for containers, not the image's: those are not layers, and
 * their dirs are left out.
 */
import { chainIds } from '../../docker-store.js'

export type Walk =
  | { ok: true; /** The snapshot keys from the top layer down to the bottom, as a view's lowerdir lists their dirs. */ keys: string[]; chain: string[]; skipped: number }
  | { ok: false; reason: string }

/** Walk down from the top layer's snapshot; every layer's chain id must be met, in order. */
export function walkChain(parents: Map<string, string>, diffIds: string[]): Walk {
  const chain = chainIds(diffIds)
  if (!chain.length) return { ok: true, keys: [], chain, skipped: 0 }
  const top = chain[chain.length - 1]
  if (!parents.has(top)) {
    return { ok: false, reason: `the image's layers are not unpacked as snapshots (no snapshot ${top.slice(0, 19)}); the store holds only their blobs until a container of the image is made` }
  }
  const keys: string[] = []
  for (let key = top; key; key = parents.get(key) ?? '') {
    if (keys.length > 4 * chain.length + 8 || !parents.has(key)) return { ok: false, reason: `containerd's snapshot chain below ${top.slice(0, 19)} is broken at ${key.slice(0, 19)}` }
    keys.push(key)
  }
  // Top down, the chain ids must come in reverse order, each met once.
  let next = chain.length - 1
  for (const k of keys) if (k === chain[next]) next--
  if (next !== -1) return { ok: false, reason: `containerd's snapshots below ${top.slice(0, 19)} do not hold layer ${next + 1} of the image` }
  return { ok: true, keys, chain, skipped: keys.length - chain.length }
}

/** Each layer's dir, base first, from a view's lower dirs (listed as `keys`, top first). */
export function layerDirsOf(walk: Extract<Walk, { ok: true }>, lowers: string[]): string[] | null {
  if (lowers.length !== walk.keys.length) return null
  return walk.chain.map((id) => lowers[walk.keys.indexOf(id)])
}
