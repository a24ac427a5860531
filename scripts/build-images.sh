#!/bin/sh
# Builds the images of the compose cluster: jobmaster:dev (Dockerfile) and jobmaster-etcd:dev
# (scripts/docker/etcd.Dockerfile), on a base made from Debian packages when no registry is
# reachable (scripts/base-image.sh).
#
#   scripts/build-images.sh [--debug] [--no-cargo]
#
#   --debug     copy the debug binaries (target/debug) instead of a release build
#   --no-cargo  do not run cargo: use the binaries already built (CI reuses the ones its tests
#               built)
#
# Environment: BASE (default jobmaster-base:bookworm, made by scripts/base-image.sh if missing;
# BASE=debian:bookworm-slim with a registry), JOBMASTER_IMAGE (jobmaster:dev),
# JOBMASTER_ETCD_IMAGE (jobmaster-etcd:dev), CARGO_TARGET_DIR (where cargo builds, default
# ./target). The binaries are copied stripped into target/docker-bin (the build context's
# only part of target/).
set -eu
cd "$(dirname "$0")/.."

profile=release
cargo=1
for arg in "$@"; do
  case "$arg" in
  --debug) profile=debug ;;
  --no-cargo) cargo=0 ;;
  *)
    echo "usage: scripts/build-images.sh [--debug] [--no-cargo]" >&2
    exit 2
    ;;
  esac
done
base=${BASE:-jobmaster-base:bookworm}
image=${JOBMASTER_IMAGE:-jobmaster:dev}
etcd_image=${JOBMASTER_ETCD_IMAGE:-jobmaster-etcd:dev}
target=${CARGO_TARGET_DIR:-target}

if [ "$base" = jobmaster-base:bookworm ]; then
  scripts/base-image.sh "$base"
fi

if [ "$cargo" = 1 ]; then
  if [ "$profile" = release ]; then
    cargo build --locked --release --bins
  else
    cargo build --locked --bins
  fi
fi

stage=target/docker-bin
mkdir -p "$stage"
for bin in jobmaster taskexecutor jmctl; do
  if [ ! -x "$target/$profile/$bin" ]; then
    echo "build-images: $target/$profile/$bin is missing (run without --no-cargo)" >&2
    exit 1
  fi
  # Debug info stays on the host: the images are 10x smaller without it.
  strip -o "$stage/$bin.new" "$target/$profile/$bin"
  mv "$stage/$bin.new" "$stage/$bin"
done

echo "build-images: $image ($profile binaries, base $base)"
docker build -q -t "$image" --build-arg BASE="$base" --build-arg BIN_DIR="$stage" . >/dev/null
echo "build-images: $etcd_image"
docker build -q -t "$etcd_image" --build-arg BASE="$base" \
  -f scripts/docker/etcd.Dockerfile scripts/docker >/dev/null
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E "^($image|$etcd_image) "
