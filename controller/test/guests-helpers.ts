// Shared by the guest tests: a migrated temp SQLite store with hosts and a guest image.
import type { Db } from "../src/store/db.js";
import { tempDb, type TempDb } from "./helpers/db.js";

export type TempStore = TempDb;

export function tempStore(): TempStore {
  return tempDb("weft-guests-");
}

export async function addHost(
  db: Db,
  name: string,
  over: Partial<{
    cpus: number;
    cpuMhz: number;
    memoryMiB: number;
    diskBytes: bigint;
    kvm: boolean;
    state: string;
    address: string;
    libvirtUri: string;
  }> = {},
) {
  const m = await db.machine.create({ data: { name, provisionState: "host-ready" } });
  return db.host.create({
    data: {
      machineId: m.id,
      cpus: 4,
      cpuMhz: 2400,
      memoryMiB: 16_384,
      diskBytes: 2_000_000_000_000n,
      kvm: false,
      address: `192.0.2.${Math.floor(Math.random() * 200) + 1}`,
      libvirtUri: "test:///default",
      ...over,
    },
  });
}

export async function addImage(db: Db, name = "guest-base", sha256 = "0".repeat(64)) {
  return db.image.create({
    data: { name, kind: "guest-base", format: "qcow2", size: 1n << 20n, sha256, path: `${name}.qcow2` },
  });
}
