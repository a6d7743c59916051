import { describe, expect, it } from "vitest";
import { serverDomainXml, serverUuid, xmlEscape, type ServerDomainSpec } from "../src/domain-xml.js";

const base: ServerDomainSpec = {
  name: "srv2",
  uuid: serverUuid("weft-lab", "srv2"),
  mac: "52:54:00:77:00:02",
  bridge: "weftbr0",
  memoryMiB: 768,
  vcpus: 1,
  accel: "tcg",
  diskPath: "/var/lib/weft-lab/disks/srv2.qcow2",
  consoleLog: "/var/lib/weft-lab/srv2.console.log",
  firmware: "bios",
};

/** The text of every element matching a simple path of tag names. */
function all(xml: string, re: RegExp): string[] {
  return [...xml.matchAll(re)].map((m) => m[1] ?? "");
}

describe("server domain XML", () => {
  it("uses the emulator (type qemu) for TCG and type kvm for KVM", () => {
    expect(serverDomainXml(base)).toMatch(/^<domain type='qemu'>/);
    expect(serverDomainXml({ ...base, accel: "kvm" })).toMatch(/^<domain type='kvm'>/);
  });

  it("boots the disk first and the network second", () => {
    const xml = serverDomainXml(base);
    const disk = /<disk [^>]*>([\s\S]*?)<\/disk>/.exec(xml)?.[1] ?? "";
    const nic = /<interface [^>]*>([\s\S]*?)<\/interface>/.exec(xml)?.[1] ?? "";
    expect(disk).toContain("<boot order='1'/>");
    expect(nic).toContain("<boot order='2'/>");
    expect(all(xml, /<boot order='(\d)'\/>/g)).toEqual(["1", "2"]);
    // per-device boot order excludes <os><boot dev=...>
    expect(xml).not.toMatch(/<boot dev=/);
  });

  it("puts a virtio NIC with the fixed MAC on the lab bridge", () => {
    const nic = /<interface type='bridge'>([\s\S]*?)<\/interface>/.exec(serverDomainXml(base))?.[1] ?? "";
    expect(nic).toContain("<mac address='52:54:00:77:00:02'/>");
    expect(nic).toContain("<source bridge='weftbr0'/>");
    expect(nic).toContain("<model type='virtio'/>");
  });

  it("attaches the qcow2 disk as virtio", () => {
    const disk = /<disk type='file' device='disk'>([\s\S]*?)<\/disk>/.exec(serverDomainXml(base))?.[1] ?? "";
    expect(disk).toContain("type='qcow2'");
    expect(disk).toContain("<source file='/var/lib/weft-lab/disks/srv2.qcow2'/>");
    expect(disk).toContain("bus='virtio'");
  });

  it("sends serial output and firmware messages to the console log", () => {
    const xml = serverDomainXml(base);
    expect(xml).toContain("<bios useserial='yes'/>");
    const serial = /<serial type='file'>([\s\S]*?)<\/serial>/.exec(xml)?.[1] ?? "";
    expect(serial).toContain("<source path='/var/lib/weft-lab/srv2.console.log' append='on'/>");
  });

  it("asks for the richest CPU model, ACPI, and no graphics device", () => {
    const xml = serverDomainXml(base);
    expect(xml).toContain("<cpu mode='maximum' check='none'/>");
    expect(/<features>([\s\S]*?)<\/features>/.exec(xml)?.[1]).toContain("<acpi/>");
    expect(xml).not.toContain("<graphics");
    expect(xml).toContain("<on_poweroff>destroy</on_poweroff>");
  });

  it("sets memory, vCPUs, name and UUID", () => {
    const xml = serverDomainXml(base);
    expect(xml).toContain("<memory unit='MiB'>768</memory>");
    expect(xml).toContain("<vcpu>1</vcpu>");
    expect(xml).toContain("<name>srv2</name>");
    expect(xml).toContain(`<uuid>${base.uuid}</uuid>`);
  });

  it("uses OVMF with a per-server NVRAM for UEFI servers", () => {
    const xml = serverDomainXml({
      ...base,
      firmware: "uefi",
      nvramPath: "/var/lib/weft-lab/disks/srv2.nvram.fd",
    });
    expect(xml).toContain("machine='q35'");
    expect(xml).toMatch(/<loader readonly='yes' type='pflash'>[^<]*OVMF_CODE[^<]*<\/loader>/);
    expect(xml).toMatch(
      /<nvram template='[^']*OVMF_VARS[^']*'>\/var\/lib\/weft-lab\/disks\/srv2.nvram.fd<\/nvram>/,
    );
    expect(serverDomainXml(base)).not.toContain("<nvram");
  });

  it("escapes paths that contain XML characters", () => {
    const xml = serverDomainXml({ ...base, diskPath: "/tmp/a'b&c/srv2.qcow2" });
    expect(xml).toContain("<source file='/tmp/a&apos;b&amp;c/srv2.qcow2'/>");
    expect(xmlEscape(`<>&'"`)).toBe("&lt;&gt;&amp;&apos;&quot;");
  });
});

describe("server UUIDs", () => {
  it("are stable per lab and server and differ between them", () => {
    expect(serverUuid("weft-lab", "srv1")).toBe(serverUuid("weft-lab", "srv1"));
    expect(serverUuid("weft-lab", "srv1")).not.toBe(serverUuid("weft-lab", "srv2"));
    expect(serverUuid("weft-lab", "srv1")).not.toBe(serverUuid("weft-labtest", "srv1"));
    expect(serverUuid("weft-lab", "srv1")).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
  });
});
