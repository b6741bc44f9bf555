#!/usr/bin/env bash
# Builds the l4lb VM image: a Debian 12 (bookworm) minbase root file system with the
# runtime libraries l4lbd links against, the DPDK PMDs for cloud NICs, and the cloud
# kernel, booted as one uncompressed initramfs; and on top of it a small overlay with
# the freshly built l4lbd, l4lb-setup, the systemd unit, the init and a config.
#
#   deploy/image/build-image.sh [--l4lbd PATH] [--config FILE] [--out DIR] [--disk FILE]
#
#   --l4lbd   the binary to ship (default build/src/l4lbd)
#   --config  becomes /etc/l4lb/l4lb.yaml (default deploy/image/l4lb.yaml)
#   --out     receives vmlinuz and initrd (base + overlay; default build/vm)
#   --print-key  prints the base's cache directory and exits
#   --disk    also writes an ext4 root file system image of base + overlay; a name ending
#             in .qcow2 is converted with qemu-img (see docs/deploy.md for what it is
#             good for: it has no boot loader)
#
# The base (debootstrap + kernel, ~2 minutes) is cached in $L4LB_VM_CACHE (default
# /var/cache/l4lb-vm)/<hash>, the hash covering the base recipe (build_base), the package list (derived
# from `ldd l4lbd`), the kernel package version and the mirror; the overlay is rebuilt
# every time (well under a second). Needs root, debootstrap, cpio, apt, dpkg-deb,
# chroot; a Debian 12 host (the library list comes from the host's dpkg database).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
L4LBD=$REPO/build/src/l4lbd
CONFIG=$REPO/deploy/image/l4lb.yaml
OUT=$REPO/build/vm
DISK=
PRINT_KEY=
CACHE=${L4LB_VM_CACHE:-/var/cache/l4lb-vm}
MIRROR=${L4LB_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm

while [[ $# -gt 0 ]]; do
  case $1 in
    --l4lbd) L4LBD=$(realpath "$2"); shift 2 ;;
    --config) CONFIG=$(realpath "$2"); shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --disk) DISK=$2; shift 2 ;;
    --print-key) PRINT_KEY=1; shift ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "build-image.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
log() { echo "build-image: $*" >&2; }
[[ $(id -u) -eq 0 ]] || { log "run as root (debootstrap)"; exit 1; }
[[ -x $L4LBD ]] || { log "$L4LBD missing: build it first (meson compile -C build)"; exit 1; }

# The Debian packages of the shared libraries l4lbd loads (one dpkg query for all).
linked_packages() {
  local libs
  libs=$(ldd "$L4LBD" | awk '$3 ~ /^\// { n = split($3, p, "/"); print "*/x86_64-linux-gnu/" p[n] }')
  # shellcheck disable=SC2086 # one pattern per word
  dpkg -S $libs | cut -d: -f1 | sort -u
}

# PMDs are plugins EAL loads from its driver directory, not linked, and debootstrap skips
# Recommends: name them. virtio (qemu, most clouds), gve (Google gVNIC), the mempool
# driver, net_tap (the kernel twin for host traffic and health checks).
EXTRA_PACKAGES=(librte-net-virtio23 librte-net-gve23 librte-mempool-ring23 librte-net-tap23
  librte-bus-pci23 librte-bus-vdev23 kmod iproute2 procps)

PACKAGES=$( (linked_packages; printf '%s\n' "${EXTRA_PACKAGES[@]}") | sort -u | tr '\n' ',')
PACKAGES=${PACKAGES%,}
KERNEL_PKG=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ { print $2; exit }')
[[ -n $KERNEL_PKG ]] || { log "cannot resolve linux-image-cloud-amd64 (apt-get update?)"; exit 1; }
KERNEL_VERSION=$(apt-cache policy "$KERNEL_PKG" | awk '/Candidate:/ { print $2 }')

