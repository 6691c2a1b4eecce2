#!/usr/bin/env bash
# Install the docker buildx CLI plugin (Debian 13 "trixie"'s docker-buildx) for the current
# user, so `DOCKER_BUILDKIT=1 docker build` works against the system daemon's builtin BuildKit.
# Idempotent: does nothing when `docker buildx version` already answers. The tests use it to
# build images the way BuildKit does (no image per layer); CI runs it as root on a fresh machine.
#
#   scripts/buildx.sh           install if needed; exit 0 when `docker buildx` works
#
# Nothing is installed over the system packages: the .deb is fetched with apt using a separate
# sources list and state dir (as scripts/docker26.sh fetches docker.io), unpacked with
# `dpkg -x`, and only the plugin binary is copied to ~/.docker/cli-plugins/.
#
# Environment (all optional):
#   DFLATTEN_BUILDX_PREFIX  where apt's files and the unpacked package go (/opt/dflatten-buildx)
#   DFLATTEN_D26_MIRROR     Debian mirror URL; by default the one this machine's apt sources use
#   DFLATTEN_D26_SUITE      the suite to fetch from (trixie)
set -euo pipefail

PREFIX=${DFLATTEN_BUILDX_PREFIX:-/opt/dflatten-buildx}
SUITE=${DFLATTEN_D26_SUITE:-trixie}
APTDIR=$PREFIX/apt
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
PLUGINS=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins

say() { echo "buildx: $*" >&2; }
die() { echo "buildx: error: $*" >&2; exit 1; }

if docker buildx version >/dev/null 2>&1; then exit 0; fi

# The mirror this machine's apt already uses for its own release (first http(s) URI of a `deb`
# line or deb822 stanza for this codename). We never name another host.
find_mirror() {
  local codename f uri
  # shellcheck source=/dev/null
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  [ -n "$codename" ] || die "no VERSION_CODENAME in /etc/os-release; set DFLATTEN_D26_MIRROR"
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    case $f in
      *.sources) uri=$(awk -v want="$codename" '
          function flush() {
            if (!found && types ~ /(^| )deb( |$)/ && enabled != "no" && (" " suites " ") ~ (" " want " ")) {
              n = split(uris, u, /[ \t]+/)
              for (i = 1; i <= n; i++) if (u[i] ~ /^https?:\/\//) { print u[i]; found = 1; break }
            }
            types = uris = suites = ""; enabled = "yes"
          }
          BEGIN { enabled = "yes" }
          /^#/ { next }
          /^[ \t]*$/ { flush(); next }
          {
            key = tolower(substr($0, 1, index($0, ":") - 1)); val = substr($0, index($0, ":") + 1)
            gsub(/^[ \t]+|[ \t]+$/, "", val)
            if (key == "types") types = val; else if (key == "uris") uris = val
            else if (key == "suites") suites = val; else if (key == "enabled") enabled = tolower(val)
          }
          END { flush() }' "$f") ;;
      *) uri=$(sed -e 's/#.*//' -e 's/\[[^]]*\]//g' "$f" | awk -v want="$codename" '
          $1 == "deb" && $3 == want && $2 ~ /^https?:\/\// { print $2; exit }') ;;
    esac
    if [ -n "$uri" ]; then echo "${uri%/}"; return; fi
  done
  die "no apt source for '$codename' found; set DFLATTEN_D26_MIRROR"
}

command -v docker >/dev/null || die "the docker CLI is not installed"
command -v apt-get >/dev/null && command -v dpkg >/dev/null || die "this needs apt-get and dpkg (Debian)"
[ -f "$KEYRING" ] || die "$KEYRING is missing (package debian-archive-keyring)"

if ! compgen -G "$APTDIR/debs/docker-buildx_*.deb" >/dev/null; then
  mirror=${DFLATTEN_D26_MIRROR:-$(find_mirror)}
  mkdir -p "$APTDIR"/{sources.list.d,preferences.d,state/lists/partial,cache/archives/partial,debs}
  echo "deb [signed-by=$KEYRING] $mirror $SUITE main" >"$APTDIR/sources.list"
  : >"$APTDIR/state/status"   # an empty status: apt must not reason about the host's packages
  if getent passwd _apt >/dev/null; then chown _apt "$APTDIR/debs" "$APTDIR/state/lists/partial"; fi
  opts=()
  for o in "Dir::Etc::SourceList=$APTDIR/sources.list" "Dir::Etc::SourceParts=$APTDIR/sources.list.d" \
           "Dir::Etc::Preferences=$APTDIR/preferences" "Dir::Etc::PreferencesParts=$APTDIR/preferences.d" \
           "Dir::State=$APTDIR/state" "Dir::State::status=$APTDIR/state/status" "Dir::Cache=$APTDIR/cache" \
           "Acquire::Languages=none" "APT::Architectures::=$(dpkg --print-architecture)"; do
    opts+=(-o "$o")
  done
  say "fetching docker-buildx from $mirror $SUITE"
  apt-get "${opts[@]}" -qq update >&2
  (cd "$APTDIR/debs" && apt-get "${opts[@]}" -qq download docker-buildx >&2)
fi

deb=$(compgen -G "$APTDIR/debs/docker-buildx_*.deb" | head -1)
root=$PREFIX/root
rm -rf "$root"
mkdir -p "$root"
dpkg -x "$deb" "$root"
bin=$root/usr/libexec/docker/cli-plugins/docker-buildx
[ -x "$bin" ] || die "$deb holds no usr/libexec/docker/cli-plugins/docker-buildx"
mkdir -p "$PLUGINS"
# Copied under a temporary name and renamed, so a half-copied plugin is never picked up.
cp "$bin" "$PLUGINS/.docker-buildx.tmp"
chmod 0755 "$PLUGINS/.docker-buildx.tmp"
mv "$PLUGINS/.docker-buildx.tmp" "$PLUGINS/docker-buildx"
docker buildx version >/dev/null 2>&1 || die "docker buildx does not run: $(docker buildx version 2>&1 | head -3)"
say "installed $(docker buildx version 2>&1 | head -1) into $PLUGINS"
