// The guest's libvirt domain: caps, devices, KVM/TCG, bandwidth flag, escaping.
import { describe, expect, it } from "vitest";
import { macForDip, renderDomainXml, renderNetworkXml, xmlEscape } from "../src/guests/domain-xml.js";

const guest = {
  name: "web-1",
  uuid: "6b1c2f0e-8a2b-4c55-9f1d-0b1f0e2d3c4a",
  vcpus: 2,
  cpuMhz: 1600,
  memoryMiB: 1741,
  diskIops: 500,
  diskBps: 50_000_000,
  netInKBps: 12_500,
  netOutKBps: 6250,
  mac: "52:54:00:00:00:02",
};
const host = { kvm: false, cpuMhz: 2400, bandwidth: true, network: "weft-guests" };
const paths = {
  overlay: "/var/lib/weft/guests/overlays/web-1.qcow2",
  configDrive: "/var/lib/weft/guests/config/web-1.iso",
  console: "/var/lib/weft/guests/console/web-1.log",
};

/** The text of the first element matching a path like "cputune/quota" (crude but enough). */
function element(xml: string, name: string): string | undefined {
  return new RegExp(`<${name}(?:\\s[^>]*)?>([^<]*)</${name}>`).exec(xml)?.[1];
}

describe("renderDomainXml", () => {
  const xml = renderDomainXml(guest, host, paths);

  it("uses TCG without KVM and KVM with it", () => {
    expect(xml).toMatch(/^<domain type='qemu'>/);
    expect(xml).toContain("<tb-cache unit='MiB'>128</tb-cache>");
    const kvm = renderDomainXml(guest, { ...host, kvm: true }, paths);
    expect(kvm).toMatch(/^<domain type='kvm'>/);
    expect(kvm).not.toContain("<tcg>");
    expect(kvm).toContain("<cpu mode='host-model'>");
  });

  it("caps CPU per vCPU from the host clock", () => {
    expect(element(xml, "vcpu")).toBe("2");
    expect(element(xml, "period")).toBe("100000");
    expect(element(xml, "quota")).toBe("66666");
  });

  it("sets memory, current memory and a hard limit with QEMU's overhead", () => {
    expect(element(xml, "memory")).toBe(String(1741 * 1024));
    expect(element(xml, "currentMemory")).toBe(String(1741 * 1024));
    expect(element(xml, "hard_limit")).toBe(String((1741 + 256 + 128) * 1024));
  });

  it("attaches the overlay on virtio with iotune, and the config drive read-only", () => {
    expect(xml).toContain(`<source file='${paths.overlay}'/>`);
    expect(xml).toContain("<target dev='vda' bus='virtio'/>");
    expect(element(xml, "total_iops_sec")).toBe("500");
    expect(element(xml, "total_bytes_sec")).toBe("50000000");
    expect(xml).toMatch(/<disk type='file' device='cdrom'>[\s\S]*web-1\.iso[\s\S]*<readonly\/>/);
    const noIo = renderDomainXml({ ...guest, diskIops: null, diskBps: null }, host, paths);
    expect(noIo).not.toContain("<iotune>");
  });

  it("puts one virtio NIC on the guest network with bandwidth in KB/s", () => {
    expect(xml.match(/<interface /g)).toHaveLength(1);
    expect(xml).toContain("<source network='weft-guests'/>");
    expect(xml).toContain("<mac address='52:54:00:00:00:02'/>");
    expect(xml).toContain("<inbound average='12500' peak='12500' burst='64'/>");
    // Policed outbound: a quarter second of burst at the rate, so that TCP reaches the cap.
    expect(xml).toContain("<outbound average='6250' peak='6250' burst='1563'/>");
  });

  it("omits bandwidth where the host cannot enforce it", () => {
    const x = renderDomainXml(guest, { ...host, bandwidth: false }, paths);
    expect(x).not.toContain("<bandwidth>");
  });

  it("logs the serial console to a file, enables ACPI, destroys on crash", () => {
    expect(xml).toMatch(
      /<serial type='file'>\s*<source path='\/var\/lib\/weft\/guests\/console\/web-1\.log'\/>/,
    );
    expect(xml).toContain("<acpi/>");
    expect(element(xml, "on_crash")).toBe("destroy");
  });

  it("boots a kernel directly when given one", () => {
    const x = renderDomainXml(guest, host, {
      ...paths,
      kernel: "/k",
      initrd: "/i",
      cmdline: "console=ttyS0",
    });
    expect(element(x, "kernel")).toBe("/k");
    expect(element(x, "initrd")).toBe("/i");
    expect(element(x, "cmdline")).toBe("console=ttyS0");
  });

  it("escapes every value", () => {
    const x = renderDomainXml(
      { ...guest, name: "a<b>&'\"" },
      { ...host, network: "n'/><evil/>" },
      { ...paths, overlay: "/x'/><disk>" },
    );
    expect(x).toContain("<name>a&lt;b&gt;&amp;&apos;&quot;</name>");
    expect(x).toContain("<source network='n&apos;/&gt;&lt;evil/&gt;'/>");
    expect(x).not.toContain("<evil/>");
    expect(x).toContain("<source file='/x&apos;/&gt;&lt;disk&gt;'/>");
    expect(xmlEscape(5)).toBe("5");
  });
});

describe("macForDip", () => {
  it("derives the MAC from the low 24 bits of the DIP", () => {
    expect(macForDip("10.78.1.254")).toBe("52:54:00:4e:01:fe");
    expect(() => macForDip("10.78.1")).toThrow(/not an IPv4/);
  });
});

describe("renderNetworkXml", () => {
  it("is an open-forward bridge with the gateway, no DNS or DHCP", () => {
    const x = renderNetworkXml({ name: "weft-guests", bridge: "weftbr0", gateway: "10.78.0.1", prefix: 16 });
    expect(x).toContain("<forward mode='open'/>");
    expect(x).toContain("<bridge name='weftbr0' stp='off' delay='0'/>");
    expect(x).toContain("<dns enable='no'/>");
    expect(x).toContain("<ip address='10.78.0.1' prefix='16'/>");
    expect(x).not.toContain("<dhcp>");
  });
});
