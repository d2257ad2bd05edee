#!/usr/bin/env bash
# Packaging checks for CI (.ci/run), on a built tree; nothing touches the host.
#  1. vagrant validate: the Vagrantfile, with the libvirt provider's settings
#     (vagrant-libvirt checks them without a box or libvirtd; VirtualBox is not
#     in Debian, so its block is only parsed).
#  2. make install into a DESTDIR: the installed agent runs, the policy is
#     installed once and kept after that.
#  3. systemd-analyze verify on the installed unit. verify insists that
#     ExecStart's binary exists, and --root would look for every other binary
#     and unit (/bin/sh, network-pre.target…) in the DESTDIR too, so the unit is
#     checked as installed, with only its portshaper path pointed into the DESTDIR.
#  4. make uninstall from the DESTDIR leaves no file behind, except a policy
#     that was edited (PURGE=1 removes that too).
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root

step() { printf '\n== packaging: %s\n' "$*"; }
fail() { echo "packaging: FAILED: $*" >&2; exit 1; }

step "vagrant validate"
VAGRANT_DOTFILE_PATH=$work/vagrant VAGRANT_DEFAULT_PROVIDER=libvirt vagrant validate

step "make install DESTDIR=$root"
make --no-print-directory install DESTDIR="$root"
version=$(node "$root/usr/lib/portshaper/dist/cli/main.js" --version) || fail "installed agent does not run"
echo "installed portshaper $version"
grep -q "/usr/lib/portshaper/dist/cli/main.js" "$root/usr/bin/portshaper" || fail "/usr/bin/portshaper does not run /usr/lib/portshaper"
[[ -f $root/usr/lib/portshaper/bpf/portshaper.bpf.o ]] || fail "BPF object not installed"
[[ $(stat -c %a "$root/var/lib/portshaper") == 700 ]] || fail "/var/lib/portshaper is not 0700"
cmp -s examples/policy.yaml "$root/etc/portshaper/policy.yaml" || fail "policy not installed"

step "systemd-analyze verify"
sed "s|/usr/bin/portshaper|$root/usr/bin/portshaper|" "$root/lib/systemd/system/portshaper.service" > "$work/portshaper.service"
# verify exits 0 after "Unknown key …, ignoring" and other parse warnings: any output fails.
report=$(systemd-analyze verify "$work/portshaper.service" 2>&1) || fail "systemd-analyze verify: $report"
[[ -z $report ]] || fail "systemd-analyze verify: $report"
echo "portshaper.service: ok"

step "install again keeps an edited policy"
echo "# edited" >> "$root/etc/portshaper/policy.yaml"
make --no-print-directory install DESTDIR="$root" | grep "kept $root/etc/portshaper/policy.yaml"

step "make uninstall DESTDIR=$root"
make --no-print-directory uninstall DESTDIR="$root"
left=$(find "$root" -type f)
[[ $left == "$root/etc/portshaper/policy.yaml" ]] || fail "uninstall left: ${left:-nothing, but the edited policy should stay}"
make --no-print-directory uninstall DESTDIR="$root" PURGE=1
left=$(find "$root" -type f)
[[ -z $left ]] || fail "uninstall PURGE=1 left: $left"
echo "packaging: ok"
