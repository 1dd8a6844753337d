#!/usr/bin/env bash
# Builds the container images the test nodes run, locally (no registry is reachable), and caches
# each one as an OCI archive under ~/.cache/dr-syncer/images, keyed by a hash of what it is made
# from. Prints one line per image: "<image ref> <OCI archive>".
#
#   bash test/env/build-images.sh                          # pause, debian-base, node stand-in
#   bash test/env/build-images.sh <context> <Dockerfile> <name>
#                                                          # also a project image from a Dockerfile
#
# Images (all tagged under localhost/ except the stand-in, which must answer to its real name):
#   pause        pause.c from the k8s.io/kubernetes module (Go module cache), gcc -static, FROM scratch
#   debian-base  Debian bookworm minbase by mmdebstrap + ca-certificates, rsync, openssh-client
#   node stand-in for docker.io/library/node:<this machine's Node version>-bookworm-slim, e.g.
#                node:20.20.2-bookworm-slim, the tag our Dockerfiles pin: debian-base + this machine's
#                Node and npm (see the label; it is not the official image)
#   <name>       `podman build --pull=never` of a project Dockerfile, tagged localhost/dr-syncer/<name>:<hash>
#
# Podman runs with its own storage and configuration under the cache folder (runc, cgroupfs,
# ulimits no higher than this shell's hard limits: the sandbox refuses more), so it touches no
# system-wide container state.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.33.13}
CACHE=${DR_SYNCER_CACHE:-$HOME/.cache/dr-syncer}
IMG="$CACHE/images"
SCRIPT_VERSION=1 # bump to rebuild every image
log() { printf '[build-images] %s\n' "$*" >&2; }

for tool in podman gcc mmdebstrap sha256sum; do
  command -v $tool >/dev/null || { log "$tool is missing: run scripts/setup"; exit 1; }
done
mkdir -p "$IMG"
exec 9>"$IMG/.lock"
flock 9 # one build at a time (parallel test files wait for the first)

