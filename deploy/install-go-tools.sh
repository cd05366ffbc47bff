#!/usr/bin/env bash
# Builds the pinned Kubernetes tools the chart checks need (helm, kube-score) from the Go module
# proxy into .cache/tools/bin, with the module and build caches under .cache/go so a second run is
# a version check and nothing else. Neither tool is packaged in Debian or PyPI, and release
# binaries cannot be downloaded here: building from the proxy is the one route that works offline
# of GitHub.
#
# kube-linter (golang.stackrox.io/kube-linter) would be the first choice of linter, but the module
# proxy refuses that module's host ("module host not permitted"), so kube-score, which checks the
# same properties (resources, probes, security contexts, network policies, PDBs, image tags), is
# built instead. Override versions with HELM_VERSION / KUBE_SCORE_VERSION.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HELM_VERSION=${HELM_VERSION:-v3.22.0}
KUBE_SCORE_VERSION=${KUBE_SCORE_VERSION:-v1.20.0}

export GOBIN="$ROOT/.cache/tools/bin"
export GOPATH="$ROOT/.cache/go/path"
export GOMODCACHE="$ROOT/.cache/go/mod"
export GOCACHE="$ROOT/.cache/go/build"
export GOFLAGS="-trimpath -buildvcs=false -modcacherw"
export GOTOOLCHAIN=auto
export CGO_ENABLED=0
mkdir -p "$GOBIN"

find_go() {
  if [ -x /usr/local/go/bin/go ]; then
    echo /usr/local/go/bin/go
  elif command -v go >/dev/null 2>&1; then
    command -v go
  else
    echo "prodcat: the chart tools are built with Go; install Go 1.22+ (it fetches the toolchain the" >&2
    echo "modules need from the module proxy) and run 'make tools' again." >&2
    return 1
  fi
}

helm_ok() {
  [ -x "$GOBIN/helm" ] && [ "$("$GOBIN/helm" version --template '{{.Version}}' 2>/dev/null)" = "$HELM_VERSION" ]
}

kube_score_ok() {
  [ -x "$GOBIN/kube-score" ] &&
    "$GOBIN/kube-score" version 2>/dev/null | grep -q "version: ${KUBE_SCORE_VERSION#v},"
}

if helm_ok && kube_score_ok; then
  exit 0
fi
GO=$(find_go)

if ! helm_ok; then
  echo "building helm $HELM_VERSION from the Go module proxy (several minutes on 2 cores)" >&2
  # helm's own Makefile stamps its version and the Kubernetes version it targets (the minor of the
  # client-go it is built with, +1 on the major) into the binary; `go install` alone would report
  # "v3.22" and render .Capabilities.KubeVersion as v1.20.
  mod=$("$GO" mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
  client_go=$(awk '$1 == "k8s.io/client-go" {print $2}' "$mod")
  k8s_minor=$(echo "$client_go" | cut -d. -f2)
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ldflags="$ldflags -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
  done
  "$GO" install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi

if ! kube_score_ok; then
  echo "building kube-score $KUBE_SCORE_VERSION from the Go module proxy" >&2
  "$GO" install -ldflags "-s -w -X main.version=${KUBE_SCORE_VERSION#v}" \
    "github.com/zegl/kube-score/cmd/kube-score@$KUBE_SCORE_VERSION"
fi

helm_ok || { echo "helm build did not report $HELM_VERSION" >&2; exit 1; }
kube_score_ok || { echo "kube-score build did not report $KUBE_SCORE_VERSION" >&2; exit 1; }
echo "helm $HELM_VERSION and kube-score $KUBE_SCORE_VERSION in $GOBIN" >&2
