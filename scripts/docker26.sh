#!/usr/bin/env bash
# Run Docker 26.1 (Debian 13 "trixie"'s docker.io, with its containerd 1.7) beside the system
# Docker 20.10, for compatibility tests: two extra daemons, one with the classic store (overlay2
# graph driver) and one with the containerd image store, each with its own containerd.
#
#   scripts/docker26.sh start    fetch and unpack if needed, start whatever is not answering,
#                                print the two DOCKER_HOST values as `export` lines on stdout
#   scripts/docker26.sh stop     stop both daemons and their containerds; data is kept
#   scripts/docker26.sh status   say what runs and what it answers
#   scripts/docker26.sh env      print the `export` lines only
#
# Typical use:  eval "$(scripts/docker26.sh start)"
#               DOCKER_HOST=$DFLATTEN_D26_CTRD_HOST docker info
#
# Nothing is installed over the system packages: the .deb files are fetched with apt using a
# separate sources list and apt state/cache dir, and unpacked with `dpkg -x` into a folder of
# their own. Only dockerd and containerd (with its shim and ctr) come from trixie; trixie's runc
# and tini need glibc 2.38 and Debian 12 has 2.36, so the system runc (from Debian 12's runc
# package, a dependency of docker.io) runs the containers. Run as root.
#
# Environment (all optional):
#   DFLATTEN_D26_PREFIX  where apt's files and the unpacked packages go (/opt/dflatten-docker26)
#   DFLATTEN_D26_DATA    the daemons' data roots and logs (/var/lib/dflatten-docker26)
#   DFLATTEN_D26_RUN     parent of the run dirs, sockets and pid files (/run)
#   DFLATTEN_D26_MIRROR  Debian mirror URL; by default the one this machine's apt sources use
#   DFLATTEN_D26_SUITE   the suite to fetch from (trixie)
set -euo pipefail

PREFIX=${DFLATTEN_D26_PREFIX:-/opt/dflatten-docker26}
DATA=${DFLATTEN_D26_DATA:-/var/lib/dflatten-docker26}
RUNBASE=${DFLATTEN_D26_RUN:-/run}
SUITE=${DFLATTEN_D26_SUITE:-trixie}
ROOT=$PREFIX/root          # the unpacked packages
APTDIR=$PREFIX/apt         # sources list, apt state, cache and the .deb files
STAMP=$ROOT/.dflatten-unpacked
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
FLAVORS=(classic ctrd)

say() { echo "docker26: $*" >&2; }
die() { echo "docker26: error: $*" >&2; exit 1; }

# Seconds since the epoch with milliseconds, for the timings we report.
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

rundir() { echo "$RUNBASE/dflatten-d26-$1"; }
docker_sock() { echo "$(rundir "$1")/docker.sock"; }
ctrd_sock() { echo "$(rundir "$1")/containerd/containerd.sock"; }
host_var() { case $1 in classic) echo DFLATTEN_D26_CLASSIC_HOST ;; ctrd) echo DFLATTEN_D26_CTRD_HOST ;; esac; }

print_env() {
  local f
  for f in "${FLAVORS[@]}"; do echo "export $(host_var "$f")=unix://$(docker_sock "$f")"; done
}

# --- fetching and unpacking -------------------------------------------------------------------

