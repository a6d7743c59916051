import { z } from "zod";

/**
 * `qemu-img info --output=json`, as far as Weft reads it. Shared by the agent (host images)
 * and the controller (guest bases and overlays): a qcow2 can name any file on the host as its
 * backing or external data file, so both check these fields before using an image.
 */
export const QemuImgInfo = z.looseObject({
  filename: z.string(),
  format: z.string(),
  "virtual-size": z.number().int().nonnegative(),
  "actual-size": z.number().int().nonnegative().optional(),
  "backing-filename": z.string().optional(),
  "full-backing-filename": z.string().optional(),
  "backing-filename-format": z.string().optional(),
  "format-specific": z
    .looseObject({
      type: z.string(),
      data: z
        .looseObject({
          corrupt: z.boolean().optional(),
          "data-file": z.string().optional(),
          "data-file-raw": z.boolean().optional(),
        })
        .optional(),
    })
    .optional(),
});
export type QemuImgInfo = z.infer<typeof QemuImgInfo>;
