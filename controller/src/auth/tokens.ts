// Bearer tokens. Only the sha256 of a token is stored: a leaked database grants nothing.
// Tokens carry 256 random bits, so a plain (unsalted) hash is enough to look them up.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import type { Db } from "../store/db.js";
import type { Store } from "../store/store.js";
import type { Logger } from "../log.js";

export const hashToken = (token: string) => crypto.createHash("sha256").update(token).digest("hex");

export function newToken(prefix: "weft" | "agent" | "nonce"): string {
  return `${prefix}_${crypto.randomBytes(32).toString("base64url")}`;
}

export interface Principal {
  kind: "operator" | "agent";
  name: string;
  credentialId: string;
  machineId: string | null;
}

/** Resolves a presented token to who holds it, or null (unknown or revoked). */
export async function authenticate(
  db: Db,
  token: string,
  kinds: Principal["kind"][],
): Promise<Principal | null> {
  const cred = await db.credential.findUnique({ where: { tokenHash: hashToken(token) } });
  if (!cred || cred.revokedAt || !kinds.includes(cred.kind as Principal["kind"])) return null;
  // Recording use is best effort: a busy database must not refuse a valid token.
  db.credential.update({ where: { id: cred.id }, data: { lastUsedAt: new Date() } }).catch(() => undefined);
  return {
    kind: cred.kind as Principal["kind"],
    name: cred.name,
    credentialId: cred.id,
    machineId: cred.machineId,
  };
}

/** The admin credential has a fixed id, so two controllers starting at once create one. */
const ADMIN_ID = "operator-admin";

/**
 * On first start there is no admin credential: create the admin token, store its hash and
 * write the token to `file`, readable by its owner (root) only. Returns whether one was made.
 */
export async function ensureAdminToken(db: Db, store: Store, file: string, log: Logger): Promise<boolean> {
  if (await db.credential.findUnique({ where: { id: ADMIN_ID } })) {
    if (!fs.existsSync(file)) {
      log.warn(
        { tokenFile: file },
        "the admin token's file is gone; make a new one with --rotate-admin-token",
      );
    }
    return false;
  }
  const made = await writeAdminToken(db, store, file, false);
  if (made) log.info({ tokenFile: file }, "created the admin token; the weft CLI reads it from this file");
  return made;
}

/**
 * Writes a new admin token to `file` and stores its hash: creates the credential, or with
 * `rotate` replaces the old hash (the old token stops working at once).
 */
export async function writeAdminToken(db: Db, store: Store, file: string, rotate: boolean): Promise<boolean> {
  const token = newToken("weft");
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  // A private temp file first, so the token is never readable by others; renamed once stored.
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${token}\n`, { mode: 0o600 });
  try {
    const tokenHash = hashToken(token);
    if (rotate) {
      await db.credential.upsert({
        where: { id: ADMIN_ID },
        create: { id: ADMIN_ID, kind: "operator", name: "admin", tokenHash },
        update: { tokenHash, revokedAt: null, lastUsedAt: null },
      });
    } else {
      await db.credential.create({ data: { id: ADMIN_ID, kind: "operator", name: "admin", tokenHash } });
    }
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    // Another controller created it first: its token file is the one that counts.
    if ((err as { code?: string }).code === "P2002") return false;
    throw err;
  }
  fs.renameSync(tmp, file);
  await store.recordEvent({
    subjectType: "credential",
    subjectId: ADMIN_ID,
    actor: "controller",
    message: rotate ? "admin token rotated" : "admin token created on first start",
  });
  return true;
}
