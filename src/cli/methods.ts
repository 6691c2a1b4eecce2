/**
 * The methods the CLI offers for --method. The one place the CLI learns which exist, so it
 * follows the library's list (and, later, its registry) without a second copy.
 */
import { METHODS, type MethodChoice } from '../plan.js'
import { DflattenError } from '../errors.js'

/** The methods the library has, in its order (without `auto`). */
export function methodNames(): string[] {
  return [...METHODS]
}

/** A --method value as the library takes it; anything but `auto` or a method is a usage error. */
export function methodChoice(value: string | undefined): MethodChoice | undefined {
  if (value === undefined) return undefined
  const names = methodNames()
  if (value !== 'auto' && !names.includes(value)) {
    throw new DflattenError('usage', `unknown method ${value}; use auto, ${names.join(', ')}`)
  }
  return value as MethodChoice
}
