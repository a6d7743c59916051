// A real Runner for integration tests that refuses anything that could hurt the machine the
// tests run on: reboot/poweroff/halt always, and disk tools (sgdisk, wipefs, mkfs, extlinux,
// e2fsck, resize2fs, mount, blockdev, partx) unless every /dev path they name belongs to
// the loop device the test attached.
import { execaRunner, type Runner } from "../../src/exec.js";

const NEVER = new Set(["reboot", "poweroff", "halt", "shutdown", "kexec"]);
const DISK_TOOLS = new Set([
  "sgdisk",
  "wipefs",
  "mkfs.ext4",
  "mke2fs",
  "extlinux",
  "e2fsck",
  "resize2fs",
  "mount",
  "blockdev",
  "partx",
  "dd",
]);

export function guardedRunner(allowedDevice: () => string | undefined, calls: string[] = []): Runner {
  return (command, args, options) => {
    const line = [command, ...args].join(" ");
    calls.push(line);
    if (NEVER.has(command)) throw new Error(`refused in tests: ${line}`);
    if (DISK_TOOLS.has(command)) {
      const dev = allowedDevice();
      const devs = args.filter((a) => a.startsWith("/dev/"));
      if (dev === undefined || devs.some((d) => d !== dev && !new RegExp(`^${dev}p\\d+$`).test(d))) {
        throw new Error(`refused in tests (not the test's loop device ${dev ?? "-"}): ${line}`);
      }
    }
    return execaRunner(command, args, options);
  };
}
