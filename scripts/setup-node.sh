#!/usr/bin/env bash
# Make `node` >= 20 available; does nothing when it already is.
#
# Debian 12 packages Node.js 18 and portshaper needs 20 (package.json
# "engines"), so a fresh Debian 12 machine (the Vagrant VM) needs Node from
# elsewhere. This installs the official nodejs.org build, checked against the
# release's SHASUMS256.txt, under $NODE_PREFIX/lib/nodejs with links in
# $NODE_PREFIX/bin. Kept apart from setup.sh, which installs Debian packages
# only, so CI and offline machines never download anything but packages.
# The tarball rather than NodeSource's apt repository: no third-party apt
# source and key left on the machine, and one pinned version for everyone.
set -euo pipefail

NODE_VERSION=${NODE_VERSION:-20.20.2}
NODE_DIST_URL=${NODE_DIST_URL:-https://nodejs.org/dist}
NODE_PREFIX=${NODE_PREFIX:-/usr/local}

node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if command -v node >/dev/null && (($(node_major) >= 20)); then
  echo "setup-node: node $(node --version) is new enough"
  exit 0
fi
case $(uname -m) in
  x86_64) arch=x64 ;;
  aarch64) arch=arm64 ;;
  *) echo "setup-node: no Node.js build for $(uname -m); install Node.js >= 20 yourself" >&2; exit 1 ;;
esac
if [[ ! -w $NODE_PREFIX ]]; then
  echo "setup-node: cannot write to $NODE_PREFIX; run as root (sudo scripts/setup-node.sh)" >&2
  exit 1
fi
for tool in curl xz; do
  if ! command -v "$tool" >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl ca-certificates xz-utils >/dev/null
    break
  fi
done

name=node-v$NODE_VERSION-linux-$arch
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "setup-node: installing Node.js $NODE_VERSION from $NODE_DIST_URL"
curl -fsSL -o "$work/$name.tar.xz" "$NODE_DIST_URL/v$NODE_VERSION/$name.tar.xz"
curl -fsSL -o "$work/SHASUMS256.txt" "$NODE_DIST_URL/v$NODE_VERSION/SHASUMS256.txt"
(cd "$work" && grep " $name.tar.xz\$" SHASUMS256.txt | sha256sum --check --quiet)

mkdir -p "$NODE_PREFIX/lib/nodejs" "$NODE_PREFIX/bin"
rm -rf "${NODE_PREFIX:?}/lib/nodejs/$name"
tar -xJf "$work/$name.tar.xz" -C "$NODE_PREFIX/lib/nodejs" --no-same-owner
for tool in node npm npx; do
  ln -sfn "$NODE_PREFIX/lib/nodejs/$name/bin/$tool" "$NODE_PREFIX/bin/$tool"
done
echo "setup-node: $("$NODE_PREFIX/bin/node" --version) at $NODE_PREFIX/bin/node"
