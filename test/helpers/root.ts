// The root tier (test/root): tests that need root for what they set up (mknod, mount, chown,
// trusted.* xattrs), but no daemon. As anyone else they skip, saying why.

/** false as root; otherwise the reason to give tap's `skip`. */
export function needsRoot(what: string): string | false {
  return process.getuid?.() === 0 ? false : `needs root: ${what}`
}
