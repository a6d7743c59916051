// iPXE scripts, rendered per machine from its state. Pure: no I/O.

export interface MaintenanceBoot {
  kind: "maintenance";
  kernelUrl: string;
  initrdUrl: string;
  /** Controller URL the agent talks to. */
  controllerUrl: string;
  /** One-time secret the agent exchanges for its token. */
  nonce: string;
  /** Extra kernel arguments (console...). */
  cmdline: string;
}

export type BootPlan =
  MaintenanceBoot | { kind: "local-disk" } | { kind: "unavailable"; reason: string; retrySeconds: number };

/** Characters that may appear in a URL or token we put on an iPXE command line unquoted. */
const SAFE = /^[A-Za-z0-9._~:/?#@!$&'()*+,;=%-]*$/;

function safe(v: string, what: string): string {
  if (!SAFE.test(v)) throw new Error(`unsafe ${what} for an iPXE script: ${JSON.stringify(v)}`);
  return v;
}

export function renderIpxe(plan: BootPlan): string {
  switch (plan.kind) {
    case "maintenance": {
      const args = [
        plan.cmdline,
        `weft.url=${safe(plan.controllerUrl, "controller URL")}`,
        `weft.nonce=${safe(plan.nonce, "nonce")}`,
        "weft.mode=maintenance",
      ].join(" ");
      return [
        "#!ipxe",
        "echo Weft: booting the maintenance OS",
        `kernel ${safe(plan.kernelUrl, "kernel URL")} initrd=initrd ${args}`,
        `initrd --name initrd ${safe(plan.initrdUrl, "initrd URL")}`,
        "boot",
        "",
      ].join("\n");
    }
    case "local-disk":
      // Hand back to the firmware, which tries the next boot device (the disk); if iPXE was
      // started with network first, boot the first BIOS disk instead.
      return [
        "#!ipxe",
        "echo Weft: booting from the local disk",
        "exit 1 || sanboot --no-describe --drive 0x80",
        "",
      ].join("\n");
    case "unavailable":
      return [
        "#!ipxe",
        `echo Weft: cannot boot this machine now: ${plan.reason.replace(/[^\w .,:-]/g, "")}`,
        `sleep ${plan.retrySeconds}`,
        "chain --replace --autofree ${filename} || reboot",
        "",
      ].join("\n");
  }
}
