#!/bin/sh
# Builds etcd, kube-apiserver and kube-controller-manager of one Kubernetes release from their Go
# modules into .tools/k8s/v<version>/bin (a second run with the binaries there does nothing).
#   e2e/controlplane/build.sh 1.37.2
# A new release's wrapper is written by `cd e2e/controlplane/wrapper && go run . 1.38.0`, and
# checked by `go test` there (every staging module replaced at the release's v0.<minor>.<patch>).
# The wrapper module v<version>/go.mod requires k8s.io/kubernetes at that version and replaces every
# staging module (k8s.io/api, k8s.io/apiserver, ...) by its published v0.<minor>.<patch>; etcd is the
# server module Kubernetes itself pins. The build tag `providerless` leaves out the in-tree cloud
# providers (1.29 still has them; their module, k8s.io/legacy-cloud-providers, is not on the module
# proxy for 1.29). Go's module and build caches (GOMODCACHE, GOCACHE) make a second build of the same
# release take seconds. Built under `nice`: the machine is shared.
set -eu
version=${1:?usage: build.sh <kubernetes version, e.g. 1.37.2>}
version=${version#v}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
module="$here/v$version"
out="$root/.tools/k8s/v$version/bin"
log="$root/.tools/k8s/v$version/build.log"
if [ ! -f "$module/go.mod" ]; then
    echo "controlplane: no build wrapper for Kubernetes v$version (have: $(cd "$here" && ls -d v*/ | tr -d / | tr '\n' ' '))" >&2
    exit 2
fi
if [ -x "$out/etcd" ] && [ -x "$out/kube-apiserver" ] && [ -x "$out/kube-controller-manager" ]; then
    exit 0
fi
command -v go >/dev/null || { echo "controlplane: go is not installed (Go >= 1.24 is needed to build Kubernetes v$version)" >&2; exit 2; }
mkdir -p "$out"
minor=$(echo "$version" | cut -d. -f2)
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=v$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
ldflags="$ldflags -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
start=$(date +%s)
echo "controlplane: building Kubernetes v$version (etcd, kube-apiserver, kube-controller-manager) into $out; log: $log"
if ! (cd "$module" &&
      nice go build -tags providerless -ldflags "$ldflags" -o "$out/" \
          k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager &&
      nice go build -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3) >"$log" 2>&1; then
    echo "controlplane: building Kubernetes v$version failed: $(tail -n 1 "$log") (full log: $log)" >&2
    rm -f "$out/kube-apiserver" "$out/kube-controller-manager" "$out/etcd"
    exit 1
fi
echo "controlplane: built Kubernetes v$version in $(( $(date +%s) - start ))s"
