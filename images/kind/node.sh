#!/usr/bin/env bash
# Builds kind's node image with no registry, as `kind build node-image` does (kind's
# pkg/build/nodeimage) minus its pulls: kind's base image on Debian packages (node/base.Dockerfile),
# Kubernetes, etcd, CoreDNS and pause built from their Go modules (images/gobuild.sh), the control
# plane images tagged as kubeadm asks and imported into the node's containerd, and a bridge CNI
# that containerd renders from the node's podCIDR instead of kindnetd (node/cni-bridge.template).
# Usage: images/kind/node.sh   (prints the image name; an image already built is reused)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
LOG_TAG=node
NODE="$IMAGES_DIR/kind/node"
NODE_IMAGE="loopwright-build/kind-node:$K8S_VERSION-kind$KIND_VERSION"
KIND_BASE="loopwright-build/kind-base:kind$KIND_VERSION-$DEBIAN_SUITE"
WORK="$CACHE/build/node"

base_image() {
  local kind_files ctx="$WORK/base"
  kind_files="$(go env GOMODCACHE)/sigs.k8s.io/kind@$KIND_VERSION/images/base/files"
  [[ -d "$kind_files" ]] || die "kind's module is not in the Go module cache: images/gobuild.sh kind"
  rm -rf "$ctx"; mkdir -p "$ctx"
  cp -r "$kind_files" "$ctx/files"; chmod -R u+w "$ctx"
  cp "$NODE/base.Dockerfile" "$ctx/Dockerfile"
  cp "$CACHE/crictl-$CRICTL_VERSION/bin/crictl" "$ctx/crictl"
  # No fuse-overlayfs (rootless only); the sandbox image is the pause kubeadm names.
  rm -f "$ctx/files/etc/systemd/system/containerd-fuse-overlayfs.service"
  python3 - "$ctx/files/etc/containerd/config.toml" "$PAUSE_TAG" <<'PY'
import re, sys
path, pause = sys.argv[1], sys.argv[2]
text = open(path).read()
text = re.sub(r'\[proxy_plugins\]\n(?:.*\n)*?\s*address = "/run/containerd-fuse-overlayfs.sock"\n', "", text)
text = re.sub(r'sandbox_image = "registry.k8s.io/pause:[^"]*"', f'sandbox_image = "registry.k8s.io/pause:{pause}"', text)
assert "fuse-overlayfs.sock" not in text and f"pause:{pause}" in text, "kind's containerd config changed"
open(path, "w").write(text)
PY
  docker build -q --network host --build-arg "DEBIAN_IMAGE=$1" -t "$KIND_BASE" "$ctx" >/dev/null
}

check_kubeadm_tags() {  # kubeadm must ask for exactly the images built here
  local want have
  want="$("$CACHE/kubernetes-$K8S_VERSION/bin/kubeadm" config images list --kubernetes-version "$K8S_VERSION" | sort)"
  have="$(printf '%s\n' "${IMAGES[@]}" | sort)"
  [[ "$want" == "$have" ]] || die "kubeadm $K8S_VERSION asks for:"$'\n'"$want"$'\n'"images/versions.env gives:"$'\n'"$have"
}

component_images() {  # debian-image -> one tarball of every preloaded image
  local ctx="$WORK/components" kb="$CACHE/kubernetes-$K8S_VERSION/bin" image target
  rm -rf "$ctx"; mkdir -p "$ctx/bin" "$ctx/etc" "$ctx/tmp"
  chmod 1777 "$ctx/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' > "$ctx/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' > "$ctx/etc/group"
  cp "$kb"/{kube-apiserver,kube-controller-manager,kube-scheduler,kube-proxy} "$CACHE/etcd-$ETCD_VERSION/bin/etcd" \
    "$CACHE/coredns-$COREDNS_VERSION/bin/coredns" "$ctx/bin/"
  # pause is C: kubernetes' own build/pause/linux/pause.c, linked statically.
  gcc -Os -static -DVERSION="$PAUSE_TAG" -o "$ctx/bin/pause" \
    "$(go env GOMODCACHE)/k8s.io/kubernetes@$K8S_VERSION/build/pause/linux/pause.c"
  strip "$ctx/bin/pause"
  cp "$NODE/component.Dockerfile" "$ctx/Dockerfile"
  cp "$NODE/iptables-wrapper" "$ctx/"
  for image in "${IMAGES[@]}"; do
    target="${image##*/}"; target="${target%%:*}"
    docker build -q --network host --target "$target" --build-arg "KIND_BASE=$KIND_BASE" \
      --build-arg "DEBIAN_IMAGE=$1" -t "$image" "$ctx" >/dev/null
  done
  docker save -o "$WORK/components.tar" "${IMAGES[@]}"
}

