// A fingerprint of directories in Docker's storage (names, types, modes, owners, sizes, mtimes,
// content and xattrs), to prove a flatten only read them.
import { execa } from 'execa'

export async function fingerprint(dirs: string[]): Promise<string> {
  const script = `
    set -euo pipefail
    for d in "$@"; do
      cd "$d"
      echo "== $d"
      find . -printf '%P\\t%y\\t%m\\t%U\\t%G\\t%s\\t%T@\\t%l\\n' | LC_ALL=C sort | sha256sum
      find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum | sha256sum
      getfattr -R -P -h -d -m - -e hex . 2>/dev/null | sha256sum
    done`
  const r = await execa('bash', ['-c', script, 'fingerprint', ...dirs])
  return r.stdout
}

/** Every layer dir of an image, from the overlay2 driver data. */
export async function layerDirs(ref: string): Promise<string[]> {
  const r = await execa('docker', ['image', 'inspect', '-f', '{{json .GraphDriver.Data}}', ref])
  const data = JSON.parse(r.stdout) as { UpperDir?: string; LowerDir?: string }
  return [data.UpperDir, ...(data.LowerDir ? data.LowerDir.split(':') : [])].filter((d): d is string => !!d)
}
