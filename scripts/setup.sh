#!/usr/bin/env bash
# Install what portshaper needs on a Debian/Ubuntu machine; quick when all is present.
# Used by `make setup`, `.ci/run` and the Vagrant provisioner (one script, not three).
set -euo pipefail
cd "$(dirname "$0")/.."

# Build: clang/llvm + libbpf headers. Runtime: libbpf1, iproute2.
# Tests and benchmarks: bpftool, iperf3, nftables, ethtool, iputils-ping, prometheus (promtool),
# openssl and curl (the API's TLS test makes its own CA and calls the API with curl --cacert).
PACKAGES=(make clang llvm libbpf-dev libbpf1 bpftool iproute2 iperf3 nftables ethtool iputils-ping util-linux prometheus tmux openssl curl)
# CI also checks the packaging (.ci/run): vagrant validate (vagrant-libvirt lets
# it check the libvirt provider's settings; no box or libvirtd needed) and
# systemd-analyze verify (package systemd, absent from some containers).
if [[ ${CI:-} == true ]]; then PACKAGES+=(vagrant vagrant-libvirt systemd); fi
# kubectl, for `kubectl kustomize deploy/kubernetes` in the manifest tests:
# Debian's kubernetes-client, unless a kubectl is already installed (another
# package may own /usr/bin/kubectl).
command -v kubectl >/dev/null || PACKAGES+=(kubernetes-client)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing packages: ${missing[*]}; run as root (sudo make setup)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # We want promtool only: Debian's prometheus package also enables a server.
  if [[ " ${missing[*]} " == *" prometheus "* ]] && [[ -d /run/systemd/system ]]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi

# Node dependencies (koffi's install script is allowed in package.json).
# `npm install`, not `npm ci`: with this machine's npm settings
# (omit-lockfile-registry-resolved) `npm ci` rejects the lockfile's optional
# platform packages; versions are pinned in package.json and the lockfile.
if [[ ! -f node_modules/.package-lock.json || package.json -nt node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm install --no-audit --no-fund --loglevel=error
  touch node_modules/.package-lock.json
fi
