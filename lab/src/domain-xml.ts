// The libvirt domain of one lab server: a blank disk first and the NIC second in the boot
// order (a blank disk falls through to PXE, an installed one boots), a fixed MAC on the lab
// bridge, firmware and serial output in a log file, ACPI so a guest poweroff really powers
// off, and the richest CPU model so an installed host can run its own guests.
import { createHash } from "node:crypto";
import type { Accel } from "./accel.js";

/** A stable UUID (version 5 layout) derived from the lab and server names. */
export function serverUuid(netns: string, name: string): string {
  const h = createHash("sha256").update(`weft-lab/${netns}/${name}`).digest();
  h[6] = ((h[6] ?? 0) & 0x0f) | 0x50;
  h[8] = ((h[8] ?? 0) & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString("hex");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

export interface ServerDomainSpec {
  name: string;
  /** Fixed, so the server keeps its SMBIOS UUID (DHCP option 97) across rebuilds of the lab. */
  uuid: string;
  mac: string;
  bridge: string;
  memoryMiB: number;
  vcpus: number;
  accel: Accel;
  diskPath: string;
  consoleLog: string;
  firmware: "bios" | "uefi";
  /** UEFI only: where this server's variable store lives. */
  nvramPath?: string;
  /** UEFI only: code and template of the firmware. */
  ovmfCode?: string;
  ovmfVars?: string;
  emulator?: string;
}

export function xmlEscape(s: string): string {
  return s.replace(
    /[<>&'"]/g,
    (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", "'": "&apos;", '"': "&quot;" })[c] ?? c,
  );
}

export function serverDomainXml(spec: ServerDomainSpec): string {
  const e = xmlEscape;
  // TCG: QEMU's "max" model emulates every feature it can, SVM and NPT included, so KVM
  // loads inside the server. KVM: libvirt's "maximum" passes the host CPU through.
  const cpu = `<cpu mode='maximum' check='none'/>`;
  const os =
    spec.firmware === "uefi"
      ? [
          `<os>`,
          `    <type arch='x86_64' machine='q35'>hvm</type>`,
          `    <loader readonly='yes' type='pflash'>${e(spec.ovmfCode ?? "/usr/share/OVMF/OVMF_CODE_4M.fd")}</loader>`,
          `    <nvram template='${e(spec.ovmfVars ?? "/usr/share/OVMF/OVMF_VARS_4M.fd")}'>${e(spec.nvramPath ?? "")}</nvram>`,
          `    <bios useserial='yes'/>`,
          `  </os>`,
        ].join("\n")
      : [
          `<os>`,
          `    <type arch='x86_64' machine='pc'>hvm</type>`,
          `    <bios useserial='yes'/>`,
          `  </os>`,
        ].join("\n");
  return `<domain type='${spec.accel === "kvm" ? "kvm" : "qemu"}'>
  <name>${e(spec.name)}</name>
  <uuid>${e(spec.uuid)}</uuid>
  <description>weft lab server</description>
  <memory unit='MiB'>${spec.memoryMiB}</memory>
  <vcpu>${spec.vcpus}</vcpu>
  ${os}
  <features>
    <acpi/>
    <apic/>
  </features>
  ${cpu}
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>${e(spec.emulator ?? "/usr/bin/qemu-system-x86_64")}</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' discard='unmap'/>
      <source file='${e(spec.diskPath)}'/>
      <target dev='vda' bus='virtio'/>
      <boot order='1'/>
    </disk>
    <interface type='bridge'>
      <mac address='${e(spec.mac)}'/>
      <source bridge='${e(spec.bridge)}'/>
      <model type='virtio'/>
      <boot order='2'/>
    </interface>
    <serial type='file'>
      <source path='${e(spec.consoleLog)}' append='on'/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path='${e(spec.consoleLog)}' append='on'/>
      <target type='serial' port='0'/>
    </console>
    <controller type='usb' model='none'/>
    <video>
      <model type='none'/>
    </video>
    <memballoon model='none'/>
  </devices>
</domain>
`;
}