build_base() {
  local tmp=$CACHE/tmp.$KEY.$$ kver
  rm -rf "$CACHE"/tmp.*  # what an interrupted build left (we hold the lock)
  mkdir -p "$tmp/rootfs" "$CACHE/debs"
  log "base $KEY: debootstrap $SUITE minbase + $PACKAGES"
  debootstrap --variant=minbase --include="$PACKAGES" --cache-dir="$CACHE/debs" \
    "$SUITE" "$tmp/rootfs" "$MIRROR" >"$tmp/debootstrap.log" 2>&1 ||
    { tail -n 30 "$tmp/debootstrap.log" >&2; log "debootstrap failed"; return 1; }
  # The kernel is only unpacked: no postinst, no initramfs-tools; this image is the initramfs.
  log "kernel $KERNEL_PKG $KERNEL_VERSION"
  (cd "$CACHE/debs" && apt-get download -q -o APT::Sandbox::User=root "$KERNEL_PKG=$KERNEL_VERSION" >/dev/null)
  # Not straight into the rootfs: tar would replace the usrmerge symlink /lib (-> usr/lib)
  # with the package's /lib directory.
  dpkg-deb -x "$CACHE/debs/${KERNEL_PKG}_${KERNEL_VERSION}_amd64.deb" "$tmp/kernel"
  kver=${KERNEL_PKG#linux-image-}
  mkdir -p "$tmp/rootfs/usr/lib/modules"
  mv "$tmp/kernel/lib/modules/$kver" "$tmp/rootfs/usr/lib/modules/"
  mv "$tmp/kernel/boot/vmlinuz-$kver" "$tmp/vmlinuz"
  rm -rf "$tmp/kernel"
  chroot "$tmp/rootfs" /sbin/depmod "$kver"
  # Smaller initramfs, faster boot: no docs, man pages, locales, package caches.
  rm -rf "$tmp/rootfs"/usr/share/{doc,man,info,locale}/* "$tmp/rootfs"/var/cache/apt/*.bin \
    "$tmp/rootfs"/var/cache/apt/archives/*.deb "$tmp/rootfs"/var/lib/apt/lists/* \
    "$tmp/rootfs"/boot/*
  (cd "$tmp/rootfs" && find . -print0 | cpio --null -o -H newc --quiet) >"$tmp/base.cpio"
  rm -rf "$tmp/rootfs"
  mv "$tmp" "$BASE"
}

# The cache key: the base recipe itself and everything it installs.
KEY=$( (declare -f build_base; echo "$SUITE $MIRROR $KERNEL_PKG $KERNEL_VERSION $PACKAGES") |
  sha256sum | cut -c1-16)
BASE=$CACHE/$KEY
[[ -z $PRINT_KEY ]] || { echo "$BASE"; exit 0; }
mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
flock 9
# Bases of other inputs (an older kernel or package set) unused for 7 days go.
find "$CACHE" -mindepth 1 -maxdepth 1 -type d -regextype egrep -regex '.*/[0-9a-f]{16}' \
  ! -name "$KEY" -mtime +7 -exec rm -rf {} +
if [[ -f $BASE/base.cpio && -f $BASE/vmlinuz ]]; then
  touch "$BASE"
  log "base $KEY: cached in $BASE"
else
  start=$(date +%s)
  build_base
  log "base $KEY: built in $(($(date +%s) - start)) s"
fi

# The overlay: what changes with every build.
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
install -D -s -m 0755 "$L4LBD" "$stage/usr/local/bin/l4lbd"  # stripped: a smaller initramfs
install -D -m 0755 "$REPO/deploy/l4lb-setup" "$stage/usr/local/sbin/l4lb-setup"
install -D -m 0755 "$REPO/deploy/image/init" "$stage/init"
install -D -m 0644 "$REPO/deploy/systemd/l4lbd.service" "$stage/etc/systemd/system/l4lbd.service"
install -D -m 0644 "$CONFIG" "$stage/etc/l4lb/l4lb.yaml"
[[ -x $REPO/build/src/l4lbctl ]] && install -D -s -m 0755 "$REPO/build/src/l4lbctl" "$stage/usr/local/bin/l4lbctl"
mkdir -p "$OUT"
(cd "$stage" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet) >"$OUT/overlay.cpio"
# Concatenated newc archives unpack one after the other; later files win.
cat "$BASE/base.cpio" "$OUT/overlay.cpio" >"$OUT/initrd.tmp"
mv "$OUT/initrd.tmp" "$OUT/initrd"
cp "$BASE/vmlinuz" "$OUT/vmlinuz"
log "wrote $OUT/vmlinuz and $OUT/initrd ($(du -m "$OUT/initrd" | cut -f1) MiB)"

if [[ -n $DISK ]]; then
  root=$(mktemp -d)
  trap 'rm -rf "$stage" "$root"' EXIT
  (cd "$root" && cpio -idm --quiet <"$BASE/base.cpio" && cpio -idmu --quiet <"$OUT/overlay.cpio")
  raw=${DISK%.qcow2}.raw
  size=$(($(du -sm "$root" | cut -f1) * 13 / 10 + 128))
  rm -f "$raw"
  mkfs.ext4 -q -L l4lb-root -d "$root" "$raw" "${size}M"
  if [[ $DISK == *.qcow2 ]]; then
    qemu-img convert -f raw -O qcow2 "$raw" "$DISK"
    rm -f "$raw"
  fi
  log "wrote $DISK (ext4 root file system, no boot loader; kernel: $OUT/vmlinuz)"
fi
echo "$OUT"
