#!/usr/bin/env bash
# Makes the Debian image that the offline base images start from, without a registry: a
# `debootstrap --variant=minbase` rootfs from the Debian mirror this machine's apt already uses,
# imported into the engine as loopwright-build/debian:$DEBIAN_SUITE (kept; built once per engine).
# Usage: images/debian.sh   (prints the image name)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG=debian
IMAGE="loopwright-build/debian:$DEBIAN_SUITE"

# The mirror of the machine's own Debian sources (deb822 or one-line format); DEBIAN_MIRROR overrides.
mirror() {
  if [[ -n "${DEBIAN_MIRROR:-}" ]]; then echo "$DEBIAN_MIRROR"; return; fi
  local found
  found=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | awk '/^URIs:/ {uri=$2} /^Suites:/ && uri ~ /\/debian\/?$/ {print uri; exit}')
  [[ -n "$found" ]] || found=$(grep -hsE '^deb\s+\S+/debian/?\s' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
    | awk '{print $2; exit}')
  [[ -n "$found" ]] || die "no Debian mirror in /etc/apt (set DEBIAN_MIRROR)"
  echo "${found%/}"
}

build() {
  command -v debootstrap >/dev/null || {
    [[ $EUID -eq 0 ]] || die "debootstrap is missing (apt-get install debootstrap, as root)"
    log "apt-get install debootstrap"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  local url root
  url="$(mirror)"
  root="$(mktemp -d "${TMPDIR:-/tmp}/loopwright-rootfs.XXXXXX")"
  log "debootstrap --variant=minbase $DEBIAN_SUITE from $url"
  debootstrap --variant=minbase "$DEBIAN_SUITE" "$root" "$url" > "$root.log" 2>&1 \
    || { tail -20 "$root.log" >&2; die "debootstrap failed"; }
  rm -f "$root.log"
  printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s-security %s-security main\n' \
    "$url" "$DEBIAN_SUITE" "$url" "$DEBIAN_SUITE" "$url" "$DEBIAN_SUITE" > "$root/etc/apt/sources.list"
  # The images that start from it install with apt and then drop the lists again.
  printf 'Acquire::Languages "none";\nAPT::Install-Recommends "false";\n' > "$root/etc/apt/apt.conf.d/90loopwright"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
  tar -C "$root" -c . | docker import -c 'CMD ["bash"]' - "$IMAGE" >/dev/null
  rm -rf "$root"
}

docker image inspect "$IMAGE" >/dev/null 2>&1 || step "Debian $DEBIAN_SUITE rootfs" build
echo "$IMAGE"
