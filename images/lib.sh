# Shared by the scripts under images/: pinned versions, the cache, and logged, timed steps.
# shellcheck shell=bash
IMAGES_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$IMAGES_DIR")"
# shellcheck source=versions.env
source "$IMAGES_DIR/versions.env"
CACHE="${LOOPWRIGHT_CACHE:-$HOME/.cache/loopwright}"
export PATH="$CACHE/bin:$PATH:/usr/local/go/bin:$HOME/go/bin"

log() { printf '[%s %s] %s\n' "$(date +%T)" "${LOG_TAG:-images}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# step NAME COMMAND...: runs one step and logs its wall time (the figures in the README come from these).
step() {
  local name="$1" started=$SECONDS; shift
  log "$name ..."
  "$@"
  log "$name: done in $((SECONDS - started)) s"
}

# Is a container registry reachable? LOOPWRIGHT_UPSTREAM_IMAGES=yes|no decides instead of the probe
# (a short HTTPS request to Docker Hub's registry API: 401 means it answers). The answer is exported,
# so the scripts a target runs after this one do not probe again.
upstream_images() {
  if [[ "${LOOPWRIGHT_UPSTREAM_IMAGES:-auto}" == auto ]]; then
    local code
    code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' https://registry-1.docker.io/v2/ || true)
    if [[ "$code" == 401 || "$code" == 200 ]]; then LOOPWRIGHT_UPSTREAM_IMAGES=yes; else LOOPWRIGHT_UPSTREAM_IMAGES=no; fi
    log "container registry reachable: $LOOPWRIGHT_UPSTREAM_IMAGES (LOOPWRIGHT_UPSTREAM_IMAGES=yes|no overrides)"
    export LOOPWRIGHT_UPSTREAM_IMAGES
  fi
  [[ "$LOOPWRIGHT_UPSTREAM_IMAGES" == yes ]]
}

# The engine: whatever answers, else the one images/docker.sh starts.
use_docker() {
  DOCKER_HOST="$("$IMAGES_DIR/docker.sh")"
  export DOCKER_HOST DOCKER_BUILDKIT=0
}
