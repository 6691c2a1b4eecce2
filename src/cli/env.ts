/**
 * The only place dflatten's CLI reads DFLATTEN_* variables: it turns them into the library's
 * Settings once, at start, and passes those down. The library itself takes Settings only.
 */
import type { Settings } from '../settings.js'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { DflattenError } from '../errors.js'

export type Env = Record<string, string | undefined>

/** The variables, and what each sets; an empty one counts as unset. */
export const ENV_VARS = {
  DFLATTEN_TMPDIR: 'where work dirs go (default $TMPDIR, else /tmp)',
  DFLATTEN_DOCKER: 'the docker CLI to run (default docker on PATH)',
  DFLATTEN_RSYNC: 'the rsync to run for overlay-copy (default rsync on PATH)',
  DFLATTEN_SAVE_CONTENT: "'save': the save method reads content from a second docker save",
} as const

export function settingsFromEnv(env: Env = process.env): Settings {
  const get = (name: keyof typeof ENV_VARS): string | undefined => env[name] || undefined
  const settings: Settings = {}
  const workRoot = get('DFLATTEN_TMPDIR')
  if (workRoot) settings.workRoot = workRoot
  const docker = get('DFLATTEN_DOCKER')
  if (docker) settings.docker = docker
  const rsync = get('DFLATTEN_RSYNC')
  if (rsync) settings.rsync = rsync
  const saveContent = get('DFLATTEN_SAVE_CONTENT')
  if (saveContent === 'save' || saveContent === 'export') settings.saveContent = saveContent
  else if (saveContent) {
    throw new DflattenError('usage', `DFLATTEN_SAVE_CONTENT=${saveContent} is not a content source; use save or export (the default)`)
  }
  return settings
}

/** Where registry credentials come from: Docker's own config dir (`$DOCKER_CONFIG`, else ~/.docker). */
export function dockerConfigDir(env: Env = process.env): string {
  return env.DOCKER_CONFIG || join(homedir(), '.docker')
}
