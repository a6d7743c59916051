import { z } from "zod";

/** The manifest boot-images writes beside each artifact (schema weft.image/v1). */
export const ImageManifest = z.object({
  schema: z.literal("weft.image/v1"),
  name: z.string().regex(/^[a-z0-9][a-z0-9.-]{0,62}$/),
  kind: z.enum(["kernel", "initrd", "host-rootfs", "guest-disk"]),
  format: z.enum(["bzImage", "cpio.zst", "cpio.lz4", "ext4.gz", "qcow2"]),
  /** Artifact file name, in the manifest's folder. */
  file: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, "a plain file name"),
  size: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  builtAt: z.string().optional(),
  packages: z.record(z.string(), z.string()).optional(),
  details: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
});
export type ImageManifest = z.infer<typeof ImageManifest>;

export const ImageView = z.object({
  name: z.string(),
  kind: z.string(),
  format: z.string(),
  size: z.number(),
  sha256: z.string(),
  url: z.string(),
  createdAt: z.string(),
});
export type ImageView = z.infer<typeof ImageView>;
