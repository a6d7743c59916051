// The libvirt domain of a guest. Pure: everything the XML depends on is passed in, every
// value is escaped, and the output is stable (unit tests compare elements).
//
// Shape (libvirt domain format, https://libvirt.org/formatdomain.html):
// - type kvm where the host runs guests on KVM, qemu (TCG) otherwise, with the TCG
//   translation cache capped so that <memtune><hard_limit> holds;
// - <vcpu>, <cputune> period/quota per vCPU (see spec.ts for the formula);
// - <memory>/<currentMemory> the guest's RAM, <memtune><hard_limit> RAM + QEMU overhead;
// - disk 1: the qcow2 overlay, virtio, with <iotune> when IOPS or throughput are capped;
// - disk 2: the config drive, an ISO on a read-only cdrom;
// - one virtio NIC on the host's guest network with <bandwidth> (KB/s) when the host can
//   enforce it (it needs the sfq/ingress qdiscs);
// - serial console to a file, ACPI (so a guest poweroff powers off), destroy on crash.
import { cpuQuota, memoryHardLimitMiB, TCG_TB_CACHE_MIB } from "./spec.js";

export interface DomainGuest {
  name: string;
  uuid: string;
  vcpus: number;
  cpuMhz: number;
  memoryMiB: number;
  diskIops: number | null;
  diskBps: number | null;
  netInKBps: number;
  netOutKBps: number;
  mac: string;
}

export interface DomainHost {
  kvm: boolean;
  cpuMhz: number;
  /** Whether <bandwidth> can be enforced there (tc with sfq and ingress). */
  bandwidth: boolean;
  /** Whether <hard_limit> may be in the XML (see HostCapabilities.memlock); default true. */
  hardLimitInXml?: boolean;
  /** libvirt network the guests attach to. */
  network: string;
}

export interface DomainPaths {
  overlay: string;
  configDrive: string;
  console: string;
  /** Direct kernel boot (tests, appliance images); a disk image normally boots itself. */
  kernel?: string;
  initrd?: string;
  cmdline?: string;
}

/** Escapes text for XML content and attribute values. */
export function xmlEscape(v: string | number): string {
  return String(v)
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&apos;");
}

/** The guest's MAC: QEMU's local prefix 52:54:00 and the low 24 bits of its (unique) DIP. */
export function macForDip(dip: string): string {
  const o = dip.split(".").map(Number);
  if (o.length !== 4 || o.some((n) => !Number.isInteger(n) || n < 0 || n > 255))
    throw new Error(`not an IPv4 address: ${dip}`);
  return ["52", "54", "00", ...o.slice(1).map((n) => n.toString(16).padStart(2, "0"))].join(":");
}

/**
 * Outbound traffic is policed (dropped above the rate), not shaped: with libvirt's usual 64 KB
 * bucket TCP backs off far below the cap. A quarter of a second at the rate lets it reach the
 * cap; over any window of seconds the average still holds.
 */
export function outboundBurstKB(netOutKBps: number): number {
  return Math.max(64, Math.ceil(netOutKBps / 4));
}

