/**
 * An error meant for the user: its message is one line that says what went wrong and, where
 * there is one, what to do about it. Its code says what kind of failure it is, so callers
 * (the CLI's exit codes, `findImage`'s "missing is fine") branch on the code, never on the text.
 * Anything else that escapes is a bug.
 */
export const ERROR_CODES = [
  /** The command line or the library call asked for something malformed or contradictory. */
  'usage',
  /** What was typed is not an image reference (name[:tag], name@digest, id, docker://...). */
  'bad-reference',
  /** An image reference names no image. */
  'image-not-found',
  /** `--base` is not an ancestor of the image (or is the image itself). */
  'not-an-ancestor',
  /** The result's name would take an image's own name. */
  'name-clash',
  /** The image is one dflatten does not flatten (Windows, ...). */
  'unsupported-image',
  /** The Docker daemon cannot be reached, or refuses us. */
  'daemon-down',
  /** A registry refused, answered with an error, or could not be reached. */
  'registry',
  /** A method cannot work with this daemon, store or user (it says which does). */
  'refused-driver',
  /** A program dflatten needs is not installed (docker, rsync, getfattr). */
  'tool-missing',
  /** docker, rsync, mount or another program failed; the message carries its words. */
  'tool-failed',
  /** What the daemon sent is not what it should be (a damaged archive, a content mismatch). */
  'bad-data',
  /** A stage command was fed something other than the previous stage's document. */
  'bad-input',
  /** Something the host lacks or refuses: a full disk, a mount the kernel will not do. */
  'host',
  /** The user interrupted the run (SIGINT, SIGTERM, SIGHUP). */
  'interrupted',
] as const

export type ErrorCode = (typeof ERROR_CODES)[number]

export class DflattenError extends Error {
  readonly code: ErrorCode
  constructor(code: ErrorCode, message: string) {
    super(message)
    this.name = 'DflattenError'
    this.code = code
  }
}

/** Thrown when the user interrupted the run; `signal` is the signal's name. */
export class Interrupted extends DflattenError {
  readonly signal: string
  constructor(signal: string) {
    super('interrupted', `interrupted by ${signal}; cleaned up`)
    this.name = 'Interrupted'
    this.signal = signal
  }
}

export function isDflattenError(e: unknown, code?: ErrorCode): e is DflattenError {
  return e instanceof DflattenError && (code === undefined || e.code === code)
}

/** The exit code a command ends with for an error: 2 for usage, 128 + the signal, else 1. */
export function exitCodeOf(e: DflattenError): number {
  if (e instanceof Interrupted) return e.signal === 'SIGINT' ? 130 : e.signal === 'SIGHUP' ? 129 : 143
  return e.code === 'usage' ? 2 : 1
}
