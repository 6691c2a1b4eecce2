// Thin wrappers over the `docker` CLI for the end-to-end tests. They stay independent of
// src/docker.ts on purpose: the tests must not trust the code they check.
import { execa } from 'execa'

export interface DockerOptions {
  input?: string | Buffer
  cwd?: string
  env?: Record<string, string>
}

export interface ContainerConfig {
  Env?: string[] | null
  Cmd?: string[] | null
  Entrypoint?: string[] | null
  WorkingDir?: string
  User?: string
  Labels?: Record<string, string> | null
  ExposedPorts?: Record<string, object> | null
  Volumes?: Record<string, object> | null
  Healthcheck?: Record<string, unknown> | null
  StopSignal?: string
  StopTimeout?: number | null
  OnBuild?: string[] | null
  Shell?: string[] | null
  ArgsEscaped?: boolean
  [key: string]: unknown
}

export interface ImageInspect {
  Id: string
  RepoTags: string[] | null
  Parent: string
  Created: string
  /** Absent on some stores (it is empty when nothing set it). */
  Author?: string
  Os: string
  Architecture: string
  Variant?: string
  Config: ContainerConfig | null
  RootFS: { Type: string; Layers?: string[] }
  GraphDriver: { Name: string; Data: Record<string, string> | null }
  /** What the image holds in the store (the containerd store: its compressed blobs). */
  Size: number
  [key: string]: unknown
}

/** Runs `docker ARGS` and returns its stdout without the final newline; throws with stderr on failure. */
export async function docker(args: string[], opts: DockerOptions = {}): Promise<string> {
  const r = await execa('docker', args, {
    input: opts.input,
    cwd: opts.cwd,
    env: opts.env,
    maxBuffer: 256 * 1024 * 1024,
  })
  return r.stdout
}

export async function imageExists(ref: string): Promise<boolean> {
  const r = await execa('docker', ['image', 'inspect', '--format', '{{.Id}}', ref], { reject: false })
  return r.exitCode === 0
}

export async function imageId(ref: string): Promise<string> {
  return docker(['image', 'inspect', '--format', '{{.Id}}', ref])
}

export async function inspect(ref: string): Promise<ImageInspect> {
  const out = JSON.parse(await docker(['image', 'inspect', ref])) as ImageInspect[]
  const first = out.at(0)
  if (first === undefined) throw new Error(`docker image inspect ${ref}: no result`)
  return first
}

/** Removes a tag (or an image by id). No error when it is already gone. */
export async function removeImage(ref: string, opts: { force?: boolean } = {}): Promise<void> {
  if (!(await imageExists(ref))) return
  await docker(['image', 'rm', ...(opts.force === true ? ['--force'] : []), ref])
}
