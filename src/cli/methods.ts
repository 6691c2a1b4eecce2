/**
 * The methods the CLI offers for --method: the library's registry, so there is no second list.
 */
import type { MethodChoice } from '../plan.js'
import { DflattenError } from '../errors.js'
import { methodNames } from '../methods/index.js'

export { methodNames }

/** A --method value as the library takes it; anything but `auto` or a method is a usage error. */
export function methodChoice(value: string | undefined): MethodChoice | undefined {
  if (value === undefined) return undefined
  const names = methodNames()
  if (value !== 'auto' && !names.includes(value)) {
    throw new DflattenError('usage', `unknown method ${value}; use auto, ${names.join(', ')}`)
  }
  return value
}