# --- podman settings -----------------------------------------------------------------------
# Container ulimits may not exceed this shell's hard limits; nproc is also capped at 32768:
# here runc's "setting rlimit type 6" fails with EPERM for 65536 and even for `ulimit -Hu`
# (96364), while 32768 works.
NOFILE=$(ulimit -Hn); NPROC=$(ulimit -Hu)
[ "$NOFILE" = unlimited ] && NOFILE=1048576
{ [ "$NPROC" = unlimited ] || [ "$NPROC" -gt 32768 ]; } && NPROC=32768
mkdir -p "$IMG/podman"
cat > "$IMG/podman/containers.conf.new" <<EOF
[containers]
default_ulimits = ["nofile=$NOFILE:$NOFILE", "nproc=$NPROC:$NPROC"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
mv "$IMG/podman/containers.conf.new" "$IMG/podman/containers.conf"
cat > "$IMG/podman/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$IMG/podman/root"
runroot = "$IMG/podman/run"
EOF
export CONTAINERS_CONF="$IMG/podman/containers.conf" CONTAINERS_STORAGE_CONF="$IMG/podman/storage.conf"
# crun (podman's default) refuses this machine's hybrid cgroup layout; runc works.
pm() { podman --runtime runc --cgroup-manager cgroupfs "$@"; }
# `podman build` ignores default_ulimits and asks for nproc=1048576 in RUN steps, which the
# sandbox refuses ("error setting rlimit type 6"): pass the hard limits explicitly.
ULIMITS=(--ulimit "nofile=$NOFILE:$NOFILE" --ulimit "nproc=$NPROC:$NPROC")

hash_of() { sha256sum | cut -c1-16; }
# Loads a cached archive into podman's storage when a later build needs it as a base.
ensure_loaded() { pm image exists "$1" || pm load -q -i "$2" >/dev/null; }
# Saves ref as an OCI archive, atomically (an interrupted save leaves no half archive).
save() { rm -f "$2.tmp"; pm save -q --format oci-archive -o "$2.tmp" "$1"; mv "$2.tmp" "$2"; }

# --- pause ---------------------------------------------------------------------------------
PAUSE_C=$(go env GOMODCACHE 2>/dev/null)/k8s.io/kubernetes@$K8S_VERSION/build/pause/linux/pause.c
if [ ! -f "$PAUSE_C" ]; then
  GOFLAGS=-mod=mod go mod download k8s.io/kubernetes@"$K8S_VERSION" >&2 || true
fi
[ -f "$PAUSE_C" ] || { log "no $PAUSE_C: run test/env/build-bins.sh first"; exit 1; }
key=$( { echo "$SCRIPT_VERSION"; cat "$PAUSE_C"; { gcc --version || true; } | head -1; } | hash_of) # || true: SIGPIPE after head -1 is no error
PAUSE_REF="localhost/dr-syncer/pause:$key"
PAUSE_TAR="$IMG/pause-$key.oci.tar"
if [ ! -f "$PAUSE_TAR" ]; then
  t=$(date +%s)
  ctx=$(mktemp -d); trap 'rm -rf "$ctx"' EXIT
  gcc -Os -Wall -Werror -static -DVERSION="$K8S_VERSION-local" -o "$ctx/pause" "$PAUSE_C"
  strip "$ctx/pause"
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' > "$ctx/Dockerfile"
  pm build -q "${ULIMITS[@]}" --pull=never --network=none -t "$PAUSE_REF" "$ctx" >/dev/null
  save "$PAUSE_REF" "$PAUSE_TAR"
  rm -rf "$ctx"; trap - EXIT
  log "pause image built in $(( $(date +%s) - t ))s"
fi
echo "$PAUSE_REF $PAUSE_TAR"

# --- Debian base ---------------------------------------------------------------------------
# The mirror comes from this machine's apt sources (the only Debian mirror it reaches).
SOURCES=()
[ -s /etc/apt/sources.list ] && grep -q '^deb ' /etc/apt/sources.list && SOURCES+=(/etc/apt/sources.list)
for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do [ -f "$f" ] && SOURCES+=("$f"); done
[ ${#SOURCES[@]} -gt 0 ] || { log "no apt sources on this machine for mmdebstrap"; exit 1; }
INCLUDE=ca-certificates,rsync,openssh-client
# Keyed by what we ask for, not the bytes (a rebuild picks up security updates: bump SCRIPT_VERSION).
key=$( { echo "$SCRIPT_VERSION bookworm minbase $INCLUDE"; } | hash_of)
BASE_REF="localhost/dr-syncer/debian-base:bookworm-$key"
BASE_TAR="$IMG/debian-base-$key.oci.tar"
if [ ! -f "$BASE_TAR" ]; then
  t=$(date +%s)
  rootfs="$IMG/rootfs-$key.tar"
  mmdebstrap --quiet --variant=minbase --include="$INCLUDE" bookworm "$rootfs" "${SOURCES[@]}" </dev/null >&2
  pm import -q --change 'CMD ["/bin/bash"]' "$rootfs" "$BASE_REF" >/dev/null
  rm -f "$rootfs"
  save "$BASE_REF" "$BASE_TAR"
  log "debian-base built in $(( $(date +%s) - t ))s"
fi
echo "$BASE_REF $BASE_TAR"

# --- node:<version>-bookworm-slim stand-in ------------------------------------------------
# STAND-IN: the official image cannot be pulled here. It answers to the exact tag of this
# machine's Node (node:20.20.2-bookworm-slim for v20.20.2), which the Dockerfiles pin. It is
# debian-base plus this machine's own `node` binary and npm in /usr/local. It does NOT have: the official image's
# exact Node build, its npm (10.x there; here whatever this machine has, e.g. 11.x, which warns
# about install scripts differently), yarn or corepack, the `node` user (uid 1000), or its
# docker-entrypoint.sh. Its Debian packages are minbase + ca-certificates, rsync, openssh-client.
NODE_BIN=$(readlink -f "$(command -v node)")
NPM_DIR=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
NODE_VERSION=$(node --version)
NPM_VERSION=$(npm --version)
case "$NODE_VERSION" in v20.*) ;; *) log "node $NODE_VERSION is not Node 20: the stand-in needs Node 20"; exit 1 ;; esac
key=$( { echo "$SCRIPT_VERSION standin-3 $BASE_REF $NODE_VERSION"; sha256sum "$NODE_BIN"; cat "$NPM_DIR/package.json"; } | hash_of)
NODE_REF="docker.io/library/node:${NODE_VERSION#v}-bookworm-slim"
NODE_TAR="$IMG/node-standin-$key.oci.tar"
if [ ! -f "$NODE_TAR" ]; then
  t=$(date +%s)
  ensure_loaded "$BASE_REF" "$BASE_TAR"
  ctx=$(mktemp -d); trap 'rm -rf "$ctx"' EXIT
  cp "$NODE_BIN" "$ctx/node"
  cp -a "$NPM_DIR" "$ctx/npm"
  cat > "$ctx/Dockerfile" <<EOF
FROM $BASE_REF
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx
ENV NODE_VERSION=${NODE_VERSION#v}
LABEL org.dr-syncer.stand-in="NOT the official node:${NODE_VERSION#v}-bookworm-slim: Debian bookworm minbase + the build machine's node $NODE_VERSION and npm $NPM_VERSION; no yarn, corepack, node user or entrypoint script"
CMD ["node"]
EOF
  pm build -q "${ULIMITS[@]}" --pull=never --network=none -t "$NODE_REF" -t "localhost/dr-syncer/node-standin:$key" "$ctx" >/dev/null
  save "$NODE_REF" "$NODE_TAR"
  rm -rf "$ctx"; trap - EXIT
  log "node stand-in built in $(( $(date +%s) - t ))s"
fi
echo "$NODE_REF $NODE_TAR"

# --- a project image from its Dockerfile ---------------------------------------------------
[ $# -eq 0 ] && exit 0
[ $# -eq 3 ] || { log "usage: build-images.sh [<context> <Dockerfile> <name>]"; exit 2; }
CTX=$(cd "$1" && pwd); DOCKERFILE=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); NAME=$3
[ -f "$DOCKERFILE" ] || { log "no Dockerfile $DOCKERFILE"; exit 1; }
# A Dockerfile pins its Node tag (ARG NODE_IMAGE); the stand-in carries this machine's exact
# version, passed as that argument, so another patch version here still builds (and says so).
PIN=$(grep -oE 'node:[0-9]+\.[0-9]+\.[0-9]+-bookworm-slim' "$DOCKERFILE" | head -1 || true)
if [ -n "$PIN" ] && [ "docker.io/library/$PIN" != "$NODE_REF" ]; then
  log "note: $DOCKERFILE pins $PIN; built here on the stand-in ${NODE_REF#docker.io/library/} (this machine's node $NODE_VERSION)"
fi
# What the Dockerfile copies from the context (COPY/ADD sources without --from), as Git sees it
# (tracked or new files, not ignored ones: node_modules and dist do not count), plus the
# Dockerfile and the base images. Other files in the context do not trigger a rebuild.
SRCS=()
while read -r -a words; do
  args=(); for w in "${words[@]:1}"; do case "$w" in --from=*) args=(); break ;; --*) ;; *) args+=("$w") ;; esac; done
  [ ${#args[@]} -ge 2 ] && SRCS+=("${args[@]:0:${#args[@]}-1}")
done < <(grep -iE '^\s*(COPY|ADD)\s' "$DOCKERFILE" | grep -v '\[')
key=$( {
  echo "$SCRIPT_VERSION $NODE_TAR $BASE_TAR"
  sha256sum "$DOCKERFILE"
  if [ ${#SRCS[@]} -gt 0 ]; then
    cd "$CTX" && git ls-files -co --exclude-standard -z -- "${SRCS[@]}" | LC_ALL=C sort -z | xargs -0 -r sha256sum
  fi
} | hash_of)
REF="localhost/dr-syncer/$NAME:$key"
TAR="$IMG/$NAME-$key.oci.tar"
if [ ! -f "$TAR" ]; then
  t=$(date +%s)
  # Base images come from their archives if podman's storage lost them. Dockerfiles name the
  # stand-in by its short name (node:20.20.2-bookworm-slim), which resolves to the
  # docker.io/library tag it carries.
  ensure_loaded "$NODE_REF" "$NODE_TAR"
  # npm in a RUN step must trust the TLS proxy in front of the registry: mount this machine's CA
  # bundle and an npmrc naming it, for this build only (never written into the Dockerfile).
  printf 'cafile=/etc/ssl/certs/ca-certificates.crt\n' > "$IMG/podman/npmrc"
  pm build -q "${ULIMITS[@]}" --pull=never --network=host \
    -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
    -v "$IMG/podman/npmrc:/usr/local/etc/npmrc:ro" \
    --build-arg "NODE_IMAGE=${NODE_REF#docker.io/library/}" \
    -f "$DOCKERFILE" -t "$REF" "$CTX" >/dev/null
  save "$REF" "$TAR"
  log "$NAME image built in $(( $(date +%s) - t ))s"
  # Every source change makes a new archive: keep the newest 3 (work trees sharing this cache
  # may be testing different versions at once), and drop older tags from podman's storage (the
  # layers the next build reuses stay).
  ls -t "$IMG/$NAME"-*.oci.tar | tail -n +4 | while read -r old; do
    rm -f "$old"
    k=${old##*/$NAME-}; pm rmi -f "localhost/dr-syncer/$NAME:${k%.oci.tar}" >/dev/null 2>&1 || true
  done
fi
echo "$REF $TAR"
