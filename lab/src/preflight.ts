// What the lab needs on the machine, and which Debian package brings each piece.
import { accessSync, constants } from "node:fs";
import path from "node:path";
import { LabError } from "./errors.js";

export const REQUIRED_TOOLS: ReadonlyArray<{ tool: string; pkg: string }> = [
  { tool: "ip", pkg: "iproute2" },
  { tool: "nsenter", pkg: "util-linux" },
  { tool: "unshare", pkg: "util-linux" },
  { tool: "qemu-system-x86_64", pkg: "qemu-system-x86" },
  { tool: "qemu-img", pkg: "qemu-utils" },
  { tool: "libvirtd", pkg: "libvirt-daemon-system" },
  { tool: "virtlogd", pkg: "libvirt-daemon-system" },
  { tool: "virsh", pkg: "libvirt-clients" },
  { tool: "dnsmasq", pkg: "dnsmasq-base" },
];

export function findInPath(tool: string, pathVar = process.env["PATH"] ?? ""): string | undefined {
  const dirs = [
    ...pathVar.split(":").filter((d) => d !== ""),
    "/usr/local/sbin",
    "/usr/sbin",
    "/sbin",
    "/usr/bin",
    "/bin",
  ];
  for (const dir of dirs) {
    const p = path.join(dir, tool);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Throws LAB_MISSING_TOOL naming every missing package at once. */
export function checkTools(find: (tool: string) => string | undefined = (t) => findInPath(t)): void {
  const missing = REQUIRED_TOOLS.filter(({ tool }) => find(tool) === undefined);
  if (missing.length === 0) return;
  const pkgs = [...new Set(missing.map((m) => m.pkg))];
  throw new LabError("LAB_MISSING_TOOL", `missing ${missing.map((m) => m.tool).join(", ")}`, {
    hint: `install the Debian package${pkgs.length > 1 ? "s" : ""}: apt-get install ${pkgs.join(" ")}`,
  });
}

export function checkRoot(uid = process.getuid?.() ?? -1): void {
  if (uid !== 0) {
    throw new LabError(
      "LAB_BAD_INPUT",
      "the lab creates network namespaces and starts libvirtd: run weft-lab as root",
    );
  }
}
