#!/usr/bin/env bash
# Builds Flux's source-controller and kustomize-controller from their published Go modules
# (through the Go module proxy) and caches them outside the repo, keyed by version, together with
# their CRDs (config/crd/bases of each module, copied from the module cache). Prints:
#
#   SOURCE_CONTROLLER=<path of the binary>
#   SOURCE_CRDS=<folder with the source.toolkit.fluxcd.io CRDs>
#   KUSTOMIZE_CONTROLLER=<path of the binary>
#   KUSTOMIZE_CRDS=<folder with the kustomize.toolkit.fluxcd.io CRDs>
#
#   bash test/env/build-flux.sh            # build what is missing, print the paths
#
# Versions: the module proxy we use serves neither source-controller v1.6.x nor
# kustomize-controller v1.6.x (403 "This module version is not available"), and v1.10.x needs
# Go >= 1.27, so the default is the v1.9.6 pair (one Flux release; both build against
# source-controller/api v1.9 and k8s.io 0.36; they run fine against our 1.33 apiserver).
set -euo pipefail

SC_VERSION=${FLUX_SC_VERSION:-v1.9.6}
KC_VERSION=${FLUX_KC_VERSION:-v1.9.6}
CACHE=${DR_SYNCER_CACHE:-$HOME/.cache/dr-syncer}
SC_OUT="$CACHE/bin/flux-sc-$SC_VERSION"
KC_OUT="$CACHE/bin/flux-kc-$KC_VERSION"

log() { printf '[build-flux] %s\n' "$*" >&2; }

# A build is complete when its marker names the module version and the binary and CRDs are there.
built() { # out module version binary
  [ -x "$1/$4" ] && [ -d "$1/crds" ] && [ "$(cat "$1/.built" 2>/dev/null)" = "$2@$3" ]
}
all_built() {
  built "$SC_OUT" github.com/fluxcd/source-controller "$SC_VERSION" source-controller \
    && built "$KC_OUT" github.com/fluxcd/kustomize-controller "$KC_VERSION" kustomize-controller
}
print_paths() {
  echo "SOURCE_CONTROLLER=$SC_OUT/source-controller"
  echo "SOURCE_CRDS=$SC_OUT/crds"
  echo "KUSTOMIZE_CONTROLLER=$KC_OUT/kustomize-controller"
  echo "KUSTOMIZE_CRDS=$KC_OUT/crds"
}

if all_built; then print_paths; exit 0; fi

command -v go >/dev/null || { log "Go is required to build Flux's controllers (https://go.dev/dl)"; exit 1; }
# One build at a time: parallel test processes wait for the first one instead of racing it.
mkdir -p "$CACHE"
exec 9>"$CACHE/build-flux.lock"
flock 9
if all_built; then print_paths; exit 0; fi
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

# Dependencies of which the module proxy serves no zip (403 "not available"), pinned to the
# nearest version it serves. Only for the versions checked here.
pins() {
  case "$1" in
    github.com/fluxcd/source-controller@v1.9.6)
      # v0.18.3 (required) is not served; v0.18.1 differs from it only in dependency bumps.
      echo 'replace github.com/fluxcd/pkg/artifact => github.com/fluxcd/pkg/artifact v0.18.1' ;;
  esac
}

# Both controllers' go.mod files carry replace directives, so `go install module@version`
# refuses them. A wrapper module per controller (their dependency sets differ: cloud SDKs for
# source-controller, SOPS/KMS for kustomize-controller) copies the upstream replaces, except the
# local `./api` one (the wrapper takes the published api module instead). Among them, the
# go-digest one is required: the controllers import go-digest/blake3, absent from v1.0.0.
build() { # name module version binary out
  local name=$1 module=$2 version=$3 binary=$4 out=$5
  local w="$CACHE/src/flux-$name-$version" start mod dir
  start=$(date +%s)
  mkdir -p "$w" "$out"
  cd "$w"
  log "building $module@$version in $w (cold: several minutes on 2 cores)"
  printf 'module local/dr-syncer-flux-%s\n\ngo 1.24.0\n' "$name" > go.mod
  go mod download "$module@$version"
  mod="$(go env GOMODCACHE)/cache/download/$module/@v/$version.mod"
  {
    echo "module local/dr-syncer-flux-$name"
    echo
    grep -E '^go ' "$mod"
    grep -E '^godebug ' "$mod" || true
    echo
    # Single-line and block replaces, normalised to one `replace` line each; local paths dropped.
    awk '
      /^replace[ \t]*\(/ { inblock = 1; next }
      inblock && /^\)/   { inblock = 0; next }
      inblock            { line = $0 }
      !inblock && /^replace[ \t]/ { line = $0; sub(/^replace[ \t]+/, "", line) }
      line != "" {
        sub(/\/\/.*/, "", line); gsub(/^[ \t]+|[ \t]+$/, "", line)
        split(line, side, /[ \t]*=>[ \t]*/)
        if (line != "" && side[2] !~ /^\.\.?\//) print "replace " line
        line = ""
      }
    ' "$mod"
    grep -E '^exclude ' "$mod" || true
  } > go.mod
  pins "$module@$version" >> go.mod
  log "wrapper go.mod for $module@$version:"; sed 's/^/    /' go.mod >&2
  go get -tool "$module@$version"
  log "dependencies resolved and downloaded in $(( $(date +%s) - start ))s; compiling"
  go build -trimpath -ldflags "-s -w" -o "$out/$binary.tmp" "$module"
  mv -f "$out/$binary.tmp" "$out/$binary"
  dir=$(go list -m -f '{{.Dir}}' "$module")
  rm -rf "$out/crds"
  mkdir -p "$out/crds"
  cp "$dir"/config/crd/bases/*.yaml "$out/crds/"
  chmod -R u+w "$out/crds" # the module cache is read-only
  echo "$module@$version" > "$out/.built"
  log "$module@$version built in $(( $(date +%s) - start ))s: $out/$binary"
}

if ! built "$SC_OUT" github.com/fluxcd/source-controller "$SC_VERSION" source-controller; then
  build sc github.com/fluxcd/source-controller "$SC_VERSION" source-controller "$SC_OUT"
fi
if ! built "$KC_OUT" github.com/fluxcd/kustomize-controller "$KC_VERSION" kustomize-controller; then
  build kc github.com/fluxcd/kustomize-controller "$KC_VERSION" kustomize-controller "$KC_OUT"
fi
print_paths
