#!/usr/bin/env bash
# `make images`: builds loopwright/operator and loopwright/ml (images/Dockerfile) from this checkout.
#  1. the base: the official Python slim image where a registry is reachable, else a Debian one
#     made here (images/debian.sh + images/python-base.Dockerfile), kept in the engine;
#  2. the wheelhouse of images/requirements.lock, downloaded on the host with hashes checked, kept in
#     $LOOPWRIGHT_CACHE/wheels/<lock digest>; Loopwright's own wheel built from the checkout;
#  3. both images built with --network none from a context of those wheels.
# Several checkouts may share one engine: each image is also tagged <version>-<content digest>, and
# .cluster/images.env of this checkout names those tags (what `make kind-load` loads).
# Usage: images/build.sh   (IMAGE_TAG, default: the version in pyproject.toml)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG=images
PYTHON="${PYTHON:-python3}"
TAG="${IMAGE_TAG:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO_DIR/pyproject.toml")}"
UPSTREAM_PYTHON=python:3.11.14-slim-bookworm
LOCAL_PYTHON="loopwright-build/python:3.11-$DEBIAN_SUITE"
# The wheels' target: the images' CPython 3.11 on manylinux x86_64, whatever Python runs this.
TARGET=(--only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 --abi abi3 --abi none
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
        --platform any)

python_base() {
  if upstream_images; then
    docker image inspect "$UPSTREAM_PYTHON" >/dev/null 2>&1 || step "pull $UPSTREAM_PYTHON" docker pull -q "$UPSTREAM_PYTHON" >&2
    echo "$UPSTREAM_PYTHON"
    return
  fi
  if ! docker image inspect "$LOCAL_PYTHON" >/dev/null 2>&1; then
    local debian
    debian="$("$IMAGES_DIR/debian.sh")"
    step "Python base $LOCAL_PYTHON (Debian's python3)" docker build -q --network host \
      --build-arg "DEBIAN_IMAGE=$debian" -t "$LOCAL_PYTHON" -f "$IMAGES_DIR/python-base.Dockerfile" "$IMAGES_DIR" >&2
  fi
  echo "$LOCAL_PYTHON"
}

wheelhouse() {  # prints the directory
  local lock="$IMAGES_DIR/requirements.lock" digest dir
  digest="$(sha256sum "$lock" | cut -c1-16)"
  dir="$CACHE/wheels/$digest"
  if [[ ! -f "$dir/.complete" ]]; then
    rm -rf "$dir"; mkdir -p "$dir"
    # PIP_FIND_LINKS of the environment is dropped: only the index, and only the locked files.
    step "wheelhouse $dir" env -u PIP_FIND_LINKS "$PYTHON" -m pip download --quiet --no-deps --require-hashes \
      "${TARGET[@]}" --dest "$dir" -r "$lock" >&2
    touch "$dir/.complete"
  fi
  echo "$dir"
}

context() {  # base-image wheels-dir -> prints the context directory (the caller removes it)
  local ctx
  mkdir -p "$CACHE/build"
  ctx="$(mktemp -d "$CACHE/build/context.XXXXXX")"
  mkdir -p "$ctx/project"
  cp -al "$2" "$ctx/wheels"  # hard links: the wheelhouse is not copied
  rm -f "$ctx/wheels/.complete"
  # A fixed zip timestamp: the same source gives the same wheel, so the image layer is reused.
  env -u PIP_FIND_LINKS SOURCE_DATE_EPOCH=315532800 "$PYTHON" -m pip wheel --quiet --no-deps \
    --wheel-dir "$ctx/project" "$REPO_DIR" >&2
  "$PYTHON" "$IMAGES_DIR/wheels.py" requirements trainer,predictor > "$ctx/requirements-ml.txt"
  "$PYTHON" "$IMAGES_DIR/wheels.py" requirements operator > "$ctx/requirements-operator.txt"
  cp "$IMAGES_DIR/Dockerfile" "$ctx/"
  echo "$ctx"
}

main() {
  use_docker
  local base wheels ctx revision target digest
  base="$(python_base)"
  wheels="$(wheelhouse)"
  ctx="$(context "$base" "$wheels")"
  # The digest of what goes into the images: the base, the wheelhouse (by its lock), the rest.
  digest="$( { docker image inspect -f '{{.Id}}' "$base"; basename "$wheels"
               (cd "$ctx" && find . -path ./wheels -prune -o -type f -print | sort | xargs sha256sum); } \
             | sha256sum | cut -c1-12)"
  # The last commit that changed what the images hold (a commit of tests only rebuilds nothing).
  revision="$(git -C "$REPO_DIR" log -1 --format=%h -- operator pyproject.toml images/Dockerfile \
              images/requirements.lock 2>/dev/null || echo unknown)"
  git -C "$REPO_DIR" diff --quiet HEAD -- operator pyproject.toml 2>/dev/null || revision+="-dirty"
  # ml first: the classic builder runs every stage before the target, so operator reuses its cache.
  for target in ml operator; do
    step "loopwright/$target:$TAG-$digest (base $base)" docker build -q --network none --target "$target" \
      --build-arg "PYTHON_IMAGE=$base" --label "org.opencontainers.image.version=$TAG" \
      --label "org.opencontainers.image.revision=$revision" \
      -t "loopwright/$target:$TAG-$digest" -t "loopwright/$target:$TAG" "$ctx" >/dev/null
  done
  rm -rf "$ctx"
  mkdir -p "$REPO_DIR/.cluster"
  printf 'OPERATOR_IMAGE=loopwright/operator:%s\nML_IMAGE=loopwright/ml:%s\n' "$TAG-$digest" "$TAG-$digest" \
    > "$REPO_DIR/.cluster/images.env"
  docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E "^loopwright/(ml|operator):$TAG-$digest " >&2
}
main "$@"
