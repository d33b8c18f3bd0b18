#!/usr/bin/env bash
# Builds the local cluster's binaries from the Go module proxy into a cache
# outside the repository, keyed by version, and reuses them afterwards.
# Usage: tests/cluster/build.sh   (prints the bin directory on success)
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.35.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.14.7}"
VERSITYGW_VERSION="${VERSITYGW_VERSION:-v1.8.0}"
CACHE="${LOOPWRIGHT_CACHE:-$HOME/.cache/loopwright}"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

log() { printf '[build] %s\n' "$*" >&2; }

# kubectl too: the tests and the docs need one within the supported version skew of the server.
K8S_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

build_kubernetes() {
  local out="$CACHE/kubernetes-$K8S_VERSION" missing=() cmd
  for cmd in "${K8S_CMDS[@]}"; do [[ -x "$out/bin/$cmd" ]] || missing+=("$cmd"); done
  (( ${#missing[@]} )) || return 0
  log "building ${missing[*]} $K8S_VERSION into $out (cold: about 10 minutes on 2 cores)"
  local work="$out/src"
  rm -rf "$work"; mkdir -p "$work" "$out/bin"
  cd "$work"
  go mod init loopwright.local/kubebuild >/dev/null 2>&1
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local staging_version="v0.${K8S_VERSION#v1.}"
  {
    echo "module loopwright.local/kubebuild"
    grep -E '^go [0-9]' "$gomod"
    grep -E '^godebug' "$gomod" || true
    echo "require k8s.io/kubernetes $K8S_VERSION"
    # Staging modules are required at exactly v0.0.0 (not v0.0.0-<date> pseudo-versions).
    grep -E '^\s*k8s\.io/[a-z0-9-]+ v0\.0\.0\s*$' "$gomod" | awk -v v="$staging_version" '{print "replace " $1 " => " $1 " " v}' | sort -u
  } > go.mod
  cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  go mod tidy
  local ldflags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  for cmd in "${missing[@]}"; do
    log "go build $cmd"
    go build -trimpath -ldflags "-s -w $ldflags" -o "$out/bin/$cmd" "k8s.io/kubernetes/cmd/$cmd"
  done
}

build_simple() {  # name module version binary-name [package]
  local name="$1" module="$2" version="$3" bin="$4" pkg="${5:-$2}"
  local out="$CACHE/$name-$version"
  [[ -x "$out/bin/$bin" ]] && return
  log "building $name $version into $out"
  local work="$out/src"
  rm -rf "$work"; mkdir -p "$work" "$out/bin"
  cd "$work"
  go mod init "loopwright.local/${name}build" >/dev/null 2>&1
  go get "$pkg@$version"  # the package, so go.sum covers its imports (not only the module root)
  go build -trimpath -ldflags "-s -w" -o "$out/bin/$bin" "$pkg"
}

main() {
  mkdir -p "$CACHE"
  build_kubernetes
  build_simple etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" etcd
  build_simple coredns github.com/coredns/coredns "$COREDNS_VERSION" coredns
  build_simple versitygw github.com/versity/versitygw "$VERSITYGW_VERSION" versitygw github.com/versity/versitygw/cmd/versitygw
  mkdir -p "$CACHE/bin"
  ln -sf "$CACHE/kubernetes-$K8S_VERSION/bin/"* "$CACHE/etcd-$ETCD_VERSION/bin/etcd" \
    "$CACHE/coredns-$COREDNS_VERSION/bin/coredns" "$CACHE/versitygw-$VERSITYGW_VERSION/bin/versitygw" "$CACHE/bin/"
  echo "$CACHE/bin"
}
main "$@"
