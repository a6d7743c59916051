// Which boot program a client gets, from what it says about itself. Pure: no I/O.
//
// Client kinds, in the order they are recognised:
//   iPXE (user class "iPXE", RFC 3004 or raw)  -> HTTP URL of its boot script, option 60 PXEClient
//   UEFI HTTP boot (vendor class HTTPClient...,
//     or arch 15/16/19 in option 93)          -> HTTP URL of the iPXE EFI binary, option 60 HTTPClient
//   PXE ROM (vendor class PXEClient...)       -> iPXE binary over TFTP, by option 93:
//       0 BIOS -> undionly.kpxe; 7/9 UEFI x64 -> ipxe.efi; 11 UEFI arm64 -> arm64 binary if set
//   anything else                             -> no boot options, unless the machine is known
//
// Option 60 is sent back only to iPXE and HTTP clients: iPXE waits about 3 s for a proxyDHCP
// offer unless it sees PXEClient (and then wants a next-server too, see below), while OVMF's
// native PXE given option 60 without option 43 refuses to boot (both measured in the lab). In
// proxyDHCP mode option 60 PXEClient is mandatory (PXE 2.1 section 2.2.3), so the policy adds
// option 43 with discovery control.
import { ClientArch } from "./options-pxe.js";

export interface BootRequest {
  mac: string;
  /** Option 93 values; the first is the one acted on (RFC 4578 section 2.1). */
  clientArch?: readonly number[] | undefined;
  vendorClass?: string | undefined;
  userClasses?: readonly string[] | undefined;
  /** Option 97 as a UUID string. */
  uuid?: string | undefined;
  /** True when the MAC belongs to a machine the controller knows. */
  known: boolean;
  /** The address of this server on the client's segment (for URLs). */
  serverAddress: string;
}

export interface BootPolicyConfig {
  /** TFTP file for BIOS PXE (chainloads iPXE). */
  biosFile: string;
  /** TFTP file for UEFI x64 PXE (ipxe.efi or snponly.efi). */
  efiX64File: string;
  /** TFTP file for UEFI arm64 PXE; arm64 clients get nothing when unset. */
  efiArm64File?: string | undefined;
  /** URL for UEFI HTTP boot clients (an iPXE EFI binary over HTTP). */
  httpBootUrl: (req: BootRequest) => string;
  /** URL of the per-machine iPXE script, e.g. http://<server>:<port>/boot/ipxe?mac=${net0/mac}. */
  ipxeScriptUrl: (req: BootRequest) => string;
  /** TFTP server address (siaddr and option 66); defaults to the serving address. */
  tftpServer?: string | undefined;
}

export type Firmware = "bios" | "uefi";

export type BootDecision =
  | { kind: "none"; reason: string }
  | {
      kind: "tftp" | "http" | "ipxe";
      firmware: Firmware | undefined;
      /** file field and option 67. */
      bootFile: string;
      /** siaddr and option 66 for TFTP; undefined for HTTP. */
      nextServer: string | undefined;
      /** Option 60 to send back, or undefined for none. */
      vendorClass: "PXEClient" | "HTTPClient" | undefined;
      /** Option 43 to send back (proxyDHCP only). */
      vendorSpecific: Buffer | undefined;
    };

/** PXE 2.1 option 43 sub-option 6 (discovery control) = 8: boot the file named in the reply. */
export const PXE_DISCOVERY_CONTROL_USE_FILE = Buffer.from([6, 1, 8, 255]);

const HTTP_ARCHES: ReadonlySet<number> = new Set([15, ClientArch.EfiX64Http, ClientArch.EfiArm64Http]);

export function firmwareOf(arch: number | undefined): Firmware | undefined {
  if (arch === undefined) return undefined;
  return arch === ClientArch.IntelX86Pc ? "bios" : "uefi";
}

export function isIpxe(req: Pick<BootRequest, "userClasses">): boolean {
  return req.userClasses?.includes("iPXE") ?? false;
}

/** A client that says it network-boots: PXEClient/HTTPClient vendor class or iPXE user class. */
export function isPxeClient(req: Pick<BootRequest, "vendorClass" | "userClasses">): boolean {
  const vc = req.vendorClass ?? "";
  return vc.startsWith("PXEClient") || vc.startsWith("HTTPClient") || isIpxe(req);
}

export function decideBoot(
  cfg: BootPolicyConfig,
  req: BootRequest,
  opts: { proxy?: boolean } = {},
): BootDecision {
  const arch = req.clientArch?.[0];
  const firmware = firmwareOf(arch);
  const vc = req.vendorClass ?? "";
  if (!isPxeClient(req) && !req.known) {
    return { kind: "none", reason: "not a PXE client and not a known machine" };
  }
  if (isIpxe(req)) {
    return {
      kind: "ipxe",
      firmware,
      bootFile: cfg.ipxeScriptUrl(req),
      // iPXE takes a PXEClient reply as complete only with a next-server (siaddr) as well as a
      // boot file; without one it sends a ProxyDHCPREQUEST to port 4011 and waits 4 s for an
      // answer on every boot (measured in the lab: DHCP ack to script request, 4.0 s).
      nextServer: req.serverAddress,
      vendorClass: "PXEClient",
      vendorSpecific: undefined,
    };
  }
  if (vc.startsWith("HTTPClient") || (arch !== undefined && HTTP_ARCHES.has(arch))) {
    return {
      kind: "http",
      firmware: "uefi",
      bootFile: cfg.httpBootUrl(req),
      nextServer: undefined,
      // UEFI 2.x section 24.7.2: an HTTP boot client ignores offers without HTTPClient.
      vendorClass: "HTTPClient",
      vendorSpecific: undefined,
    };
  }
  let file: string | undefined;
  switch (arch) {
    case undefined:
    case ClientArch.IntelX86Pc:
      file = cfg.biosFile;
      break;
    case ClientArch.EfiBc:
    case ClientArch.EfiX64:
      file = cfg.efiX64File;
      break;
    case ClientArch.EfiArm64:
      file = cfg.efiArm64File;
      break;
    default:
      file = undefined;
  }
  if (file === undefined) return { kind: "none", reason: `no boot file for client architecture ${arch}` };
  const proxy = opts.proxy === true;
  return {
    kind: "tftp",
    firmware: firmware ?? "bios",
    bootFile: file,
    nextServer: cfg.tftpServer ?? req.serverAddress,
    vendorClass: proxy ? "PXEClient" : undefined,
    vendorSpecific: proxy ? PXE_DISCOVERY_CONTROL_USE_FILE : undefined,
  };
}
