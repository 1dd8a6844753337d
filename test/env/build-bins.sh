#!/usr/bin/env bash
# Builds the real Kubernetes control plane used by the integration tests from the published
# Go modules (through the Go module proxy) and caches the binaries outside the repo, keyed by
# version. Prints the folder that holds kube-apiserver, kube-controller-manager, kubectl and etcd.
#
#   bash test/env/build-bins.sh            # build what is missing, print the folder
#   bash test/env/build-bins.sh --nodes    # also kubelet and kube-scheduler (real nodes, issue 9)
#
# If KUBEBUILDER_ASSETS names a folder with kube-apiserver and etcd (and, with --nodes, kubelet
# and kube-scheduler), it is used as it is.
set -euo pipefail

NODES=0
case "${1:-}" in
  --nodes) NODES=1 ;;
  "") ;;
  *) echo "usage: build-bins.sh [--nodes]" >&2; exit 2 ;;
esac

K8S_VERSION=${K8S_VERSION:-v1.33.13}
ETCD_VERSION=${ETCD_VERSION:-v3.5.21}
CACHE=${DR_SYNCER_CACHE:-$HOME/.cache/dr-syncer}
OUT="$CACHE/bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"

log() { printf '[build-bins] %s\n' "$*" >&2; }

if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  if [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ] && [ -x "$KUBEBUILDER_ASSETS/etcd" ] \
     && { [ $NODES = 0 ] || { [ -x "$KUBEBUILDER_ASSETS/kubelet" ] && [ -x "$KUBEBUILDER_ASSETS/kube-scheduler" ]; }; }; then
    echo "$KUBEBUILDER_ASSETS"; exit 0
  fi
  if [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ] && [ -x "$KUBEBUILDER_ASSETS/etcd" ]; then
    log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no kubelet/kube-scheduler (needed by --nodes); building our own"
  else
    log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no kube-apiserver/etcd; building our own"
  fi
fi

# Capture first: `cmd | grep -q` under pipefail fails when grep exits early and cmd gets SIGPIPE.
have() { [ -x "$OUT/$1" ] || return 1; local v; v=$("$OUT/$1" --version 2>/dev/null) || return 1; [[ "$v" == *"$2"* ]]; }
have_control_plane() { have kube-apiserver "$K8S_VERSION" && have kube-controller-manager "$K8S_VERSION" && [ -x "$OUT/kubectl" ]; }
have_node_bins() { [ $NODES = 0 ] || { have kubelet "$K8S_VERSION" && have kube-scheduler "$K8S_VERSION"; }; }
if have_control_plane && have etcd "${ETCD_VERSION#v}" && have_node_bins; then
  echo "$OUT"; exit 0
fi

command -v go >/dev/null || { log "Go is required to build the test control plane (https://go.dev/dl)"; exit 1; }
# One build at a time: parallel test processes wait for the first one instead of racing it.
mkdir -p "$CACHE"
exec 9>"$CACHE/build-bins.lock"
flock 9
if have_control_plane && have etcd "${ETCD_VERSION#v}" && have_node_bins; then
  echo "$OUT"; exit 0
fi
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
mkdir -p "$OUT"
start=$(date +%s)

# --- kube-apiserver, kube-controller-manager, kubectl -------------------------------------
# k8s.io/kubernetes requires its staging modules at v0.0.0 with local replaces, so `go install`
# refuses it. A wrapper module replaces every staging module with its published v0.Y.Z twin.
W="$CACHE/src/k8s-$K8S_VERSION"
MINOR=$(echo "$K8S_VERSION" | cut -d. -f2)
LDF="-s -w"
for kv in "gitVersion=$K8S_VERSION" "gitMajor=1" "gitMinor=$MINOR" "gitTreeState=clean" \
          "gitCommit=0000000000000000000000000000000000000000" "buildDate=1970-01-01T00:00:00Z"; do
  LDF="$LDF -X k8s.io/component-base/version.$kv -X k8s.io/client-go/pkg/version.$kv"
done
if ! have_control_plane; then
  mkdir -p "$W"; cd "$W"
  log "building Kubernetes $K8S_VERSION in $W (cold: ~15-25 min on 2 cores)"
  go mod download k8s.io/kubernetes@"$K8S_VERSION"
  MOD=$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$K8S_VERSION.mod
  STAGING=$(sed -n 's|^\s*k8s.io/\([^ ]*\) => ./staging/src/k8s.io/.*|\1|p' "$MOD")
  GODEBUG_LINE=$(grep -E '^godebug ' "$MOD" || true)
  STAGING_VERSION="v0.${K8S_VERSION#v1.}"
  {
    echo "module local/dr-syncer-k8s-bins"; echo
    grep -E '^go ' "$MOD"; echo "$GODEBUG_LINE"; echo
    echo "require k8s.io/kubernetes $K8S_VERSION"; echo
    echo "replace ("
    for m in $STAGING; do echo "	k8s.io/$m => k8s.io/$m $STAGING_VERSION"; done
    echo ")"
  } > go.mod
  go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" \
               "k8s.io/kubernetes/cmd/kube-controller-manager@$K8S_VERSION" \
               "k8s.io/kubernetes/cmd/kubectl@$K8S_VERSION"
  go build -p 2 -trimpath -ldflags "$LDF" -o "$OUT/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl
  log "Kubernetes built in $(( $(date +%s) - start ))s"
fi

# --- kubelet, kube-scheduler (only with --nodes) ------------------------------------------
# Same wrapper module and flags, so they share nearly all compiled packages with the control
# plane: ~1 min with a warm Go build cache. CGO off like the rest (static, no libc coupling).
if ! have_node_bins; then
  cd "$W"
  t=$(date +%s)
  log "building kubelet and kube-scheduler $K8S_VERSION in $W"
  go get -tool "k8s.io/kubernetes/cmd/kubelet@$K8S_VERSION" "k8s.io/kubernetes/cmd/kube-scheduler@$K8S_VERSION"
  go build -p 2 -trimpath -ldflags "$LDF" -o "$OUT/" k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-scheduler
  log "kubelet and kube-scheduler built in $(( $(date +%s) - t ))s"
fi

# --- etcd ---------------------------------------------------------------------------------
if ! have etcd "${ETCD_VERSION#v}"; then
  W="$CACHE/src/etcd-$ETCD_VERSION"; mkdir -p "$W"; cd "$W"
  log "building etcd $ETCD_VERSION"
  printf 'module local/dr-syncer-etcd\n\ngo 1.23.0\n' > go.mod
  go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go build -trimpath -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION" \
    -o "$OUT/etcd" go.etcd.io/etcd/server/v3
fi

"$OUT/kube-apiserver" --version >&2
# Not `| head -1`: with pipefail, etcd killed by SIGPIPE when head has gone fails the script.
etcd_version=$("$OUT/etcd" --version)
echo "${etcd_version%%$'\n'*}" >&2
log "ready in $(( $(date +%s) - start ))s: $OUT"
echo "$OUT"
