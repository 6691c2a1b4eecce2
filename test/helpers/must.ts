/**
 * `value`, which the test's own setup guarantees is there; if it is not, the test fails here,
 * saying what was missing (where a non-null assertion would fail later, or not at all).
 */
export function must<T>(value: T | null | undefined, what: string): T {
  if (value === null || value === undefined) throw new Error(`test setup: ${what} is missing`)
  return value
}
