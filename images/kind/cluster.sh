#!/usr/bin/env bash
# The kind cluster of `make kind-up | kind-load | kind-deploy | kind-down`.
#   up      a Docker engine (images/docker.sh), kind from the Go module proxy, the node image
#           (kind's default where a registry is reachable, else images/kind/node.sh), then the
#           cluster with the fixes this machine needs (images/machine.py). A cluster whose node
#           is not running (its engine ended with the last session) is made anew.
#   load    `kind load` Loopwright's images, the S3 server's and metrics-server's (those two built
#           here when no registry).
#   deploy  manifests/overlays/kind: Loopwright, S3 and its bucket, metrics-server; waits until all
#           are ready.
#   monitoring  (make kind-monitoring) the Prometheus Operator's CRDs, read from its Go module, then
#           manifests/overlays/kind-prometheus: the operator and one Prometheus, their images built
#           from Go modules (gobuild.sh) and loaded when no registry is reachable; waits until ready.
#   down    deletes the cluster; with the last one gone, puts back the host sysctls kubelet set.
# Settings (environment): KIND_CLUSTER (loopwright), KIND_S3_PORT (S3 on 127.0.0.1 for a new
# cluster: 9900 when free, else a free port), KIND_KUBECONFIG (.cluster/kind/kubeconfig), IMAGE_TAG,
# LOOPWRIGHT_UPSTREAM_IMAGES (auto|yes|no). The S3 port the cluster has is written beside the
# kubeconfig (<kubeconfig>.s3-port), where the demo and the tests read it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
LOG_TAG=kind
NAME="${KIND_CLUSTER:-loopwright}"
KUBECONFIG_PATH="${KIND_KUBECONFIG:-$REPO_DIR/.cluster/kind/kubeconfig}"
S3_PORT_FILE="$KUBECONFIG_PATH.s3-port"
TAG="${IMAGE_TAG:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO_DIR/pyproject.toml")}"
S3_IMAGE="ghcr.io/versity/versitygw:$VERSITYGW_VERSION"
METRICS_SERVER_IMAGE="registry.k8s.io/metrics-server/metrics-server:$METRICS_SERVER_VERSION"
# Named as manifests/overlays/kind-prometheus names them (upstream's names).
PROMETHEUS_IMAGE="quay.io/prometheus/prometheus:$PROMETHEUS_TAG"
PROMETHEUS_OPERATOR_IMAGE="quay.io/prometheus-operator/prometheus-operator:$PROMETHEUS_OPERATOR_VERSION"
CONFIG_RELOADER_IMAGE="quay.io/prometheus-operator/prometheus-config-reloader:$PROMETHEUS_OPERATOR_VERSION"
SYSCTLS="$CACHE/kind/host-sysctls.json"

kind() { "$CACHE/kind-$KIND_VERSION/bin/kind" "$@"; }

