import { describe, expect, it } from "vitest";
import { renderIpxe } from "../src/netboot/http/script.js";

const maintenance = {
  kind: "maintenance" as const,
  kernelUrl: "http://10.77.0.1:7480/boot/images/maintenance-kernel",
  initrdUrl: "http://10.77.0.1:7480/boot/images/maintenance-initrd",
  controllerUrl: "http://10.77.0.1:7480",
  nonce: "nonce_abc-DEF_123",
  cmdline: "console=ttyS0,115200 quiet",
};

describe("iPXE boot scripts", () => {
  it("boots the maintenance OS with the controller URL and the nonce on the kernel command line", () => {
    const s = renderIpxe(maintenance);
    expect(s.split("\n")).toEqual([
      "#!ipxe",
      "echo Weft: booting the maintenance OS",
      "kernel http://10.77.0.1:7480/boot/images/maintenance-kernel initrd=initrd console=ttyS0,115200 quiet weft.url=http://10.77.0.1:7480 weft.nonce=nonce_abc-DEF_123 weft.mode=maintenance",
      "initrd --name initrd http://10.77.0.1:7480/boot/images/maintenance-initrd",
      "boot",
      "",
    ]);
  });

  it("hands an installed machine back to its disk", () => {
    expect(renderIpxe({ kind: "local-disk" })).toMatch(
      /^#!ipxe\n.*\nexit 1 \|\| sanboot --no-describe --drive 0x80\n$/,
    );
  });

  it("refuses to put a value that could inject iPXE commands into a script", () => {
    expect(() => renderIpxe({ ...maintenance, nonce: "x\nchain http://evil/" })).toThrow(/unsafe nonce/);
    expect(() => renderIpxe({ ...maintenance, kernelUrl: "http://a b" })).toThrow(/unsafe kernel URL/);
  });

  it("asks an unknown machine to retry later, without echoing hostile text", () => {
    const s = renderIpxe({ kind: "unavailable", reason: "no images; reboot\nchain x", retrySeconds: 30 });
    expect(s).toContain("sleep 30");
    expect(s.split("\n")[1]).toBe("echo Weft: cannot boot this machine now: no images rebootchain x");
  });
});
