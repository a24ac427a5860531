#!/bin/sh
# Makes the base image of the jobmaster and etcd images from Debian packages, for a Docker
# engine that cannot pull from a registry: debootstrap (minbase) into a folder, then
# `docker import`. The result is equivalent to debian:bookworm-slim; with a registry, skip this
# and build the Dockerfiles with their default BASE.
#
#   scripts/base-image.sh [--force] [TAG]        (default tag jobmaster-base:bookworm)
#
# The mirror is $DEBIAN_MIRROR, else the first Debian mirror apt uses on this machine, else
# http://deb.debian.org/debian. Needs root and debootstrap (apt-get install debootstrap).
set -eu

force=0
if [ "${1:-}" = "--force" ]; then
  force=1
  shift
fi
tag=${1:-jobmaster-base:bookworm}
suite=${DEBIAN_SUITE:-bookworm}

if [ "$force" = 0 ] && docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base-image: $tag exists (--force to make it again)"
  exit 0
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  echo "base-image: debootstrap is missing: apt-get install debootstrap" >&2
  exit 1
fi

mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  # deb822 sources (URIs: ...) or one-line sources (deb URL suite ...), Debian's main archive.
  mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
    awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }')
fi
if [ -z "$mirror" ]; then
  mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }')
fi
mirror=${mirror:-http://deb.debian.org/debian}

root=$(mktemp -d "${TMPDIR:-/tmp}/jobmaster-base.XXXXXX")
trap 'rm -rf "$root"' EXIT
echo "base-image: debootstrap --variant=minbase $suite from $mirror"
debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$root.log" 2>&1 || {
  tail -n 30 "$root.log" >&2
  rm -f "$root.log"
  exit 1
}
rm -f "$root.log"
# What debian:*-slim leaves out: apt's caches and lists, docs and man pages.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
  "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/*
echo "deb $mirror $suite main" >"$root/etc/apt/sources.list"
tar -C "$root" --numeric-owner -c . |
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    - "$tag" >/dev/null
echo "base-image: $tag"
