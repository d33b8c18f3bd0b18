#!/bin/bash
# Starts one container process. The node agent runs it as
#   ip netns exec <netns> unshare --mount --uts --propagation private bash launch.sh \
#       <mounts-file> <hostname> <workdir> [setpriv options] -- <argv...>
# so everything below happens in the pod's network namespace and in a mount and UTS namespace of
# the container's own: bind mounts (volumes, resolv.conf, hosts) are invisible to the host.
# Each line of <mounts-file> is "<source>\t<target>\t<rw|ro|tmpfs>" (a tmpfs line ignores its source).
#
# The container's root is the host's root, so a mount can hide the sources of later ones (a volume
# at /work covers /work/main/.cluster/...). Every source is therefore opened first and mounted from
# its descriptor (/proc/self/fd/N), which keeps pointing at the right file whatever covers its path.
# Targets that do not exist yet are created, since a bind mount needs something to cover.
set -euo pipefail
mounts=$1 name=$2 workdir=$3
shift 3
container_path=$PATH
PATH=/usr/sbin:/usr/bin:/sbin:/bin

fds=() targets=() modes=()
while IFS=$'\t' read -r source target mode; do
  fd=-
  [[ $mode == tmpfs ]] || exec {fd}<"$source"
  fds+=("$fd") targets+=("$target") modes+=("$mode")
done < "$mounts"

for i in "${!fds[@]}"; do
  source=/proc/self/fd/${fds[$i]} target=${targets[$i]}
  if [[ ${modes[$i]} == tmpfs ]]; then
    mount -t tmpfs -o mode=0755 tmpfs "$target"
    continue
  fi
  if [[ ! -e $target ]]; then
    if [[ -d $source ]]; then
      mkdir -p "$target"
    else
      mkdir -p "$(dirname "$target")"
      : > "$target"
    fi
  fi
  mount --no-canonicalize --bind "$source" "$target"
  if [[ ${modes[$i]} == ro ]]; then
    mount -o remount,bind,ro "$target"
  fi
  fd=${fds[$i]}
  exec {fd}<&-
done

hostname "$name"
mkdir -p "$workdir"
cd "$workdir"

privileges=()
while [[ $1 != -- ]]; do
  privileges+=("$1")
  shift
done
shift
PATH=$container_path
if (( ${#privileges[@]} )); then
  exec /usr/bin/setpriv "${privileges[@]}" -- "$@"
fi
exec "$@"
