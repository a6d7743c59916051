// Whether guests on this machine can run on KVM. /dev/kvm alone is not enough: kvm_pvm (a
// hypervisor for specially built guest kernels) also provides it, and stock guests hang or die
// on it. KVM is taken as usable when kvm_intel or kvm_amd is loaded and kvm_pvm is not;
// otherwise guests run under TCG (<domain type='qemu'>). The host agent reports this flag at
// registration; the controller's local driver and tests use it directly.
import fs from "node:fs";

export function detectKvm(root = "/"): { kvm: boolean; reason: string } {
  const has = (p: string) => fs.existsSync(`${root}${p}`);
  if (!has("dev/kvm")) return { kvm: false, reason: "no /dev/kvm" };
  if (has("sys/module/kvm_pvm"))
    return { kvm: false, reason: "/dev/kvm is kvm_pvm, which runs no stock guest" };
  if (has("sys/module/kvm_intel") || has("sys/module/kvm_amd"))
    return { kvm: true, reason: "kvm_intel/kvm_amd loaded" };
  return { kvm: false, reason: "neither kvm_intel nor kvm_amd is loaded" };
}
