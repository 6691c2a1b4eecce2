/**
 * What a caller may tune that is not part of the image or its result. The library never reads
 * the environment: the CLI maps DFLATTEN_* variables onto these (src/cli), a library user passes
 * them in.
 */
export interface Settings {
  /** Where work dirs are made; default os.tmpdir(). */
  workRoot?: string
  /** The docker CLI to run; default `docker` on PATH. */
  docker?: string
  /** The rsync to run for the overlay-copy method; default `rsync` on PATH. */
  rsync?: string
  /**
   * Where the save method reads file content: `export` (docker export of a container, where it
   * can supply it all; the default) or `save` (a second docker save, every time).
   */
  saveContent?: 'export' | 'save'
  /** The containerd client for the snapshots method; default `ctr` on PATH. */
  ctr?: string
  /** containerd's socket; default what `docker info` says (API 1.46+), else /run/containerd/containerd.sock. */
  containerdAddress?: string
  /** containerd's namespace of the daemon's images; default what `docker info` says, else `moby`. */
  containerdNamespace?: string
  /** How registries are reached: credentials, CAs, insecure hosts (docker:// sources). */
  registry?: RegistryAccess
}

/** What reaching a registry takes besides its name. */
export interface RegistryAccess {
  /** The Docker config dir credentials come from (`$DOCKER_CONFIG`, else `~/.docker`). */
  configDir?: string
  /** A dir of `*.crt` CAs (and a client `*.cert`/`*.key`), as `/etc/docker/certs.d/HOST/`. */
  certDir?: string
  /** Registries (`host[:port]`) reached over plain HTTP or unverified TLS. */
  insecure?: string[]
}
