/**
 * The private temp dir a flatten works in, and the overlay mounts inside it.
 *
 * Layout of `<work root>/dflatten-XXXXXX/`:
 *   owner      who made it (pid and process start time), so `cleanup` can tell a live run
 *              from one that died
 *   entries    the layer's entries, from diff to pack
 * and what a method makes in it (see src/methods), for example:
 *   l/N        short symlinks to the layer diff dirs, so a 120-layer lowerdir fits in the
 *              one page the kernel allows for mount options
 *   empty/     an empty bottom layer: overlayfs wants a lowerdir even for `scratch`
 *   source/ base/ stack/ upper/ work/   overlay mount points and a writable stack's dirs
 *   container  a container made to read the image's files through `docker export`, and which
 *              daemon holds it: recorded before it is created, removed by the method's cleanup
 *   snapshot, lease   likewise, a view snapshot (snapshots method) and a containerd lease (the
 *              daemon destination on the containerd store): see src/work-record.ts
 *
 * Removal always unmounts first and then refuses to delete anything while a mount remains
 * under the dir, so a failed unmount can never turn into deleting through a mount.
 */
import { mkdtemp, mkdir, readFile, rm, symlink } from 'node:fs/promises'
import { join } from 'node:path'
import { execa } from 'execa'
import { DflattenError } from './errors.js'
import { daemonAddress, removeContainer, type DaemonAddress } from './docker.js'
import { ownedName, workRecord } from './work-record.js'
import type { Settings } from './settings.js'
import { WORKSPACE_PREFIX, workRoot, writeOwner } from './work-dirs.js'

// Who owns a work dir and which of them cleanup removes live in src/work-dirs.ts; these stay
// importable from here, where the stages and methods look for the workspace's API.
export { abandonedWorkspaces, ownerAlive, workRoot, writeOwner } from './work-dirs.js'

export interface Workspace {
  dir: string
}

/** `onCreated` hears of the dir before anything can fail or be interrupted, so it is never lost. */
export async function createWorkspace(
  onCreated: (dir: string) => void,
  settings: Settings = {},
  owner: number = process.pid,
): Promise<Workspace> {
  const root = workRoot(settings)
  await mkdir(root, { recursive: true })
  const dir = await mkdtemp(join(root, WORKSPACE_PREFIX))
  onCreated(dir)
  await writeOwner(dir, owner)
  return { dir }
}

/** A private dir of the workspace (a mount point, say), made if need be. */
export async function workspaceDir(ws: Workspace, name: string): Promise<string> {
  const path = join(ws.dir, name)
  await mkdir(path, { recursive: true, mode: 0o700 })
  return path
}

/** Mount points at or below `dir`, deepest first, from this process's mount table. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const table = await readFile('/proc/self/mountinfo', 'utf8')
  const found: string[] = []
  for (const line of table.split('\n')) {
    const field = line.split(' ')[4]
    if (!field) continue
    const point = field.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)))
    if (point === dir || point.startsWith(dir + '/')) found.push(point)
  }
  return found.sort((a, b) => b.length - a.length)
}

let linkCounter = 0

/**
 * Mount an overlay at `target`. `lowers` are listed top first. Each lower is reached through a
 * short symlink under `l/`, and mount runs with the workspace as its cwd, so the option string
 * stays short whatever the layer count.
 */
export async function mountOverlay(
  ws: Workspace,
  target: string,
  lowers: string[],
  writable?: { upper: string; work: string },
): Promise<void> {
  await workspaceDir(ws, 'l')
  await workspaceDir(ws, 'empty')
  const names: string[] = []
  for (const dir of lowers) {
    const name = `l/${(linkCounter++).toString(36)}`
    await symlink(dir, join(ws.dir, name))
    names.push(name)
  }
  names.push('empty')
  const options = [`lowerdir=${names.join(':')}`]
  if (writable) {
    options.push(`upperdir=${relativeTo(ws.dir, writable.upper)}`, `workdir=${relativeTo(ws.dir, writable.work)}`)
  }
  // A plain diff in the upper dir: no redirects, no metadata-only copy-ups, no inode index.
  options.push('redirect_dir=off', 'metacopy=off', 'index=off')
  if (!writable) options.push('ro')
  const opts = options.join(',')
  if (opts.length >= 4096) {
    throw new DflattenError('host', `too many layers to mount (${lowers.length}): the mount options exceed one page`)
  }
  try {
    await execa('mount', ['-t', 'overlay', 'overlay', '-o', opts, target], { cwd: ws.dir })
  } catch (e) {
    const msg = String((e as { stderr?: string; message?: string }).stderr ?? (e as { message?: string }).message).replace(/\s+/g, ' ').trim()
    throw new DflattenError('host', `cannot mount the overlay at ${target}: ${msg}`)
  }
}

function relativeTo(dir: string, path: string): string {
  return path.startsWith(dir + '/') ? path.slice(dir.length + 1) : path
}

async function unmount(point: string): Promise<void> {
  try {
    await execa('umount', [point])
  } catch {
    // Busy (someone is looking inside): detach it now; the kernel finishes when they leave.
    // Or already gone (a concurrent cleanup): the check after all unmounts tells.
    await execa('umount', ['-l', point]).catch(() => undefined)
  }
}

interface ContainerRecord {
  name: string
  address: DaemonAddress
}

const container = workRecord<ContainerRecord>(
  'container',
  (r) => removeContainer(r.name, r.address),
  (r) => `could not remove the temporary container ${r.name}`,
)

/**
 * A name for a container the workspace will own, recorded before the container is created, so
 * that however the run ends, even killed mid-create, cleanup knows what to remove.
 */
export async function claimContainerName(dir: string): Promise<string> {
  // pack may run again on a kept workspace: the container of the run before goes first.
  await removeWorkspaceContainer(dir)
  const name = ownedName('dflatten-export-', dir)
  await container.write(dir, { name, address: daemonAddress() })
  return name
}

/** The name of the container the workspace owns, if it owns one. */
export async function workspaceContainer(dir: string): Promise<string | null> {
  return (await container.read(dir))?.name ?? null
}

/** Remove the container the workspace owns, if any (see WorkRecord.release). */
export const removeWorkspaceContainer = (dir: string): Promise<void> => container.release(dir)

/**
 * Unmount everything under the workspace, then delete it. What a method recorded in it goes
 * first (its `cleanup`, see src/cleanup.ts); a container still recorded stops the removal, so
 * its record is never lost. Safe to call more than once.
 */
export async function destroyWorkspace(dir: string): Promise<void> {
  const container = await workspaceContainer(dir)
  if (container) throw new DflattenError('host', `${dir} still holds the temporary container ${container}; not removing it`)
  for (const point of await mountsUnder(dir)) await unmount(point)
  const left = await mountsUnder(dir)
  if (left.length) {
    throw new DflattenError('host', `could not unmount ${left.join(', ')}; not removing ${dir}`)
  }
  await rm(dir, { recursive: true, force: true })
}
