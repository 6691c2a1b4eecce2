#!/usr/bin/env bash
# The main job on a sample image: build a small multi-layer image locally (a busybox base
# through docker import, then layers from RUN steps that add, replace and delete files),
# flatten it, and show the layers and sizes before and after.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! docker image inspect dflatten-demo-base:1 >/dev/null 2>&1; then
  mkdir -p "$work/root/bin" "$work/root/etc" "$work/root/tmp"
  cp /bin/busybox "$work/root/bin/"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$work/root/bin/$applet"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$work/root/etc/passwd"
  tar --numeric-owner -C "$work/root" -c . | docker import - dflatten-demo-base:1 >/dev/null
fi

mkdir -p "$work/ctx"
cat >"$work/ctx/Dockerfile" <<'DOCKERFILE'
FROM dflatten-demo-base:1
RUN mkdir -p /app/cache && dd if=/dev/urandom of=/app/cache/build.bin bs=1M count=20 2>/dev/null
RUN echo 'print("hello")' > /app/main.py && ln /app/main.py /app/entry.py && chmod 0750 /app
RUN rm -rf /app/cache && rm /etc/passwd && echo 'app:x:1000:1000::/app:/bin/sh' > /etc/passwd
ENV APP_HOME=/app
WORKDIR /app
CMD ["cat", "/app/main.py"]
DOCKERFILE
DOCKER_BUILDKIT=0 docker build -q --network none -t dflatten-demo:1 "$work/ctx" >"$work/build.log" 2>&1 ||
  { cat "$work/build.log" >&2; exit 1; }

echo "== before: dflatten-demo:1"
docker history dflatten-demo:1 --format 'table {{.Size}}\t{{.CreatedBy}}' | cut -c1-100
echo
echo "== dflatten dflatten-demo:1"
bin/dflatten.js dflatten-demo:1
echo
echo "== after: dflatten-demo_flatten:1"
docker history dflatten-demo_flatten:1 --format 'table {{.Size}}\t{{.CreatedBy}}' | cut -c1-100
echo
docker images --format 'table {{.Repository}}:{{.Tag}}\t{{.ID}}\t{{.Size}}' | grep -E 'REPOSITORY|dflatten-demo'
echo
echo "== both run the same:"
docker run --rm --network none dflatten-demo:1
docker run --rm --network none dflatten-demo_flatten:1