export function renderDomainXml(g: DomainGuest, host: DomainHost, paths: DomainPaths): string {
  const e = xmlEscape;
  const { period, quota } = cpuQuota(g.cpuMhz, host.cpuMhz);
  const memKiB = g.memoryMiB * 1024;
  const hardKiB = memoryHardLimitMiB(g.memoryMiB, host.kvm) * 1024;
  const L: string[] = [];
  L.push(`<domain type='${host.kvm ? "kvm" : "qemu"}'>`);
  L.push(`  <name>${e(g.name)}</name>`);
  L.push(`  <uuid>${e(g.uuid)}</uuid>`);
  L.push(`  <metadata>`);
  L.push(`    <weft:guest xmlns:weft='https://weft.invalid/xmlns/guest/1'>${e(g.name)}</weft:guest>`);
  L.push(`  </metadata>`);
  L.push(`  <memory unit='KiB'>${memKiB}</memory>`);
  L.push(`  <currentMemory unit='KiB'>${memKiB}</currentMemory>`);
  if (host.hardLimitInXml !== false) {
    L.push(`  <memtune>`);
    L.push(`    <hard_limit unit='KiB'>${hardKiB}</hard_limit>`);
    L.push(`  </memtune>`);
  }
  L.push(`  <vcpu placement='static'>${g.vcpus}</vcpu>`);
  L.push(`  <cputune>`);
  L.push(`    <period>${period}</period>`);
  L.push(`    <quota>${quota}</quota>`);
  L.push(`  </cputune>`);
  L.push(`  <os>`);
  L.push(`    <type arch='x86_64' machine='pc'>hvm</type>`);
  if (paths.kernel) {
    L.push(`    <kernel>${e(paths.kernel)}</kernel>`);
    if (paths.initrd) L.push(`    <initrd>${e(paths.initrd)}</initrd>`);
    if (paths.cmdline) L.push(`    <cmdline>${e(paths.cmdline)}</cmdline>`);
  }
  L.push(`    <boot dev='hd'/>`);
  L.push(`  </os>`);
  L.push(`  <features>`);
  L.push(`    <acpi/>`);
  if (!host.kvm) {
    L.push(`    <tcg>`);
    L.push(`      <tb-cache unit='MiB'>${TCG_TB_CACHE_MIB}</tb-cache>`);
    L.push(`    </tcg>`);
  }
  L.push(`  </features>`);
  L.push(`  <cpu mode='${host.kvm ? "host-model" : "custom"}'${host.kvm ? "" : " match='exact'"}>`);
  if (!host.kvm) L.push(`    <model fallback='allow'>qemu64</model>`);
  L.push(`  </cpu>`);
  L.push(`  <clock offset='utc'/>`);
  L.push(`  <on_poweroff>destroy</on_poweroff>`);
  L.push(`  <on_reboot>restart</on_reboot>`);
  L.push(`  <on_crash>destroy</on_crash>`);
  L.push(`  <devices>`);
  L.push(`    <disk type='file' device='disk'>`);
  L.push(`      <driver name='qemu' type='qcow2' cache='none' discard='unmap'/>`);
  L.push(`      <source file='${e(paths.overlay)}'/>`);
  L.push(`      <target dev='vda' bus='virtio'/>`);
  if (g.diskIops !== null || g.diskBps !== null) {
    L.push(`      <iotune>`);
    if (g.diskBps !== null) L.push(`        <total_bytes_sec>${g.diskBps}</total_bytes_sec>`);
    if (g.diskIops !== null) L.push(`        <total_iops_sec>${g.diskIops}</total_iops_sec>`);
    L.push(`      </iotune>`);
  }
  L.push(`    </disk>`);
  L.push(`    <disk type='file' device='cdrom'>`);
  L.push(`      <driver name='qemu' type='raw'/>`);
  L.push(`      <source file='${e(paths.configDrive)}'/>`);
  L.push(`      <target dev='sda' bus='sata'/>`);
  L.push(`      <readonly/>`);
  L.push(`    </disk>`);
  L.push(`    <interface type='network'>`);
  L.push(`      <source network='${e(host.network)}'/>`);
  L.push(`      <mac address='${e(g.mac)}'/>`);
  L.push(`      <model type='virtio'/>`);
  if (host.bandwidth) {
    L.push(`      <bandwidth>`);
    L.push(`        <inbound average='${g.netInKBps}' peak='${g.netInKBps}' burst='64'/>`);
    L.push(
      `        <outbound average='${g.netOutKBps}' peak='${g.netOutKBps}' burst='${outboundBurstKB(g.netOutKBps)}'/>`,
    );
    L.push(`      </bandwidth>`);
  }
  L.push(`    </interface>`);
  L.push(`    <serial type='file'>`);
  L.push(`      <source path='${e(paths.console)}'/>`);
  L.push(`      <target port='0'/>`);
  L.push(`    </serial>`);
  L.push(`    <console type='file'>`);
  L.push(`      <source path='${e(paths.console)}'/>`);
  L.push(`      <target type='serial' port='0'/>`);
  L.push(`    </console>`);
  L.push(`    <memballoon model='none'/>`);
  L.push(`  </devices>`);
  L.push(`</domain>`);
  return L.join("\n") + "\n";
}

/** The isolated guest network on a host: a bridge with the gateway address, no DHCP, no DNS. */
export function renderNetworkXml(n: {
  name: string;
  bridge: string;
  gateway: string;
  prefix: number;
}): string {
  const e = xmlEscape;
  return [
    `<network>`,
    `  <name>${e(n.name)}</name>`,
    // mode='open': libvirt adds no firewall rules of its own; Weft's nftables table decides
    // what leaves (masquerade) and what comes in (VIP DNAT).
    `  <forward mode='open'/>`,
    `  <bridge name='${e(n.bridge)}' stp='off' delay='0'/>`,
    `  <dns enable='no'/>`,
    `  <ip address='${e(n.gateway)}' prefix='${n.prefix}'/>`,
    `</network>`,
    ``,
  ].join("\n");
}
