#!/usr/bin/env bash
# Builds Argo CD's application controller and repo server (one binary, role picked from
# ARGOCD_BINARY_NAME) and kustomize from their published Go modules, through the Go module proxy,
# and caches them outside the repo, keyed by version. The bin folder also holds what the repo
# server runs by name: `argocd` (git's askpass helper), `kustomize` and `git-verify-wrapper.sh`.
# Also copies the Application and AppProject CRDs. Progress on stderr; prints the bin folder:
#
#   bash test/env/build-argocd.sh        # build what is missing, print e.g.
#   ~/.cache/dr-syncer/bin/argocd-v3.6.1
#
# Roles of the `argocd` binary: argocd-application-controller, argocd-repo-server,
# argocd-git-ask-pass, and argocd-redis (an in-process miniredis on --addr, so the tests need no
# redis package). Version notes: ../shared/research/argocd.md (v3.3-v3.5 do not build through the
# proxy; v3.6.1 needs Go 1.27, fetched as a toolchain module by GOTOOLCHAIN).
set -euo pipefail

VERSION=${ARGOCD_VERSION:-v3.6.1}
KUSTOMIZE_VERSION=${ARGOCD_KUSTOMIZE_VERSION:-v5.7.1}
TOOLCHAIN=${ARGOCD_GOTOOLCHAIN:-go1.27.3}
CACHE=${DR_SYNCER_CACHE:-$HOME/.cache/dr-syncer}
OUT="$CACHE/bin/argocd-$VERSION"
MODULE=github.com/argoproj/argo-cd/v3
STAMP="$MODULE@$VERSION kustomize@$KUSTOMIZE_VERSION"

log() { printf '[build-argocd] %s\n' "$*" >&2; }
built() {
  [ -x "$OUT/argocd" ] && [ -x "$OUT/kustomize" ] && [ -x "$OUT/git-verify-wrapper.sh" ] \
    && [ -f "$OUT/crds/application-crd.yaml" ] && [ "$(cat "$OUT/.built" 2>/dev/null)" = "$STAMP" ]
}

if built; then echo "$OUT"; exit 0; fi
command -v go >/dev/null || { log "Go is required to build Argo CD (https://go.dev/dl)"; exit 1; }
mkdir -p "$CACHE"
# One build at a time: parallel test processes wait for the first one.
exec 9>"$CACHE/build-argocd.lock"
flock 9
if built; then echo "$OUT"; exit 0; fi

start=$(date +%s)
w="$CACHE/src/argocd-$VERSION"
mkdir -p "$w" "$OUT"
cd "$w"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=$TOOLCHAIN
log "building $MODULE@$VERSION in $w with $TOOLCHAIN (cold: several minutes on 2 cores)"

# The wrapper's go.mod: upstream's go line and replaces, minus the local ./gitops-engine one
# (the proxy refuses nested-module zips of that kind; the published gitops-engine/v3 module of
# the same version is used instead).
printf 'module local/dr-syncer-argocd\n\ngo 1.24.0\n' > go.mod
mod=$(go mod download -json "$MODULE@$VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
[ -f "$mod" ] || { log "could not download $MODULE@$VERSION"; exit 1; }
{
  echo "module local/dr-syncer-argocd"
  echo
  grep -E '^go ' "$mod"
  echo
  echo "require $MODULE $VERSION"
  # Each replace, from a block or a single line, as one line; local-path targets dropped.
  awk '
    /^replace[ \t]*\(/ { block = 1; next }
    block && /^\)/     { block = 0; next }
    { line = "" }
    block              { line = $0 }
    !block && /^replace[ \t]/ { line = $0; sub(/^replace[ \t]+/, "", line) }
    {
      sub(/\/\/.*/, "", line); gsub(/^[ \t]+|[ \t]+$/, "", line)
      if (line == "") next
      n = split(line, side, /[ \t]*=>[ \t]*/)
      if (n == 2 && side[2] !~ /^\.\.?\//) print "replace " line
    }
  ' "$mod"
} > go.mod
log "wrapper go.mod:"; sed 's/^/    /' go.mod >&2

# Our own slim main: only the roles the tests run (building upstream's whole ./cmd costs ~50 %
# more CPU for the CLI, API server and dex that we never start).
cat > main.go <<'EOF'
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/alicebob/miniredis/v2"
	"github.com/spf13/cobra"

	controller "github.com/argoproj/argo-cd/v3/cmd/argocd-application-controller/commands"
	askpass "github.com/argoproj/argo-cd/v3/cmd/argocd-git-ask-pass/commands"
	reposerver "github.com/argoproj/argo-cd/v3/cmd/argocd-repo-server/commands"
)

// serveRedis blocks serving an in-memory redis on addr (test use only).
func serveRedis(args []string) {
	fs := flag.NewFlagSet("argocd-redis", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:6379", "listen address")
	_ = fs.Parse(args)
	r := miniredis.NewMiniRedis()
	if err := r.StartAddr(*addr); err != nil {
		fmt.Fprintln(os.Stderr, "argocd-redis:", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "argocd-redis listening on", r.Addr())
	select {}
}

func main() {
	role := os.Getenv("ARGOCD_BINARY_NAME")
	if role == "" {
		role = filepath.Base(os.Args[0])
	}
	var cmd *cobra.Command
	switch role {
	case "argocd-application-controller":
		cmd = controller.NewCommand()
	case "argocd-repo-server":
		cmd = reposerver.NewCommand()
	case "argocd-redis":
		serveRedis(os.Args[1:])
		return
	default:
		// git runs the binary as GIT_ASKPASS=argocd with no role set.
		cmd = askpass.NewCommand()
		cmd.SilenceUsage = true
	}
	if err := cmd.Execute(); err != nil {
		os.Exit(1)
	}
}
EOF
go mod tidy
log "dependencies resolved in $(( $(date +%s) - start ))s; compiling (the longest step)"
ldflags="-s -w -X $MODULE/common.version=${VERSION#v} -X $MODULE/common.gitTag=$VERSION"
ldflags="$ldflags -X $MODULE/common.gitCommit=module-proxy -X $MODULE/common.gitTreeState=clean"
go build -trimpath -ldflags "$ldflags" -o "$OUT/argocd.tmp" .
mv -f "$OUT/argocd.tmp" "$OUT/argocd"
log "argocd built in $(( $(date +%s) - start ))s"

dir=$(go list -m -f '{{.Dir}}' "$MODULE")
rm -rf "$OUT/crds"; mkdir -p "$OUT/crds"
cp "$dir/manifests/crds/application-crd.yaml" "$dir/manifests/crds/appproject-crd.yaml" "$OUT/crds/"
# v3.6's repo server runs this helper by name on every manifest request.
cp "$dir/hack/git-verify-wrapper.sh" "$OUT/git-verify-wrapper.sh"
chmod -R u+w "$OUT/crds" "$OUT/git-verify-wrapper.sh" # the module cache is read-only
chmod +x "$OUT/git-verify-wrapper.sh"

# kustomize: no replaces upstream, so a plain `go install` works.
GOFLAGS= GOBIN="$OUT" go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
echo "$STAMP" > "$OUT/.built"
log "Argo CD $VERSION and kustomize $KUSTOMIZE_VERSION built in $(( $(date +%s) - start ))s: $OUT"
echo "$OUT"
