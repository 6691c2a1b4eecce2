/**
 * The only place dflatten's CLI reads DFLATTEN_* variables: it turns them into the library's
 * Settings once, at start, and passes those down. The library itself takes Settings only.
 */
import { homedir } from 'node:os'
import { join } from 'node:path'
import type { RegistryAccess, Settings } from '../settings.js'
import { DflattenError } from '../errors.js'

export type Env = Record<string, string | undefined>

/** The Settings a variable's text is taken as is for. */
type TextSetting = 'workRoot' | 'docker' | 'rsync' | 'saveContent' | 'ctr' | 'containerdAddress' | 'containerdNamespace'

/** The variables, the setting each gives and what it is for; an empty one counts as unset. */
export const ENV_VARS = {
  DFLATTEN_TMPDIR: { setting: 'workRoot', help: 'where work dirs go (default $TMPDIR, else /tmp)' },
  DFLATTEN_DOCKER: { setting: 'docker', help: 'the docker CLI to run (default docker on PATH)' },
  DFLATTEN_RSYNC: { setting: 'rsync', help: 'the rsync to run for overlay-copy (default rsync on PATH)' },
  DFLATTEN_SAVE_CONTENT: { setting: 'saveContent', help: "'save': the save method reads content from a second docker save" },
  DFLATTEN_CTR: { setting: 'ctr', help: 'the containerd client for the snapshots method (default ctr on PATH)' },
  DFLATTEN_CONTAINERD_ADDRESS: {
    setting: 'containerdAddress',
    help: "containerd's socket (default: what docker info says, else /run/containerd/containerd.sock)",
  },
  DFLATTEN_CONTAINERD_NAMESPACE: {
    setting: 'containerdNamespace',
    help: "containerd's namespace of the daemon's images (default: what docker info says, else moby)",
  },
} as const satisfies Record<string, { setting: TextSetting; help: string }>

export function settingsFromEnv(env: Env = process.env): Settings {
  const settings: Partial<Record<TextSetting, string>> = {}
  for (const [name, { setting }] of Object.entries(ENV_VARS)) {
    const value = env[name]
    if (value) settings[setting] = value
  }
  const { saveContent } = settings
  if (saveContent !== undefined && saveContent !== 'save' && saveContent !== 'export') {
    throw new DflattenError('usage', `DFLATTEN_SAVE_CONTENT=${saveContent} is not a content source; use save or export (the default)`)
  }
  // Every value is text as Settings takes it, saveContent checked just above.
  return settings as Settings
}

/** Where registry credentials come from: Docker's own config dir, found as the docker CLI finds it. */
export function registryAccessFromEnv(env: Env = process.env): RegistryAccess {
  return { configDir: env.DOCKER_CONFIG || join(env.HOME || homedir(), '.docker') }
}