assemble() {
  local id="loopwright-node-build-$$" kb="$CACHE/kubernetes-$K8S_VERSION/bin"
  docker rm -f "$id" >/dev/null 2>&1 || true
  docker run -d --name "$id" --entrypoint=sleep --security-opt seccomp=unconfined "$KIND_BASE" infinity >/dev/null
  # shellcheck disable=SC2064  # the id is fixed now
  trap "docker rm -f -v '$id' >/dev/null 2>&1 || true" EXIT
  docker cp "$kb/kubeadm" "$id:/usr/bin/kubeadm"
  docker cp "$kb/kubelet" "$id:/usr/bin/kubelet"
  docker cp "$kb/kubectl" "$id:/usr/bin/kubectl"
  docker exec "$id" sh -c 'chown root:root /usr/bin/kube* && chmod 0755 /usr/bin/kube* && mkdir -p /kind/manifests'
  printf '%s' "$K8S_VERSION" | docker exec -i "$id" sh -c 'cat > /kind/version'
  docker cp "$NODE/default-cni.yaml" "$id:/kind/manifests/default-cni.yaml"
  docker cp "$NODE/default-storage.yaml" "$id:/kind/manifests/default-storage.yaml"
  docker cp "$NODE/cni-bridge.template" "$id:/etc/containerd/cni-bridge.template"
  docker exec "$id" sh -c 'printf "\n[plugins.\"io.containerd.grpc.v1.cri\".cni]\n  conf_template = \"/etc/containerd/cni-bridge.template\"\n" >> /etc/containerd/config.toml'
  # Preload: containerd in the build container imports the images; pinned, as kind does, so the
  # kubelet's image garbage collection never removes them.
  docker exec "$id" sh -c 'nohup containerd >/tmp/containerd.log 2>&1 &'
  docker exec "$id" sh -c 'for i in $(seq 40); do ctr version >/dev/null 2>&1 && exit 0; sleep 0.25; done; cat /tmp/containerd.log; exit 1'
  docker exec -i "$id" ctr --namespace=k8s.io images import --all-platforms --no-unpack --digests - \
    < "$WORK/components.tar" >/dev/null
  docker exec "$id" sh -c 'for i in $(ctr -n k8s.io images ls -q); do ctr -n k8s.io images label "$i" io.cri-containerd.pinned=pinned >/dev/null; done'
  # Stopped once it is gone or a zombie (sleep, PID 1 here, reaps nothing).
  docker exec "$id" sh -c 'pkill -x containerd; for i in $(seq 40); do ps -o stat= -C containerd | grep -q "^[^Z]" || exit 0; sleep 0.25; done; exit 1'
  docker exec "$id" rm -f /tmp/containerd.log
  docker commit --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' "$id" "$NODE_IMAGE" >/dev/null
}

main() {
  use_docker
  if docker image inspect "$NODE_IMAGE" >/dev/null 2>&1; then echo "$NODE_IMAGE"; return; fi
  "$IMAGES_DIR/gobuild.sh" kind kubernetes etcd coredns crictl >/dev/null
  IMAGES=("registry.k8s.io/kube-apiserver:$K8S_VERSION" "registry.k8s.io/kube-controller-manager:$K8S_VERSION"
          "registry.k8s.io/kube-scheduler:$K8S_VERSION" "registry.k8s.io/kube-proxy:$K8S_VERSION"
          "registry.k8s.io/coredns/coredns:$COREDNS_VERSION" "registry.k8s.io/pause:$PAUSE_TAG"
          "registry.k8s.io/etcd:$ETCD_TAG")
  check_kubeadm_tags
  local debian started=$SECONDS
  debian="$("$IMAGES_DIR/debian.sh")"
  mkdir -p "$WORK"
  docker image inspect "$KIND_BASE" >/dev/null 2>&1 || step "kind base $KIND_BASE" base_image "$debian"
  step "preloaded images (${#IMAGES[@]})" component_images "$debian"
  step "node image $NODE_IMAGE" assemble
  rm -rf "$WORK"
  log "node image built in $((SECONDS - started)) s"
  echo "$NODE_IMAGE"
}
main "$@"
