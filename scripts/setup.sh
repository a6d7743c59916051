#!/usr/bin/env bash
# Installs everything Weft needs on a fresh Debian 12 machine of this kind and builds it:
# Debian packages (QEMU, libvirt, DHCP/TFTP clients and reference servers, iPXE, image
# tools), npm packages from the lockfile, the Prisma client and the TypeScript build.
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

# Debian packages, by what needs them.
APT_PACKAGES=(
  # lab servers and guests
  qemu-system-x86 qemu-utils ovmf libvirt-daemon-system libvirt-clients libvirt-dev
  # netboot: iPXE binaries served over TFTP, real clients and reference servers for tests/benchmarks
  ipxe udhcpc isc-dhcp-client atftp atftpd dnsmasq-base kea-dhcp4-server curl
  # images: kernel, busybox, disk tools, filesystem building
  linux-image-amd64 busybox-static debootstrap gdisk e2fsprogs extlinux syslinux-common
  cpio zstd lz4 pigz genisoimage syslinux mtools dosfstools fdisk
  # networking inside the lab
  iproute2 nftables iperf3
  # native npm modules and Weft's own (controller/native), built by node-gyp
  python3 make gcc g++
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  log "Debian packages present"
fi

# npm packages exactly as locked. Skipped when node_modules already matches the lockfile.
stamp=node_modules/.weft-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  log "installing npm packages (npm ci)"
  npm ci --no-audit --no-fund
  echo "$want" >"$stamp"
else
  log "npm packages match the lockfile"
fi

log "generating the Prisma client and building"
npm run --silent build
# npm links workspace bins only to files that exist; they exist once built.
npm rebuild --ignore-scripts @weft/controller @weft/lab @weft/boot-images @weft/agent >/dev/null
# The development database the Prisma CLI points at (prisma.config.ts), migrated, so that
# `npx prisma migrate status` answers on a fresh clone.
npx prisma migrate deploy >/dev/null
log "setup done"
