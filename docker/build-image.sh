#!/usr/bin/env bash
# Builds a local Redis image from Debian's packages, for machines that cannot pull the official
# `redis` image (no registry): a minimal Debian root file system with redis-server and
# redis-sentinel, made with debootstrap and imported with `docker import`. Does nothing when the
# image exists already. Standard output carries the image's name alone (callers capture it as
# `REDIS_IMAGE="$(docker/build-image.sh)"`); everything printed for people goes to standard error.
#
#   docker/build-image.sh                       # builds r2d2-redis-sentinel/redis:bookworm
#   REDIS_IMAGE=my/redis:7 docker/build-image.sh
set -euo pipefail
# Standard output is kept for the name (fd 3); everything else, apt's and debootstrap's output
# included, goes to standard error.
exec 3>&1 1>&2

image="${REDIS_IMAGE:-r2d2-redis-sentinel/redis:bookworm}"
if docker image inspect "$image" >/dev/null 2>&1; then
    echo "$image" >&3
    exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! command -v debootstrap >/dev/null; then
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends debootstrap
fi
# The machine's own Debian mirror, as its apt sources name it.
mirror="$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
mirror="${mirror:-http://deb.debian.org/debian}"

echo "building $image from Debian's packages (once per machine)"
started=$SECONDS
root="$(mktemp -d)"
trap '$sudo rm -rf "$root"' EXIT
$sudo debootstrap --variant=minbase --include=redis-server,redis-sentinel bookworm "$root" "$mirror"
$sudo tar -C "$root" -c . | docker import --change 'CMD ["redis-server"]' - "$image"
echo "built $image in $((SECONDS - started)) s"
echo "$image" >&3
