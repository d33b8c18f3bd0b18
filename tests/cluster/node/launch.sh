#!/bin/sh
# Starts one container process. The node agent runs it as
#   ip netns exec <netns> unshare --mount --uts --propagation private sh launch.sh \
#       <mounts-file> <hostname> <workdir> [setpriv options --] -- <argv...>
# so everything below happens in the pod's network namespace and in a mount and UTS namespace of
# the container's own: bind mounts (volumes, resolv.conf, hosts) are invisible to the host.
# Each line of <mounts-file> is "<source>\t<target>\t<rw|ro>". Targets that do not exist yet are
# created as empty directories or files, since a bind mount needs something to cover.
set -eu
mounts=$1 name=$2 workdir=$3
shift 3
container_path=$PATH
PATH=/usr/sbin:/usr/bin:/sbin:/bin

tab=$(printf '\t')
while IFS="$tab" read -r source target mode; do
  if [ ! -e "$target" ]; then
    if [ -d "$source" ]; then
      mkdir -p "$target"
    else
      mkdir -p "$(dirname "$target")"
      : > "$target"
    fi
  fi
  mount --bind "$source" "$target"
  if [ "$mode" = ro ]; then
    mount -o remount,bind,ro "$target"
  fi
done < "$mounts"

hostname "$name"
mkdir -p "$workdir"
cd "$workdir"

privileges=
while [ "$1" != -- ]; do
  privileges="$privileges $1"
  shift
done
shift
PATH=$container_path
if [ -n "$privileges" ]; then
  # shellcheck disable=SC2086  # the options are single words the agent produced
  exec /usr/bin/setpriv $privileges -- "$@"
fi
exec "$@"
