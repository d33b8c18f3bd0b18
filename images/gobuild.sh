#!/usr/bin/env bash
# Builds Go programs from the Go module proxy into $LOOPWRIGHT_CACHE/<name>-<version>/bin, and
# reuses them afterwards (a product whose binaries exist is skipped).
# Usage: images/gobuild.sh [--link] PRODUCT[@VERSION]...   (--link: also into $LOOPWRIGHT_CACHE/bin)
# Products: kubernetes (every binary a kind node and a control plane need), kind, etcd, coredns,
# crictl, versitygw, metrics-server, and for the monitoring bundle's kind test prometheus, promtool,
# prometheus-operator, prometheus-config-reloader. Without @VERSION, images/versions.env decides.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG=gobuild
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
K8S_CMDS=(kubelet kubeadm kube-proxy kube-apiserver kube-controller-manager kube-scheduler kubectl)

build_kubernetes() {  # version
  local version="$1" out="$CACHE/kubernetes-$1" missing=() cmd
  for cmd in "${K8S_CMDS[@]}"; do [[ -x "$out/bin/$cmd" ]] || missing+=("$cmd"); done
  local work="$out/src"
  mkdir -p "$work" "$out/bin"
  if [[ ! -f "$work/go.sum" ]]; then
    # A wrapper module: k8s.io/kubernetes requires its staging modules at v0.0.0 (replaced by
    # ./staging in its own repository), so each is replaced here by its published v0.<minor>.<patch>.
    (cd "$work" && rm -f go.mod && go mod init loopwright.local/kubebuild >/dev/null 2>&1)
    local gomod
    gomod=$(cd "$work" && go mod download -json "k8s.io/kubernetes@$version" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    {
      echo "module loopwright.local/kubebuild"
      grep -E '^go [0-9]' "$gomod"
      grep -E '^godebug' "$gomod" || true
      echo "require k8s.io/kubernetes $version"
      grep -E '^\s*k8s\.io/[a-z0-9-]+ v0\.0\.0\s*$' "$gomod" \
        | awk -v v="v0.${version#v1.}" '{print "replace " $1 " => " $1 " " v}' | sort -u
    } > "$work/go.mod"
    { printf '//go:build tools\n\npackage tools\n\nimport (\n'
      for cmd in "${K8S_CMDS[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$cmd"; done
      printf ')\n'; } > "$work/tools.go"
    (cd "$work" && go mod tidy)
  fi
  local minor="${version#v1.}" ldflags=""
  minor="${minor%%.*}"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  for cmd in "${missing[@]}"; do
    step "go build $cmd $version" \
      bash -c "cd '$work' && go build -trimpath -ldflags '-s -w $ldflags' -o '$out/bin/$cmd' 'k8s.io/kubernetes/cmd/$cmd'"
  done
}

build_module() {  # name version binary package
  local name="$1" version="$2" bin="$3" pkg="$4" out="$CACHE/$1-$2"
  local work="$out/src"
  rm -rf "$work"; mkdir -p "$work" "$out/bin"
  (cd "$work" && go mod init "loopwright.local/${name}build" >/dev/null 2>&1 \
    && go get "$pkg@$version" \
    && go build -trimpath -ldflags "-s -w" -o "$out/bin/$bin" "$pkg")
}

build() {  # product version
  case "$1" in
    kubernetes) build_kubernetes "$2" ;;
    kind) build_module kind "$2" kind sigs.k8s.io/kind ;;
    etcd) build_module etcd "$2" etcd go.etcd.io/etcd/server/v3 ;;
    coredns) build_module coredns "$2" coredns github.com/coredns/coredns ;;
    crictl) build_module crictl "$2" crictl sigs.k8s.io/cri-tools/cmd/crictl ;;
    versitygw) build_module versitygw "$2" versitygw github.com/versity/versitygw/cmd/versitygw ;;
    metrics-server) build_module metrics-server "$2" metrics-server sigs.k8s.io/metrics-server/cmd/metrics-server ;;
    prometheus) build_module prometheus "$2" prometheus github.com/prometheus/prometheus/cmd/prometheus ;;
    promtool) build_module promtool "$2" promtool github.com/prometheus/prometheus/cmd/promtool ;;
    prometheus-operator) build_module prometheus-operator "$2" prometheus-operator \
      github.com/prometheus-operator/prometheus-operator/cmd/operator ;;
    prometheus-config-reloader) build_module prometheus-config-reloader "$2" prometheus-config-reloader \
      github.com/prometheus-operator/prometheus-operator/cmd/prometheus-config-reloader ;;
    *) die "unknown product $1" ;;
  esac
}

built() {  # product version: are its binaries in the cache?
  local bins=("$1") bin
  [[ "$1" == kubernetes ]] && bins=("${K8S_CMDS[@]}")
  for bin in "${bins[@]}"; do [[ -x "$CACHE/$1-$2/bin/$bin" ]] || return 1; done
}

default_version() {
  case "$1" in
    kubernetes) echo "$K8S_VERSION" ;; kind) echo "$KIND_VERSION" ;; etcd) echo "$ETCD_VERSION" ;;
    coredns) echo "$COREDNS_VERSION" ;; crictl) echo "$CRICTL_VERSION" ;; versitygw) echo "$VERSITYGW_VERSION" ;;
    metrics-server) echo "$METRICS_SERVER_VERSION" ;;
    prometheus|promtool) echo "$PROMETHEUS_VERSION" ;;
    prometheus-operator|prometheus-config-reloader) echo "$PROMETHEUS_OPERATOR_VERSION" ;;
    *) die "unknown product $1" ;;
  esac
}

main() {
  local link=0 spec name version
  [[ "${1:-}" == --link ]] && { link=1; shift; }
  command -v go >/dev/null || die "needs Go (https://go.dev/dl) to build from the Go module proxy"
  mkdir -p "$CACHE/bin"
  for spec in "$@"; do
    name="${spec%@*}"; version="${spec#*@}"
    [[ "$spec" == *@* ]] || version="$(default_version "$name")"
    built "$name" "$version" || step "build $name $version" build "$name" "$version"
    (( link )) && ln -sf "$CACHE/$name-$version/bin/"* "$CACHE/bin/"
  done
  echo "$CACHE/bin"
}
main "$@"
