#!/usr/bin/env bash
# Builds the real `sops` CLI (getsops/sops v3) from its Go module through the Go module proxy and
# caches it outside the repo, keyed by version. The SOPS integration test decrypts our output with
# it. Prints the path of the binary.
#
#   bash test/env/build-sops.sh            # build if missing, print the path
#
# If SOPS_BIN names an executable, it is used as it is.
set -euo pipefail

SOPS_VERSION=${SOPS_VERSION:-v3.13.3}
CACHE=${DR_SYNCER_CACHE:-$HOME/.cache/dr-syncer}
OUT="$CACHE/bin/sops-$SOPS_VERSION"
BIN="$OUT/sops"

log() { printf '[build-sops] %s\n' "$*" >&2; }

if [ -n "${SOPS_BIN:-}" ]; then
  if [ -x "$SOPS_BIN" ]; then echo "$SOPS_BIN"; exit 0; fi
  log "SOPS_BIN=$SOPS_BIN is not executable; building our own"
fi

# --disable-version-check: `sops --version` otherwise asks GitHub for the latest release.
# Capture first: `cmd | grep -q` under pipefail fails when grep exits early and cmd gets SIGPIPE.
have_sops() { [ -x "$BIN" ] || return 1; local v; v=$("$BIN" --version --disable-version-check 2>/dev/null) || return 1; [[ "$v" == *"sops ${SOPS_VERSION#v}"* ]]; }
if have_sops; then echo "$BIN"; exit 0; fi

command -v go >/dev/null || { log "Go is required to build sops (https://go.dev/dl)"; exit 1; }
mkdir -p "$OUT"
exec 9>"$OUT/.build.lock"
flock 9
if have_sops; then echo "$BIN"; exit 0; fi
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
mkdir -p "$OUT"
start=$(date +%s)
log "building sops $SOPS_VERSION into $OUT (cold: a few minutes on 2 cores)"
# getsops/sops' go.mod has no replace directives, so `go install module@version` builds it as
# released, with its own go.sum.
GOBIN="$OUT" go install -trimpath -ldflags "-s -w" "github.com/getsops/sops/v3/cmd/sops@$SOPS_VERSION"
"$BIN" --version --disable-version-check >&2
log "built in $(( $(date +%s) - start ))s: $BIN"
echo "$BIN"