# The mirror this machine already uses for its own release: the first http(s) URI of an enabled
# `deb` entry whose suite is this release's codename, in apt's own file order. Both the one-line
# format (sources.list, *.list) and deb822 (*.sources) are read. We never name another host.
find_mirror() {
  local codename files=() f uri
  # shellcheck source=/dev/null
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  [ -n "$codename" ] || die "no VERSION_CODENAME in /etc/os-release; set DFLATTEN_D26_MIRROR"
  [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && files+=("$f")
  done
  for f in "${files[@]}"; do
    case $f in
      *.sources) uri=$(awk -v want="$codename" '
          function flush() {
            if (!found && types ~ /(^| )deb( |$)/ && enabled != "no" && (" " suites " ") ~ (" " want " ")) {
              n = split(uris, u, /[ \t]+/)
              for (i = 1; i <= n; i++) if (u[i] ~ /^https?:\/\//) { print u[i]; found = 1; break }
            }
            types = uris = suites = ""; enabled = "yes"; last = ""
          }
          BEGIN { enabled = "yes" }
          /^#/ { next }
          /^[ \t]*$/ { flush(); next }
          /^[ \t]/ { if (last == "uris") uris = uris " " $0; else if (last == "suites") suites = suites " " $0; next }
          {
            key = tolower(substr($0, 1, index($0, ":") - 1)); val = substr($0, index($0, ":") + 1)
            gsub(/^[ \t]+|[ \t]+$/, "", val); last = key
            if (key == "types") types = val; else if (key == "uris") uris = val
            else if (key == "suites") suites = val; else if (key == "enabled") enabled = tolower(val)
          }
          END { flush() }' "$f") ;;
      *) uri=$(sed -e 's/#.*//' -e 's/\[[^]]*\]//g' "$f" | awk -v want="$codename" '
          $1 == "deb" && $3 == want && $2 ~ /^https?:\/\// { print $2; exit }') ;;
    esac
    if [ -n "$uri" ]; then echo "${uri%/}"; return; fi
  done
  die "no apt source for '$codename' found in /etc/apt/sources.list{,.d/*}; set DFLATTEN_D26_MIRROR"
}

# apt with every file it reads or writes moved under $APTDIR, so the system's package lists,
# cache, status and pinning are neither used nor touched. /etc/apt/apt.conf.d still applies
# (a proxy or Check-Valid-Until set there is needed to reach the mirror the same way).
apt_opts() {
  local o
  for o in "Dir::Etc::SourceList=$APTDIR/sources.list" \
           "Dir::Etc::SourceParts=$APTDIR/sources.list.d" \
           "Dir::Etc::Preferences=$APTDIR/preferences" \
           "Dir::Etc::PreferencesParts=$APTDIR/preferences.d" \
           "Dir::State=$APTDIR/state" \
           "Dir::State::status=$APTDIR/state/status" \
           "Dir::Cache=$APTDIR/cache" \
           "Acquire::Languages=none" \
           "APT::Architectures::=$(dpkg --print-architecture)"; do
    printf '%s\n' -o "$o"   # two arguments each: apt does not split "-o X=Y"
  done
}

fetch() {
  local t0 mirror opts
  t0=$(now)
  mirror=${DFLATTEN_D26_MIRROR:-$(find_mirror)}
  # Debian 12's keyring package already carries trixie's archive keys.
  [ -f "$KEYRING" ] || die "$KEYRING is missing (package debian-archive-keyring)"
  mkdir -p "$APTDIR"/{sources.list.d,preferences.d,state/lists/partial,cache/archives/partial,debs}
  echo "deb [signed-by=$KEYRING] $mirror $SUITE main" >"$APTDIR/sources.list"
  : >"$APTDIR/state/status"   # an empty status: apt must not reason about the host's packages
  # apt downloads as the unprivileged _apt user where it can; let it write the .deb folder.
  if getent passwd _apt >/dev/null; then chown _apt "$APTDIR/debs" "$APTDIR/state/lists/partial"; fi
  mapfile -t opts < <(apt_opts)
  say "fetching docker.io and containerd from $mirror $SUITE"
  apt-get "${opts[@]}" -qq update >&2
  rm -f "$APTDIR"/debs/*.deb
  # `download` takes exactly these two packages, without their dependencies: the rest
  # (runc, libc, ...) comes from the host.
  (cd "$APTDIR/debs" && apt-get "${opts[@]}" -qq download docker.io containerd >&2)
  say "fetched in $(since "$t0") s"
}

# The trixie binaries must run on this libc: say so plainly when they cannot.
check_runs() {
  local bin=$1 flag=$2 out
  if out=$(ldd "$bin" 2>&1 | grep -E 'not found|version .* not found'); then
    die "$bin cannot run on this system's libraries:
$out"
  fi
  "$bin" "$flag" >/dev/null 2>&1 || die "$bin does not run here: $("$bin" "$flag" 2>&1 | head -3)"
}

unpack() {
  local t0 new deb
  t0=$(now)
  new=$PREFIX/root.new
  rm -rf "$new"
  mkdir -p "$new"
  for deb in "$APTDIR"/debs/docker.io_*.deb "$APTDIR"/debs/containerd_*.deb; do
    [ -f "$deb" ] || die "missing $deb"
    dpkg -x "$deb" "$new"
    echo "$(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version)" >>"$new/.dflatten-unpacked.tmp"
  done
  check_runs "$new/usr/sbin/dockerd" --version
  check_runs "$new/usr/bin/containerd" --version
  check_runs "$new/usr/bin/containerd-shim-runc-v2" -v
  check_runs "$new/usr/bin/ctr" --version
  # The point is a newer Docker than the system's: refuse anything but 26.x (trixie's).
  case $("$new/usr/sbin/dockerd" --version) in
    *"version 26."*) ;;
    *) die "expected Docker 26.x from $SUITE, got: $("$new/usr/sbin/dockerd" --version)" ;;
  esac
  # Swap in the new tree only once it is complete and known to run.
  mv "$new/.dflatten-unpacked.tmp" "$new/.dflatten-unpacked"
  rm -rf "$ROOT"
  mv "$new" "$ROOT"
  say "unpacked $(paste -sd, "$STAMP") into $ROOT in $(since "$t0") s"
}

ensure_unpacked() {
  [ -f "$STAMP" ] && return
  if ! compgen -G "$APTDIR/debs/docker.io_*.deb" >/dev/null || ! compgen -G "$APTDIR/debs/containerd_*.deb" >/dev/null; then
    fetch
  fi
  unpack
}

# --- processes ----------------------------------------------------------------------------------

# A pid from a pid file, only if that process is still the binary we started (pids get reused,
# and we must never signal anything else).
live_pid() {
  local pidfile=$1 bin=$2 pid exe
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [ "${exe% (deleted)}" = "$bin" ] || return 1
  echo "$pid"
}

docker_answers() { docker -H "unix://$(docker_sock "$1")" info >/dev/null 2>&1; }
# ctr waits 10 s for a socket that is not there: check the file first, and bound the wait.
ctrd_answers() {
  [ -S "$(ctrd_sock "$1")" ] &&
    "$ROOT/usr/bin/ctr" --connect-timeout 2s --address "$(ctrd_sock "$1")" version >/dev/null 2>&1
}

# The daemons look up their helpers in PATH: containerd must find the 1.7 shim unpacked beside
# it (not Debian 12's 1.6 one in /usr/bin), dockerd its docker-proxy; runc and docker-init come
# from the host.
daemon_path() { echo "$ROOT/usr/bin:$ROOT/usr/sbin:$PATH"; }

# Pids of the daemons being started, by "containerd-FLAVOR" / "dockerd-FLAVOR".
declare -A PIDS=()

launch_containerd() {
  local f=$1 rd cfg pid
  rd=$(rundir "$f")
  cfg=$rd/containerd/config.toml
  mkdir -p "$rd/containerd" "$DATA/$f"
  # Its own root, state, sockets and "opt" dir (the default /opt/containerd belongs to the
  # system's containerd); no CRI plugin, no metrics or debug listener.
  cat >"$cfg" <<EOF
version = 2
root = "$DATA/$f/containerd"
state = "$rd/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$(ctrd_sock "$f")"

[ttrpc]
  address = "$(ctrd_sock "$f").ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "$DATA/$f/containerd-opt"
EOF
  if pid=$(live_pid "$rd/containerd/containerd.pid" "$ROOT/usr/bin/containerd"); then
    say "$f: containerd (pid $pid) is running; waiting for it"
  else
    say "$f: starting containerd"
    # setsid: the daemons outlive this script and its terminal; fd 9 (our lock) and any lock the
    # caller holds (flock gives its command fd 3) stay here.
    PATH=$(daemon_path) setsid nohup "$ROOT/usr/bin/containerd" --config "$cfg" \
      </dev/null >>"$DATA/$f/containerd.log" 2>&1 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
    pid=$!
    echo "$pid" >"$rd/containerd/containerd.pid"
  fi
  PIDS[containerd-$f]=$pid
}

launch_dockerd() {
  local f=$1 rd conf pid args
  rd=$(rundir "$f")
  conf=$rd/daemon.json
  # Always our own --config-file: otherwise dockerd would read the host's /etc/docker/daemon.json.
  case $f in
    classic) echo '{"features":{"containerd-snapshotter":false}}' >"$conf"
             args=(--storage-driver=overlay2) ;;
    ctrd)    echo '{"features":{"containerd-snapshotter":true}}' >"$conf"
             args=() ;;
  esac
  if pid=$(live_pid "$rd/docker.pid" "$ROOT/usr/sbin/dockerd"); then
    say "$f: dockerd (pid $pid) is running; waiting for it"
  else
    say "$f: starting dockerd"
    # A pid file left by a dockerd that died makes a new one refuse to start.
    rm -f "$rd/docker.pid"
    # --cgroup-parent keeps its containers apart from the system daemon's /docker cgroups.
    PATH=$(daemon_path) setsid nohup "$ROOT/usr/sbin/dockerd" \
      --config-file "$conf" \
      --data-root "$DATA/$f/docker" \
      --exec-root "$rd/exec" \
      --pidfile "$rd/docker.pid" \
      -H "unix://$(docker_sock "$f")" \
      --containerd "$(ctrd_sock "$f")" \
      --cgroup-parent "/dflatten-d26-$f" \
      --iptables=false --ip6tables=false --bridge=none \
      "${args[@]}" \
      </dev/null >>"$DATA/$f/dockerd.log" 2>&1 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
    pid=$!
  fi
  PIDS[dockerd-$f]=$pid
}

# Poll CHECK until it passes; fail early, with the log's tail, if the process dies.
wait_for() {
  local what=$1 pid=$2 log=$3 check=$4 arg=$5 end=$((SECONDS + 60))
  until "$check" "$arg"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      die "$what exited; the end of $log:
$(tail -20 "$log")"
    fi
    [ "$SECONDS" -lt "$end" ] || die "$what did not answer within 60 s; the end of $log:
$(tail -20 "$log")"
    sleep 0.1
  done
}

# SIGTERM to the live pid of each pid file (only ours: see live_pid), then wait for all of
# them together. dockerd stops its containers first (10 s grace each), so allow 30 s.
stop_all() {
  local bin=$1 what pidfile pid end
  shift
  local -A alive=()
  for pidfile in "$@"; do
    what=${pidfile#"$RUNBASE"/dflatten-d26-}   # "classic/docker.pid" -> "classic dockerd"
    what="${what%%/*} $(basename "$bin")"
    if pid=$(live_pid "$pidfile" "$bin"); then
      kill -TERM "$pid"
      alive[$pid]=$what
    else
      say "$what: not running"
    fi
  done
  end=$((SECONDS + 30))
  while [ ${#alive[@]} -gt 0 ] && [ "$SECONDS" -lt "$end" ]; do
    sleep 0.1
    for pid in "${!alive[@]}"; do
      if ! kill -0 "$pid" 2>/dev/null; then
        say "${alive[$pid]}: stopped (pid $pid)"
        unset "alive[$pid]"
      fi
    done
  done
  for pid in "${!alive[@]}"; do
    say "${alive[$pid]}: pid $pid ignored SIGTERM for 30 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  done
}

# --- subcommands --------------------------------------------------------------------------------

cmd_start() {
  local t0 f need=()
  t0=$(now)
  command -v docker >/dev/null || die "no docker client in PATH"
  command -v runc >/dev/null || say "note: no runc in PATH: \`docker run\` and RUN steps will fail"
  ensure_unpacked
  # Both flavors at once: the containerds, then (once they answer) the dockerds. A containerd
  # that died under a live dockerd is started again: that dockerd reconnects by itself.
  for f in "${FLAVORS[@]}"; do
    mkdir -p "$(rundir "$f")" "$DATA/$f"
    ctrd_answers "$f" || launch_containerd "$f"
  done
  for f in "${FLAVORS[@]}"; do
    [ -z "${PIDS[containerd-$f]:-}" ] ||
      wait_for "$f containerd" "${PIDS[containerd-$f]}" "$DATA/$f/containerd.log" ctrd_answers "$f"
    if docker_answers "$f"; then
      say "$f: already answering on $(docker_sock "$f")"
    else
      need+=("$f")
    fi
  done
  for f in "${need[@]}"; do launch_dockerd "$f"; done
  for f in "${need[@]}"; do
    wait_for "$f dockerd" "${PIDS[dockerd-$f]}" "$DATA/$f/dockerd.log" docker_answers "$f"
    say "$f: up on $(docker_sock "$f") (logs in $DATA/$f)"
  done
  say "start took $(since "$t0") s"
  print_env
}

cmd_stop() {
  local f dpids=() cpids=()
  for f in "${FLAVORS[@]}"; do
    dpids+=("$(rundir "$f")/docker.pid")
    cpids+=("$(rundir "$f")/containerd/containerd.pid")
  done
  # The dockerds first: they need their containerd to stop their containers.
  stop_all "$ROOT/usr/sbin/dockerd" "${dpids[@]}"
  # dockerd bind-mounts its data root onto itself (to set mount propagation) and undoes that
  # on a clean exit only: after a crash or SIGKILL the mount stays, and `rm -rf` of the data
  # fails with "Device or resource busy". Our dockerds are gone now, so drop any such mount.
  for f in "${FLAVORS[@]}"; do
    if mountpoint -q "$DATA/$f/docker"; then
      umount "$DATA/$f/docker" && say "$f: unmounted the leftover bind mount of $DATA/$f/docker"
    fi
  done
  stop_all "$ROOT/usr/bin/containerd" "${cpids[@]}"
  rm -f "${cpids[@]}"
}

cmd_status() {
  local f rd pid rc=0 info
  if [ -f "$STAMP" ]; then
    say "unpacked in $ROOT: $(paste -sd, "$STAMP")"
  else
    say "not unpacked yet ($ROOT)"
    rc=1
  fi
  for f in "${FLAVORS[@]}"; do
    rd=$(rundir "$f")
    if pid=$(live_pid "$rd/containerd/containerd.pid" "$ROOT/usr/bin/containerd"); then
      say "$f: containerd pid $pid, socket $(ctrd_sock "$f")"
    else
      say "$f: containerd not running"
      rc=1
    fi
    if info=$(docker -H "unix://$(docker_sock "$f")" info \
        --format '{{.ServerVersion}} driver={{.Driver}} {{range .DriverStatus}}{{index . 0}}={{index . 1}} {{end}}' 2>/dev/null); then
      pid=$(live_pid "$rd/docker.pid" "$ROOT/usr/sbin/dockerd" || echo '?')
      say "$f: dockerd pid $pid answers on unix://$(docker_sock "$f"): $info"
    else
      say "$f: dockerd not answering on unix://$(docker_sock "$f")"
      rc=1
    fi
  done
  return $rc
}

main() {
  [ "$(id -u)" = 0 ] || die "run as root"
  local cmd=${1:-}
  case $cmd in
    start | stop)
      # One start or stop at a time: tests may call this concurrently. The daemons are
      # started with fd 9 closed, so they do not hold the lock.
      mkdir -p "$PREFIX"
      exec 9>"$PREFIX/.lock"
      flock 9
      "cmd_$cmd" ;;
    status) cmd_status ;;
    env) print_env ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
}

main "$@"
