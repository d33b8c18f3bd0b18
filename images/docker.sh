#!/usr/bin/env bash
# Makes sure a Docker engine answers, and prints the DOCKER_HOST to use.
#  - an engine that already answers (DOCKER_HOST, or the default socket) is used as it is;
#  - otherwise Debian's docker.io is installed with apt if dockerd is missing (root only), and
#    dockerd is started in the background without systemd, its data under $LOOPWRIGHT_CACHE/docker
#    (images survive; the engine itself does not outlive the session, so every target calls this).
# dockerd runs with --iptables=false (with iptables it sets the FORWARD policy to DROP, cutting other
# bridges off) and without the default bridge: kind makes its own network. On a machine whose root
# lacks CAP_SYS_RESOURCE the default runtime drops it (runc-drop-sysresource).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG=docker
STATE="$CACHE/docker"
SOCKET="unix:///var/run/docker.sock"

answers() { timeout 20 docker ${1:+-H "$1"} version --format '{{.Server.Version}}' >/dev/null 2>&1; }

install_packages() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v jq >/dev/null || missing+=(jq)
  (( ${#missing[@]} )) || return 0
  [[ $EUID -eq 0 ]] || die "no Docker engine answers and ${missing[*]} must be installed: run as root, or start Docker yourself"
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

start_dockerd() {
  mkdir -p "$STATE"
  local runtime=()
  eval "$(python3 "$IMAGES_DIR/machine.py" fixes)"
  if (( FIX_RUNC_WRAPPER )); then
    log "root lacks CAP_SYS_RESOURCE: default runtime = runc without it ($STATE/runc-drop-sysresource)"
    sed "s|^REAL_RUNC=.*|REAL_RUNC=\"\${REAL_RUNC:-$(command -v runc)}\"|" "$IMAGES_DIR/runc-drop-sysresource" \
      > "$STATE/runc-drop-sysresource"
    chmod 0755 "$STATE/runc-drop-sysresource"
    runtime=(--add-runtime "loopwright-runc=$STATE/runc-drop-sysresource" --default-runtime loopwright-runc)
  fi
  log "starting dockerd (data $STATE/root, log $STATE/dockerd.log)"
  # containerd is started by dockerd itself (no systemd here); setsid: it outlives this script.
  setsid nohup dockerd --iptables=false --ip-masq=false --bridge=none \
    --data-root "$STATE/root" --pidfile "$STATE/dockerd.pid" -H "$SOCKET" "${runtime[@]}" \
    >> "$STATE/dockerd.log" 2>&1 < /dev/null &
  local i
  for i in $(seq 120); do answers "$SOCKET" && return 0; sleep 0.5; done
  tail -20 "$STATE/dockerd.log" >&2
  die "dockerd did not answer within 60 s"
}

main() {
  if answers "${DOCKER_HOST:-}"; then
    echo "${DOCKER_HOST:-$SOCKET}"
    return
  fi
  [[ -n "${DOCKER_HOST:-}" && "$DOCKER_HOST" != "$SOCKET" ]] && die "DOCKER_HOST=$DOCKER_HOST does not answer"
  install_packages
  # A dockerd of an ended session leaves its pid file; a stale one would stop the new dockerd.
  if [[ -f "$STATE/dockerd.pid" ]] && ! kill -0 "$(cat "$STATE/dockerd.pid")" 2>/dev/null; then
    rm -f "$STATE/dockerd.pid" /var/run/docker.pid
  fi
  step "start dockerd" start_dockerd
  echo "$SOCKET"
}
main "$@"
