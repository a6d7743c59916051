// Shared by the guest tests: a migrated temp SQLite store with hosts and a guest image.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { defaultMigrationsDir, openDb, type Db } from "../src/store/db.js";
import { migrateSqlite } from "../src/store/migrate.js";

export interface TempStore {
  db: Db;
  url: string;
  dir: string;
  cleanup: () => Promise<void>;
}

export function tempStore(): TempStore {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "weft-guests-"));
  const url = `file:${path.join(dir, "weft.db")}`;
  migrateSqlite(url, defaultMigrationsDir);
  const db = openDb(url);
  return {
    db,
    url,
    dir,
    cleanup: async () => {
      await db.$disconnect();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
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
