// Builds the three images into the shared cache (so a second run on the same machine only
// verifies them), checks their manifests, boots the maintenance OS and the guest base image
// under QEMU's emulator, and exercises the cache: a changed input changes the key, a corrupted
// artifact is found and rebuilt.
import { execFileSync } from "node:child_process";
import { cp, mkdtemp, open, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildImages, currentKey, type RecipeOutcome } from "../src/build.js";
import { listManifests } from "../src/cli/list.js";
import { sha256File } from "../src/core/hash.js";
import type { ImageManifest } from "../src/core/manifest.js";
import { RECIPES } from "../src/recipes/index.js";
import { maintenanceRecipe } from "../src/recipes/maintenance.js";
import { bundleAgent } from "../src/parts/agent-bundle.js";
import { freePort, startQemu, type Vm } from "./helpers/qemu.js";

const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const repoRoot = resolve(packageDir, "..");
const recipesDir = join(packageDir, "recipes");
const cacheDir = process.env["WEFT_IMAGES_CACHE"] ?? "/var/cache/weft/images";
const progress = (l: string): void => void process.stderr.write(`  [images] ${l}\n`);

let scratch = "";
let first: RecipeOutcome[] = [];
const manifests = new Map<string, ImageManifest>();
const file = (name: string): string => {
  const m = manifests.get(name);
  if (!m) throw new Error(`no manifest for ${name}`);
  return join(cacheDir, m.recipe, m.file);
};
const vms: Vm[] = [];

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "weft-images-int-"));
  first = await buildImages({ cacheDir, repoRoot, recipesDir, recipes: RECIPES, progress });
  for (const o of first) {
    progress(`${o.recipe}: ${o.status} in ${o.seconds} s${o.reason ? ` (${o.reason})` : ""}`);
    for (const m of o.manifests) manifests.set(m.name, m);
  }
}, 1_200_000);

