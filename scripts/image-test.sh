#!/usr/bin/env bash
# make image-test: build the container image for real and run it on the real
# kernel, with nothing pulled from an image registry (as root, ~5 min cold,
# ~1-2 min with the cached base):
#  1. a Debian 12 base root filesystem from the Debian archive (mmdebstrap,
#     cached in $CACHE), imported with `podman import`;
#  2. `podman build` of the Dockerfile on it (timed; image size reported);
#  3. scripts/image-test.ts: the container in a test network namespace with
#     only CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN holds a port to its rate;
#     killed, the limit stays; started again, it adopts the pins.
# Podman as it works on this kind of machine: the runc runtime (crun refuses
# a hybrid cgroup layout), cgroupfs, a file events logger, in a configuration
# and storage of the test's own (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF) so
# nothing of a system-wide podman setup is used or changed.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${CACHE:-/var/cache/portshaper-image-test}
IMAGE=localhost/portshaper:image-test
BASE_IMAGE=localhost/portshaper-base:bookworm

step() { printf '\n== image-test: %s\n' "$*"; }

if [[ $(id -u) -ne 0 ]]; then echo "image-test: run as root (podman, network namespaces, bpffs)" >&2; exit 2; fi
missing=()
for p in podman runc mmdebstrap; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  step "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$CACHE"
export CONTAINERS_CONF=$CACHE/containers.conf CONTAINERS_STORAGE_CONF=$CACHE/storage.conf
# Rlimits: podman asks for more open files than this sandbox's hard limit and
# cannot raise it (no CAP_SYS_RESOURCE), and lowers its own process limit to
# 32768; containers get exactly what is there.
nofile=$(ulimit -Hn)
nproc=$(ulimit -Hu); [[ $nproc == unlimited || $nproc -gt 32768 ]] && nproc=32768
cat > "$CONTAINERS_CONF" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$CACHE/events.log"
CONF
cat > "$CONTAINERS_STORAGE_CONF" <<CONF
[storage]
driver = "overlay"
graphroot = "$CACHE/storage"
runroot = "/run/portshaper-image-test"
CONF

# 1. The base: Debian 12 minbase from the archive this machine uses, trimmed
# like the slim images (no docs, man pages or locales; no apt lists).
base_tar=$CACHE/base-bookworm.tar
if [[ ! -s $base_tar || ${REBUILD_BASE:-} == 1 ]]; then
  step "mmdebstrap bookworm base (cached in $base_tar; REBUILD_BASE=1 rebuilds it)"
  # This machine's Debian sources (deb822 files, else sources.list): its mirror, with its keys.
  sources=$(mktemp)
  if compgen -G '/etc/apt/sources.list.d/*.sources' >/dev/null; then cat /etc/apt/sources.list.d/*.sources > "$sources"
  else cat /etc/apt/sources.list > "$sources"; fi
  t0=$(date +%s)
  mmdebstrap --quiet --variant=minbase --mode=root --format=tar \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    bookworm "$base_tar.tmp" "$sources"
  mv "$base_tar.tmp" "$base_tar"
  rm -f "$sources"
  echo "base built in $(( $(date +%s) - t0 )) s: $(du -h "$base_tar" | cut -f1)"
fi
step "podman import $BASE_IMAGE"
podman import --quiet "$base_tar" "$BASE_IMAGE" >/dev/null
podman image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$BASE_IMAGE"

# 2. The image. --network host: the build stage's apt-get and npm reach the
# Debian archive and the npm registry as this machine does.
step "podman build $IMAGE (BASE=$BASE_IMAGE)"
t0=$(date +%s)
# This machine's npm registry and, when npm trusts a CA of its own, that CA (a build secret).
cafile=$(npm config get cafile)
secret=()
[[ -n $cafile && $cafile != null && -f $cafile ]] && secret=(--secret "id=npm-ca,src=$cafile")
podman build --network host --build-arg BASE="$BASE_IMAGE" "${secret[@]}" \
  --build-arg NPM_CONFIG_REGISTRY="$(npm config get registry)" \
  -t "$IMAGE" -f Dockerfile . > "$CACHE/build.log" 2>&1 || { tail -40 "$CACHE/build.log"; echo "image-test: build failed (log: $CACHE/build.log)" >&2; exit 1; }
grep -E '^\[[0-9]/[0-9]\] STEP|^COMMIT' "$CACHE/build.log" | cut -c1-120
build_s=$(( $(date +%s) - t0 ))
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
echo "image built in ${build_s} s; size $(( size / 1024 / 1024 )) MiB"
podman run --rm --network none "$IMAGE" --version

# 3. Run it on the kernel.
step "run the container in a test namespace"
IMAGE=$IMAGE IMAGE_BUILD_SECONDS=$build_s IMAGE_SIZE_BYTES=$size npx vite-node scripts/image-test.ts