kubectl_bin() {  # the kubectl built with the node image, else the one on PATH
  local built="$CACHE/kubernetes-$K8S_VERSION/bin/kubectl"
  if [[ -x "$built" ]]; then echo "$built"; else command -v kubectl || die "no kubectl"; fi
}
kc() { "$(kubectl_bin)" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

node_running() {
  [[ "$(docker inspect -f '{{.State.Running}}' "$NAME-control-plane" 2>/dev/null)" == true ]]
}

create() {
  local config image_args=()
  mkdir -p "$(dirname "$KUBECONFIG_PATH")" "$CACHE/kind"
  config="$(dirname "$KUBECONFIG_PATH")/$NAME-config.yaml"
  python3 "$IMAGES_DIR/machine.py" kind-config "$NAME" "${KIND_S3_PORT:-$(python3 "$IMAGES_DIR/machine.py" s3-port)}" > "$config"
  upstream_images || image_args=(--image "$("$IMAGES_DIR/kind/node.sh")")
  # The first cluster on this machine: remember the sysctls kubelet is about to change.
  [[ -z "$(kind get clusters 2>/dev/null)" ]] && python3 "$IMAGES_DIR/machine.py" sysctls save "$SYSCTLS"
  step "kind create cluster $NAME" kind create cluster --name "$NAME" --config "$config" "${image_args[@]}" \
    --kubeconfig "$KUBECONFIG_PATH" --wait 180s
}

record_s3_port() {  # the host port the node publishes S3's NodePort on, for the demo and the tests
  docker port "$NAME-control-plane" 30900/tcp | sed -n 's/^127\.0\.0\.1:\([0-9]*\)$/\1/p' | head -1 > "$S3_PORT_FILE"
  [[ -s "$S3_PORT_FILE" ]] || die "node $NAME-control-plane publishes no port for S3 (30900)"
}

up() {
  use_docker
  # kind, and kubectl where it was built, on $LOOPWRIGHT_CACHE/bin for the demo, the tests and you.
  "$IMAGES_DIR/gobuild.sh" --link kind >/dev/null
  if [[ -x "$CACHE/kubernetes-$K8S_VERSION/bin/kubectl" ]]; then ln -sf "$CACHE/kubernetes-$K8S_VERSION/bin/kubectl" "$CACHE/bin/"; fi
  # The node container, not `kind get clusters`: that lists every cluster and fails while another
  # cluster on the same engine is being created or deleted.
  if docker inspect "$NAME-control-plane" >/dev/null 2>&1; then
    if node_running; then
      kind get kubeconfig --name "$NAME" > "$KUBECONFIG_PATH"
      record_s3_port
      log "cluster $NAME is running (kubeconfig $KUBECONFIG_PATH, S3 on 127.0.0.1:$(cat "$S3_PORT_FILE"))"
      return
    fi
    log "cluster $NAME exists but its node is not running (the engine was restarted): making it anew"
    kind delete cluster --name "$NAME" >/dev/null
  fi
  create
  kc wait --for=condition=Ready node --all --timeout=120s >/dev/null
  record_s3_port
  log "cluster $NAME ready: KUBECONFIG=$KUBECONFIG_PATH, S3 on 127.0.0.1:$(cat "$S3_PORT_FILE") after make kind-deploy"
}

go_image() {  # image product version dockerfile: one binary gobuild.sh builds, in an image named like upstream's
  local image="$1" product="$2" version="$3" dockerfile="$4"
  upstream_images && return 0
  docker image inspect "$image" >/dev/null 2>&1 && return 0
  "$IMAGES_DIR/gobuild.sh" "$product@$version" >/dev/null
  local ctx="$CACHE/build/$product"
  rm -rf "$ctx"; mkdir -p "$ctx"
  cp "$CACHE/$product-$version/bin/$product" "$ctx/"
  docker build -q --network none -f "$dockerfile" -t "$image" "$ctx" >/dev/null
  rm -rf "$ctx"
}

load() {
  use_docker
  # This checkout's images by their content tags (images/build.sh): the engine may be shared, and
  # loopwright/*:$TAG there is whichever checkout built last.
  [[ -f "$REPO_DIR/.cluster/images.env" ]] || die "no .cluster/images.env: make images first"
  local OPERATOR_IMAGE ML_IMAGE
  source "$REPO_DIR/.cluster/images.env"
  local images=("$OPERATOR_IMAGE" "$ML_IMAGE") node="$NAME-control-plane"
  step "S3 image $S3_IMAGE" go_image "$S3_IMAGE" versitygw "$VERSITYGW_VERSION" "$IMAGES_DIR/kind/s3.Dockerfile"
  step "metrics-server image $METRICS_SERVER_IMAGE" go_image "$METRICS_SERVER_IMAGE" metrics-server \
    "$METRICS_SERVER_VERSION" "$IMAGES_DIR/kind/metrics-server.Dockerfile"
  upstream_images || images+=("$S3_IMAGE" "$METRICS_SERVER_IMAGE")
  # kind skips an image the node already has under the same ID.
  step "kind load ${images[*]}" kind load docker-image --name "$NAME" "${images[@]}"
  # In the node, the names the manifests use point at them; earlier builds are dropped.
  docker exec "$node" ctr -n k8s.io images tag --force "docker.io/$OPERATOR_IMAGE" "docker.io/loopwright/operator:$TAG" >/dev/null
  docker exec "$node" ctr -n k8s.io images tag --force "docker.io/$ML_IMAGE" "docker.io/loopwright/ml:$TAG" >/dev/null
  docker exec "$node" sh -c "ctr -n k8s.io images ls -q | grep -E '^docker.io/(library/import-|loopwright/[a-z]+:$TAG-)' \
    | grep -vxF -e 'docker.io/$OPERATOR_IMAGE' -e 'docker.io/$ML_IMAGE' | xargs -r ctr -n k8s.io images rm >/dev/null"
}

deploy() {
  # The bucket Job's template cannot change in place; it is idempotent, so it simply runs again.
  kc -n loopwright-system delete job s3-bucket --ignore-not-found >/dev/null
  step "kubectl apply -k manifests/overlays/kind" \
    kc apply --server-side --force-conflicts -k "$REPO_DIR/manifests/overlays/kind" >/dev/null
  # A rebuilt image keeps its tag: the operator is restarted so that it runs what was just loaded.
  kc -n loopwright-system rollout restart deployment/loopwright-operator >/dev/null
  step "S3 ready" kc -n loopwright-system rollout status deployment/s3 --timeout=180s >/dev/null
  step "bucket created" kc -n loopwright-system wait --for=condition=complete job/s3-bucket --timeout=180s >/dev/null
  step "operator ready" kc -n loopwright-system rollout status deployment/loopwright-operator --timeout=180s >/dev/null
  step "metrics-server ready" kc -n kube-system rollout status deployment/metrics-server --timeout=180s >/dev/null
}

prometheus_ready() {  # the operator makes the StatefulSet a moment after it sees the Prometheus object
  local deadline=$((SECONDS + 180))
  until kc -n monitoring get statefulset prometheus-loopwright >/dev/null 2>&1; do
    (( SECONDS < deadline )) || die "no StatefulSet for Prometheus after 180 s: kubectl -n monitoring logs deploy/prometheus-operator"
    sleep 2
  done
  kc -n monitoring rollout status statefulset/prometheus-loopwright --timeout=180s >/dev/null
}

monitoring() {
  use_docker
  # Builds and loads on a shared engine hold the images lock, as the e2e tests' image builds do.
  local lock
  exec {lock}>/tmp/loopwright-images.lock
  flock "$lock"
  step "Prometheus image $PROMETHEUS_IMAGE" go_image "$PROMETHEUS_IMAGE" prometheus "$PROMETHEUS_VERSION" \
    "$IMAGES_DIR/kind/prometheus.Dockerfile"
  step "Prometheus Operator image $PROMETHEUS_OPERATOR_IMAGE" go_image "$PROMETHEUS_OPERATOR_IMAGE" \
    prometheus-operator "$PROMETHEUS_OPERATOR_VERSION" "$IMAGES_DIR/kind/prometheus-operator.Dockerfile"
  step "config reloader image $CONFIG_RELOADER_IMAGE" go_image "$CONFIG_RELOADER_IMAGE" \
    prometheus-config-reloader "$PROMETHEUS_OPERATOR_VERSION" "$IMAGES_DIR/kind/prometheus-config-reloader.Dockerfile"
  upstream_images || step "kind load the Prometheus images" kind load docker-image --name "$NAME" \
    "$PROMETHEUS_IMAGE" "$PROMETHEUS_OPERATOR_IMAGE" "$CONFIG_RELOADER_IMAGE"
  flock --unlock "$lock"
  # The CRDs as the operator's release ships them, from its module (downloaded once, then cached).
  local module crds
  module="$(cd / && go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")"
  crds="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["Dir"])' "$module")/example/prometheus-operator-crd"
  step "monitoring.coreos.com CRDs ($crds)" kc apply --server-side --force-conflicts -f "$crds" >/dev/null
  kc wait --for=condition=Established --timeout=60s -f "$crds" >/dev/null
  step "kubectl apply -k manifests/overlays/kind-prometheus" \
    kc apply --server-side --force-conflicts -k "$REPO_DIR/manifests/overlays/kind-prometheus" >/dev/null
  step "Prometheus Operator ready" kc -n monitoring rollout status deployment/prometheus-operator --timeout=180s >/dev/null
  step "Prometheus ready" prometheus_ready
}

down() {
  use_docker
  "$IMAGES_DIR/gobuild.sh" kind >/dev/null
  # The node container, not `kind get clusters`: that lists every cluster and fails while another
  # cluster on the same engine is being created or deleted.
  if docker inspect "$NAME-control-plane" >/dev/null 2>&1; then
    step "kind delete cluster $NAME" kind delete cluster --name "$NAME"
  fi
  rm -f "$KUBECONFIG_PATH" "$S3_PORT_FILE"
  if [[ -z "$(kind get clusters 2>/dev/null)" ]]; then
    python3 "$IMAGES_DIR/machine.py" sysctls restore "$SYSCTLS" | while read -r line; do log "$line"; done
  fi
}

case "${1:-}" in
  up|load|deploy|monitoring|down) "$1" ;;
  *) echo "usage: $0 up|load|deploy|monitoring|down" >&2; exit 2 ;;
esac