afterAll(async () => {
  for (const vm of vms) await vm.stop();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

describe("weft-images build", () => {
  it("builds every image", () => {
    const failed = first.filter((o) => o.status === "failed").map((o) => o.error?.message);
    expect(failed).toEqual([]);
    expect([...manifests.keys()].sort()).toEqual([
      "guest-base",
      "host-bookworm",
      "maintenance-initrd",
      "maintenance-kernel",
    ]);
  });

  it("writes manifests whose size and sha256 are the files'", async () => {
    const listed = await listManifests(cacheDir);
    expect(listed.map((m) => m.name).sort()).toEqual([...manifests.keys()].sort());
    for (const m of listed) {
      const path = join(cacheDir, m.recipe, m.file);
      expect((await stat(path)).size, m.name).toBe(m.size);
      expect(await sha256File(path), m.name).toBe(m.sha256);
      expect(m.inputKey).toMatch(/^[0-9a-f]{64}$/);
      expect(Object.keys(m.packages).length, m.name).toBeGreaterThan(0);
    }
    expect(manifests.get("maintenance-initrd")?.size).toBeLessThan(60_000_000);
    expect(manifests.get("host-bookworm")).toMatchObject({
      format: "ext4.gz",
      details: { filesystem: "ext4", label: "weft-root", compression: "gzip" },
    });
    expect(manifests.get("host-bookworm")?.size).toBeLessThan(400 * 1024 * 1024);
    expect(Object.keys(manifests.get("host-bookworm")?.packages ?? {})).toEqual(
      expect.arrayContaining(["systemd", "libvirt-daemon-system", "qemu-system-x86", "nftables"]),
    );
  });

  it("reuses unchanged images without rebuilding", async () => {
    const t = Date.now();
    const again = await buildImages({ cacheDir, repoRoot, recipesDir, recipes: RECIPES, progress });
    progress(`cached rebuild of all images: ${((Date.now() - t) / 1000).toFixed(1)} s`);
    for (const o of again) {
      const before = first.find((f) => f.recipe === o.recipe)?.manifests[0]?.inputKey;
      const now = o.manifests[0]?.inputKey;
      // Another change to the working tree (the agent, say) between the two builds is a
      // legitimate rebuild; with the same inputs the image must come from the cache, quickly.
      if (now === before) {
        expect(o.status, o.recipe).toBe("cached");
        expect(o.seconds, o.recipe).toBeLessThan(5);
      } else {
        progress(`${o.recipe}: inputs changed between the two builds (${o.reason ?? ""})`);
      }
      for (const m of o.manifests) manifests.set(m.name, m);
    }
  }, 900_000);
});

describe("maintenance OS", () => {
  it("boots to the agent without a network", async () => {
    const vm = startQemu(
      [
        "-m",
        "1024",
        "-nic",
        "none",
        "-kernel",
        file("maintenance-kernel"),
        "-initrd",
        file("maintenance-initrd"),
        "-append",
        "console=ttyS0",
      ],
      join(scratch, "maintenance-serial.log"),
    );
    vms.push(vm);
    const seen = await vm.waitFor(/weft-agent: starting/, 150_000);
    progress(`maintenance OS: "weft-agent: starting" after ${seen.seconds.toFixed(1)} s`);
    expect(seen.text).toMatch(/weft-init: loaded \d+ modules/);
    expect(seen.text).toMatch(/starting the agent without network/);
    await vm.stop();
  }, 180_000);

  it("boots again from the network when the controller refuses its agent", async () => {
    // A controller that no longer knows this machine, reached through QEMU's user network:
    // each connection to 10.0.2.100:7480 runs the fixture on its stdin and stdout.
    const refuse = join(packageDir, "test", "fixtures", "refusing-controller.cjs");
    const vm = startQemu(
      [
        "-m",
        "1024",
        "-nic",
        `user,model=virtio-net-pci,restrict=on,guestfwd=tcp:10.0.2.100:7480-cmd:${process.execPath} ${refuse}`,
        "-kernel",
        file("maintenance-kernel"),
        "-initrd",
        file("maintenance-initrd"),
        "-append",
        "console=ttyS0 weft.url=http://10.0.2.100:7480 weft.nonce=stale-nonce-0123456789",
      ],
      join(scratch, "refused-serial.log"),
    );
    vms.push(vm);
    const seen = await vm.waitFor(/the controller refused this agent; booting again/, 150_000);
    expect(seen.text).toMatch(/weft-agent: FATAL NONCE_REFUSED/);
    // QEMU runs with -no-reboot: the guest's reboot ends it.
    expect(await vm.waitExit(30_000)).toBe(true);
  }, 200_000);
});

describe("guest base image", () => {
  it("takes its name and address from the config drive and serves its role", async () => {
    const cfg = join(scratch, "config");
    await cp(join(packageDir, "test", "fixtures", "config-drive"), cfg, { recursive: true });
    const iso = join(scratch, "config.iso");
    execFileSync("genisoimage", ["-quiet", "-V", "cidata", "-J", "-r", "-o", iso, cfg]);
    const overlay = join(scratch, "guest.qcow2");
    execFileSync("qemu-img", [
      "create",
      "-q",
      "-f",
      "qcow2",
      "-F",
      "qcow2",
      "-b",
      file("guest-base"),
      overlay,
    ]);
    const http = await freePort();
    const iperf = await freePort();
    const vm = startQemu(
      [
        "-m",
        "256",
        "-drive",
        `file=${overlay},if=virtio,format=qcow2`,
        "-drive",
        `file=${iso},if=virtio,format=raw,readonly=on`,
        "-netdev",
        `user,id=n0,hostfwd=tcp:127.0.0.1:${http}-:80,hostfwd=tcp:127.0.0.1:${iperf}-:5201`,
        "-device",
        "virtio-net-pci,netdev=n0",
      ],
      join(scratch, "guest-serial.log"),
    );
    vms.push(vm);
    const seen = await vm.waitFor(/weft-guest: ready/, 150_000);
    progress(`guest base: ready after ${seen.seconds.toFixed(1)} s`);
    expect(seen.text).toContain("weft-guest: address 10.0.2.15/24 on eth0 via 10.0.2.2");
    const res = await fetch(`http://127.0.0.1:${http}/`, { signal: AbortSignal.timeout(20_000) });
    expect(res.status).toBe(200);
    expect((await res.text()).trim()).toBe("lab-web-1");
    const out = execFileSync("iperf3", ["-c", "127.0.0.1", "-p", String(iperf), "-t", "1", "-J"], {
      timeout: 30_000,
    }).toString();
    const bps = (JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received
      .bits_per_second;
    expect(bps).toBeGreaterThan(0);
    await vm.stop();
  }, 240_000);
});

describe("cache integrity", () => {
  it("gives a recipe a new key when one of its files changes", async () => {
    const copy = join(scratch, "recipes");
    await cp(recipesDir, copy, { recursive: true });
    // One agent bundle for both plans: the working tree may change while the test runs.
    const opts = { cacheDir: join(scratch, "cache-key"), repoRoot, recipesDir, agent: bundleAgent(repoRoot) };
    const before = await currentKey(opts, maintenanceRecipe);
    expect(await currentKey(opts, maintenanceRecipe)).toBe(before);
    await writeFile(
      join(copy, "maintenance/init"),
      `${await readFile(join(copy, "maintenance/init"), "utf8")}\n# changed\n`,
    );
    expect(await currentKey({ ...opts, recipesDir: copy }, maintenanceRecipe)).not.toBe(before);
  }, 60_000);

  it("detects a corrupted artifact and rebuilds it", async () => {
    const cache = join(scratch, "cache-corrupt");
    await cp(join(cacheDir, "maintenance"), join(cache, "maintenance"), { recursive: true });
    // Pin the agent bundle, and bring the copy up to date with it first (a no-op unless the
    // working tree changed since the images were built), so the only fault left is ours.
    const agent = bundleAgent(repoRoot);
    const fresh = await buildImages({
      cacheDir: cache,
      repoRoot,
      recipesDir,
      recipes: [maintenanceRecipe],
      progress,
      agent,
    });
    const original = fresh[0]?.manifests.find((m) => m.name === "maintenance-initrd");
    const initrd = join(cache, "maintenance", "maintenance-initrd.cpio.lz4");
    const fh = await open(initrd, "r+");
    const byte = Buffer.alloc(1);
    await fh.read(byte, 0, 1, 4096);
    await fh.write(Buffer.from([byte[0]! ^ 0xff]), 0, 1, 4096);
    await fh.close();
    expect(await sha256File(initrd)).not.toBe(original?.sha256);

    const [outcome] = await buildImages({
      cacheDir: cache,
      repoRoot,
      recipesDir,
      recipes: [maintenanceRecipe],
      progress,
      agent,
    });
    expect(outcome?.status).toBe("built");
    expect(outcome?.reason).toMatch(/maintenance-initrd: sha256 mismatch/);
    const rebuilt = outcome?.manifests.find((m) => m.name === "maintenance-initrd");
    expect(await sha256File(initrd)).toBe(rebuilt?.sha256);
    // The initramfs is reproducible: with the same inputs the rebuild has the original's bytes.
    expect(rebuilt?.inputKey).toBe(original?.inputKey);
    expect(rebuilt?.sha256).toBe(original?.sha256);
  }, 180_000);
});
