/**
 * The methods by name. `auto` asks them in order whether they can work here and takes the first
 * that can; overlay-copy, the cross-check, is only ever taken when asked for.
 */
import { DflattenError } from '../errors.js'
import type { Method, Probe } from './method.js'
import { overlay } from './overlay/index.js'
import { overlayCopy } from './overlay-copy/index.js'
import { save } from './save/index.js'
import { snapshots } from './snapshots/index.js'
import { registry } from './registry/index.js'

// registry is planned from docker:// and oci: references (src/sources), never picked by auto.
const METHODS: Method[] = [overlay, overlayCopy, snapshots, save, registry]
const AUTO: Method[] = [overlay, snapshots, save]
/** Works wherever the docker CLI does: what a refusal points to. */
const FALLBACK = save.name

export function methodNames(): string[] {
  return METHODS.map((m) => m.name)
}

export function allMethods(): readonly Method[] {
  return METHODS
}

export function getMethod(name: string): Method {
  const m = METHODS.find((m) => m.name === name)
  if (!m) throw new DflattenError('usage', `unknown method ${name}; use auto, ${methodNames().join(', ')}`)
  return m
}

/**
 * The method to use and why (for --verbose). An explicit choice that cannot work here is refused
 * with the reason; `auto` says why each method before the one it took cannot.
 */
export async function pickMethod(choice: string, probe: Probe): Promise<{ method: Method; reason: string }> {
  if (choice !== 'auto') {
    const method = getMethod(choice)
    const can = await method.available(probe)
    const instead = choice === FALLBACK ? 'auto' : `${FALLBACK} (or auto)`
    if (!can.ok) throw new DflattenError('refused-driver', `--method ${choice} cannot work here: ${can.reason}; use --method ${instead}`)
    return { method, reason: 'asked for' }
  }
  const refused: string[] = []
  for (const method of AUTO) {
    const can = await method.available(probe)
    if (can.ok) return { method, reason: refused.length ? refused.join('; ') : can.reason }
    refused.push(`the ${method.name} method cannot work: ${can.reason}`)
  }
  throw new DflattenError('refused-driver', `no method can work here: ${refused.join('; ')}`)
}

export type { Method, MethodContext, Probe, PlanFacts, Availability, Difference, ImageParts, LayerSource } from './method.js'
