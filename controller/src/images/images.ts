// Images the controller serves (kernels, initramfs, host and guest images). Importing copies
// the artifact into the images directory while hashing it: the row is written only when the
// bytes match the manifest's sha256, so a corrupt or tampered artifact never becomes servable.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { ImageManifest, type ImageView } from "@weft/wire";
import { WeftError, conflict, invalid, notFound } from "../errors.js";
import type { Db } from "../store/db.js";
import type { Store } from "../store/store.js";
import type { Image } from "../store/generated/client.js";

export function imageView(img: Image, bootUrl: string): ImageView {
  return {
    name: img.name,
    kind: img.kind,
    format: img.format,
    size: Number(img.size),
    sha256: img.sha256,
    url: `${bootUrl}/boot/images/${img.name}`,
    createdAt: img.createdAt.toISOString(),
  };
}

export function readManifestFile(file: string): ImageManifest {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (err) {
    throw invalid("MANIFEST_UNREADABLE", `cannot read manifest ${file}: ${(err as Error).message}`);
  }
  const m = ImageManifest.safeParse(raw);
  if (!m.success) {
    throw invalid(
      "MANIFEST_INVALID",
      `${file} is not an image manifest`,
      m.error.issues.map((i) => ({ path: i.path.join("."), message: i.message })),
    );
  }
  return m.data;
}

export class Images {
  constructor(
    private readonly db: Db,
    private readonly store: Store,
    readonly dir: string,
  ) {}

  list(): Promise<Image[]> {
    return this.db.image.findMany({ orderBy: { name: "asc" } });
  }

  async get(name: string): Promise<Image> {
    const img = await this.db.image.findUnique({ where: { name } });
    if (!img) throw notFound("image", name);
    return img;
  }

  /** The file of an image, checked to lie inside the images directory. */
  fileOf(img: Image): string {
    const file = path.resolve(this.dir, img.path);
    if (!file.startsWith(this.dir + path.sep)) {
      throw new WeftError(
        "internal",
        "IMAGE_PATH_OUTSIDE",
        `image ${img.name} points outside the images directory`,
      );
    }
    return file;
  }

  /** Imports the artifact a manifest (on this machine) describes; replaces an older version. */
  async importManifest(
    manifestPath: string,
    actor: string,
  ): Promise<{ image: Image; replaced: boolean; unchanged: boolean }> {
    const m = readManifestFile(manifestPath);
    const source = path.join(path.dirname(manifestPath), m.file);
    const st = fs.statSync(source, { throwIfNoEntry: false });
    if (!st?.isFile()) throw invalid("IMAGE_FILE_MISSING", `${source} is not a regular file`);
    if (st.size !== m.size)
      throw invalid("IMAGE_SIZE_MISMATCH", `${source} has ${st.size} bytes, the manifest says ${m.size}`);

    const prior = await this.db.image.findUnique({ where: { name: m.name } });
    if (prior && prior.sha256 === m.sha256 && fs.existsSync(this.fileOf(prior))) {
      return { image: prior, replaced: false, unchanged: true };
    }

    fs.mkdirSync(this.dir, { recursive: true });
    const rel = `${m.name}-${m.sha256.slice(0, 12)}-${m.file}`;
    const dest = path.join(this.dir, rel);
    const tmp = `${dest}.${process.pid}.part`;
    const hash = crypto.createHash("sha256");
    try {
      await pipeline(
        fs.createReadStream(source),
        async function* (chunks: AsyncIterable<Buffer>) {
          for await (const c of chunks) {
            hash.update(c);
            yield c;
          }
        },
        fs.createWriteStream(tmp, { mode: 0o644 }),
      );
      const digest = hash.digest("hex");
      if (digest !== m.sha256) {
        throw invalid(
          "IMAGE_CHECKSUM_MISMATCH",
          `${source} has sha256 ${digest}, the manifest says ${m.sha256}`,
        );
      }
      fs.renameSync(tmp, dest);
    } finally {
      fs.rmSync(tmp, { force: true });
    }

    const data = {
      kind: m.kind,
      format: m.format,
      size: BigInt(m.size),
      sha256: m.sha256,
      path: rel,
      manifest: m as object,
    };
    const image = await this.db.$transaction(async (tx) => {
      const img = await tx.image.upsert({
        where: { name: m.name },
        create: { name: m.name, ...data },
        update: data,
      });
      await this.store.recordEvent(
        {
          subjectType: "image",
          subjectId: img.id,
          actor,
          message: `imported ${m.name} (${m.format}, ${m.size} bytes, sha256 ${m.sha256.slice(0, 12)})`,
        },
        tx,
      );
      return img;
    });
    if (prior && prior.path !== rel) fs.rmSync(path.join(this.dir, prior.path), { force: true });
    return { image, replaced: prior !== null, unchanged: false };
  }

  async remove(name: string, actor: string): Promise<void> {
    const img = await this.get(name);
    const users = await this.db.guest.count({ where: { imageId: img.id } });
    if (users) throw conflict("IMAGE_IN_USE", `image ${name} is the base of ${users} guest(s)`);
    await this.db.$transaction(async (tx) => {
      await tx.machine.updateMany({ where: { imageId: img.id }, data: { imageId: null } });
      await tx.image.delete({ where: { id: img.id } });
      await this.store.recordEvent(
        { subjectType: "image", subjectId: img.id, actor, message: `removed ${name}` },
        tx,
      );
    });
    fs.rmSync(this.fileOf(img), { force: true });
  }
}
