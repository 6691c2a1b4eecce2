/**
 * An error meant for the user: its message is one line that says what went wrong and,
 * where there is one, what to do about it. Anything else that escapes is a bug.
 */
export class DflattenError extends Error {
  readonly exitCode: number
  constructor(message: string, exitCode = 1) {
    super(message)
    this.name = 'DflattenError'
    this.exitCode = exitCode
  }
}

/** Thrown when the user interrupted the run (SIGINT, SIGTERM). */
export class Interrupted extends DflattenError {
  constructor(signal: string) {
    super(`interrupted by ${signal}; cleaned up`, signal === 'SIGINT' ? 130 : 143)
    this.name = 'Interrupted'
  }
}

export function isDflattenError(e: unknown): e is DflattenError {
  return e instanceof DflattenError
}
