import { describe, expect, it } from "vitest";
import {
  decideBoot,
  isPxeClient,
  PXE_DISCOVERY_CONTROL_USE_FILE,
  type BootRequest,
} from "../src/netboot/dhcp/policy.js";

const cfg = {
  biosFile: "undionly.kpxe",
  efiX64File: "snponly.efi",
  efiArm64File: "ipxe-arm64.efi",
  httpBootUrl: (r: BootRequest) => `http://${r.serverAddress}/boot/ipxe.efi`,
  ipxeScriptUrl: (r: BootRequest) => `http://${r.serverAddress}/boot/ipxe?mac=${r.mac}`,
};
const base = { mac: "52:54:00:00:00:01", known: false, serverAddress: "10.0.0.1" };

describe("boot policy", () => {
  it.each([
    [
      "BIOS PXE ROM",
      { vendorClass: "PXEClient:Arch:00000:UNDI:002001", clientArch: [0] },
      "tftp",
      "undionly.kpxe",
      undefined,
    ],
    [
      "UEFI x64 PXE (arch 7)",
      { vendorClass: "PXEClient:Arch:00007:UNDI:003000", clientArch: [7] },
      "tftp",
      "snponly.efi",
      undefined,
    ],
    [
      "UEFI x64 PXE (arch 9)",
      { vendorClass: "PXEClient:Arch:00009:UNDI:003016", clientArch: [9] },
      "tftp",
      "snponly.efi",
      undefined,
    ],
    [
      "UEFI arm64 PXE",
      { vendorClass: "PXEClient:Arch:00011:UNDI:003000", clientArch: [11] },
      "tftp",
      "ipxe-arm64.efi",
      undefined,
    ],
    [
      "UEFI HTTP boot",
      { vendorClass: "HTTPClient:Arch:00016:UNDI:003000", clientArch: [16] },
      "http",
      "http://10.0.0.1/boot/ipxe.efi",
      "HTTPClient",
    ],
    [
      "iPXE, raw user class",
      { vendorClass: "PXEClient:Arch:00000:UNDI:002001", userClasses: ["iPXE"], clientArch: [0] },
      "ipxe",
      "http://10.0.0.1/boot/ipxe?mac=52:54:00:00:00:01",
      "PXEClient",
    ],
    [
      "iPXE on UEFI",
      { userClasses: ["iPXE"], clientArch: [7] },
      "ipxe",
      "http://10.0.0.1/boot/ipxe?mac=52:54:00:00:00:01",
      "PXEClient",
    ],
    ["known machine's OS", { known: true }, "tftp", "undionly.kpxe", undefined],
  ])("%s", (_name, req, kind, file, vendorClass) => {
    const d = decideBoot(cfg, { ...base, ...req });
    expect(d).toMatchObject({ kind, bootFile: file, vendorClass });
  });

  it("gives nothing to an unknown client that is not a PXE client", () => {
    expect(decideBoot(cfg, { ...base, vendorClass: "udhcp 1.35.0" }).kind).toBe("none");
    expect(isPxeClient({ vendorClass: "MSFT 5.0", userClasses: undefined })).toBe(false);
  });

  it("gives nothing for an architecture it has no binary for", () => {
    expect(decideBoot(cfg, { ...base, vendorClass: "PXEClient:Arch:00002", clientArch: [2] }).kind).toBe(
      "none",
    );
  });

  it("adds option 60 PXEClient and option 43 discovery control in proxy mode", () => {
    const d = decideBoot(
      cfg,
      { ...base, vendorClass: "PXEClient:Arch:00007", clientArch: [7] },
      { proxy: true },
    );
    expect(d).toMatchObject({ vendorClass: "PXEClient", vendorSpecific: PXE_DISCOVERY_CONTROL_USE_FILE });
  });
});
