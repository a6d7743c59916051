// Which accelerator the lab's servers use. A /dev/kvm that exists is not enough: some hosts
// expose a KVM that only runs specially built guests (stock kernels hang or die on it). So
// "auto" boots a stock guest on KVM for a few seconds and falls back to QEMU's emulator
// (TCG, libvirt <domain type='qemu'>) when it does not get far. The outcome is cached in
// the state directory; `--accel kvm|tcg` overrides it.
import { accessSync, constants, existsSync, readFileSync, readdirSync } from "node:fs";
import { z } from "zod";
import type { Runner } from "./exec.js";
import { writeFileAtomic } from "./state.js";

export type Accel = "kvm" | "tcg";
export type AccelRequest = Accel | "auto";

export interface ProbeResult {
  ok: boolean;
  detail: string;
}
export type AccelProbe = () => Promise<ProbeResult>;

const decisionSchema = z.strictObject({
  accel: z.enum(["kvm", "tcg"]),
  reason: z.string(),
  decidedAt: z.string(),
});
export type AccelDecision = z.infer<typeof decisionSchema>;

export interface ChooseAccelOptions {
  request: AccelRequest;
  /** Cache file; undefined disables caching. */
  cacheFile: string | undefined;
  /** Whether /dev/kvm can be opened at all (cheap check before the probe). */
  kvmDevice: () => boolean;
  probe: AccelProbe;
  now?: () => Date;
}

export async function chooseAccel(opts: ChooseAccelOptions): Promise<AccelDecision> {
  const now = (opts.now ?? (() => new Date()))().toISOString();
  if (opts.request !== "auto") {
    return { accel: opts.request, reason: `requested with --accel ${opts.request}`, decidedAt: now };
  }
  if (opts.cacheFile !== undefined) {
    const cached = readCachedDecision(opts.cacheFile);
    if (cached !== undefined) return cached;
  }
  let decision: AccelDecision;
  if (!opts.kvmDevice()) {
    decision = { accel: "tcg", reason: "no usable /dev/kvm", decidedAt: now };
  } else {
    const r = await opts.probe();
    decision = r.ok
      ? { accel: "kvm", reason: `a stock guest runs on KVM: ${r.detail}`, decidedAt: now }
      : { accel: "tcg", reason: `a stock guest does not run on this KVM: ${r.detail}`, decidedAt: now };
  }
  if (opts.cacheFile !== undefined) writeFileAtomic(opts.cacheFile, `${JSON.stringify(decision, null, 2)}\n`);
  return decision;
}

export function readCachedDecision(file: string): AccelDecision | undefined {
  try {
    const r = decisionSchema.safeParse(JSON.parse(readFileSync(file, "utf8")));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

export function kvmDeviceUsable(device = "/dev/kvm"): boolean {
  try {
    accessSync(device, constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** The newest stock kernel in /boot, if any. */
export function findStockKernel(bootDir = "/boot"): string | undefined {
  let names: string[];
  try {
    names = readdirSync(bootDir).filter((n) => n.startsWith("vmlinuz-"));
  } catch {
    return undefined;
  }
  names.sort((a, b) => b.localeCompare(a, undefined, { numeric: true }));
  return names[0] === undefined ? undefined : `${bootDir}/${names[0]}`;
}

const OVMF = "/usr/share/ovmf/OVMF.fd";

/**
 * Boots a stock guest on KVM with QEMU directly (no network, no disk, bounded time).
 * With a kernel from /boot: it must print its banner ("Linux version"), which a KVM that
 * cannot run stock guests never lets it reach; with panic=-1 and -no-reboot a working KVM
 * ends the probe by itself in a second or two. Without a kernel, OVMF must still be running
 * when the time is up (on such a KVM it dies at once).
 */
export function qemuKvmProbe(run: Runner, options: { kernel?: string; timeoutMs?: number } = {}): AccelProbe {
  return async () => {
    const timeoutMs = options.timeoutMs ?? 15_000;
    const kernel = options.kernel ?? findStockKernel();
    const common = [
      "-accel",
      "kvm",
      "-cpu",
      "max",
      "-m",
      "256",
      "-nodefaults",
      "-display",
      "none",
      "-no-reboot",
      "-serial",
      "stdio",
    ];
    if (kernel !== undefined) {
      const r = await run(
        "qemu-system-x86_64",
        [...common, "-kernel", kernel, "-append", "console=ttyS0 panic=-1 earlyprintk=ttyS0"],
        {
          timeoutMs,
          allowFailure: true,
        },
      );
      const out = `${r.stdout}\n${r.stderr}`;
      if (/Linux version/.test(r.stdout)) return { ok: true, detail: `${kernel} printed its banner` };
      const err = /KVM internal error[^\n]*|failed to[^\n]*|Could not[^\n]*/.exec(out)?.[0];
      return {
        ok: false,
        detail: r.timedOut
          ? `${kernel} printed nothing within ${timeoutMs} ms`
          : `QEMU exited (${r.signal ?? String(r.exitCode)})${err ? `: ${err}` : ""}`,
      };
    }
    if (existsSync(OVMF)) {
      const r = await run("qemu-system-x86_64", [...common, "-bios", OVMF], {
        timeoutMs: Math.min(timeoutMs, 8_000),
        allowFailure: true,
      });
      if (r.timedOut) return { ok: true, detail: "OVMF kept running (no kernel in /boot to probe with)" };
      const err = /KVM internal error[^\n]*|failed to[^\n]*/.exec(`${r.stdout}\n${r.stderr}`)?.[0];
      return { ok: false, detail: `OVMF exited (${r.signal ?? String(r.exitCode)})${err ? `: ${err}` : ""}` };
    }
    return { ok: false, detail: "no stock guest to probe with (install linux-image-amd64 or ovmf)" };
  };
}
