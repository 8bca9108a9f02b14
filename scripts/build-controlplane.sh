#!/usr/bin/env bash
# Builds the sandbox's control plane (etcd, kube-apiserver, kube-controller-manager) from the Go
# modules pinned in controlplane/ into a cache outside the clone, once per machine:
#   ${CLM_CACHE_DIR:-$HOME/.cache/clm-operator}/controlplane/<hash of the pins>/bin
# The hash covers the go.mod/go.sum/main.go files, the build flags and the Go version, so changing a
# pin builds a new directory and a fresh clone reuses the old one. Prints the bin directory last.
# --check: only print it (exit 1 when it is not built yet), for the sandbox to find the binaries.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/controlplane"
command -v go >/dev/null || { echo "error: go not found; install Go >= 1.25 to build the control plane" >&2; exit 1; }
kube_version="v1.35.4"   # must match controlplane/kubernetes/go.mod and the project's kubectl minor
# The same stamps Kubernetes' own build sets (hack/lib/version.sh), so `kubectl version` reports it.
build_date="2026-04-15T18:01:22Z"   # the release time of k8s.io/kubernetes $kube_version on the module proxy
pkg="k8s.io/component-base/version"
ldflags="-s -w -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=35"
ldflags="$ldflags -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
ldflags="$ldflags -X k8s.io/client-go/pkg/version.gitVersion=$kube_version"
recipe="flags=-trimpath cgo=0 ldflags=$ldflags"   # bump when the way of building changes
pins_hash="$( { go version; echo "$recipe"; cat kubernetes/go.mod kubernetes/go.sum etcd/go.mod etcd/go.sum etcd/main.go; } | sha256sum | cut -c1-16)"
cache="${CLM_CACHE_DIR:-$HOME/.cache/clm-operator}/controlplane/$pins_hash"
bin="$cache/bin"
if [ -x "$bin/etcd" ] && [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kube-controller-manager" ]; then
  echo "control plane already built in $bin" >&2
  echo "$bin"; exit 0
fi
if [ "${1:-}" = "--check" ]; then
  echo "the control plane is not built in $bin" >&2; exit 1
fi
mkdir -p "$cache"
tmp="$cache/bin.partial"
rm -rf "$tmp"; mkdir -p "$tmp"
start=$SECONDS
echo "building etcd (go.etcd.io/etcd/server/v3, controlplane/etcd) ..." >&2
(cd etcd && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" .)
echo "  etcd built after $((SECONDS - start)) s" >&2
for component in kube-apiserver kube-controller-manager; do
  echo "building $component $kube_version (k8s.io/kubernetes, controlplane/kubernetes; the first build takes a while) ..." >&2
  (cd kubernetes && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp/$component" "k8s.io/kubernetes/cmd/$component")
  echo "  $component built after $((SECONDS - start)) s" >&2
done
rm -rf "$bin"; mv "$tmp" "$bin"
echo "control plane built in $bin in $((SECONDS - start)) s" >&2
echo "$bin"
