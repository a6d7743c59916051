// `qemu-img info --output=json` parsed with a schema, and the checks a disk image must pass
// before a guest is built on it. Pure.
//
// A qcow2 header can name any file on the host as its backing file or as its external data
// file; a guest booted on it would read (or write) that file. So:
// - a base image must be qcow2, not corrupt, with no backing file and no external data file;
// - an overlay must be qcow2 whose only backing file is the expected base, in qcow2 format,
//   inside the host's image cache.
// Run qemu-img with `-f qcow2` so that it never probes the format of an untrusted file.
import path from "node:path";
import { z } from "zod";
import { QemuImgInfo } from "@weft/wire";
import { WeftError } from "../errors.js";

export { QemuImgInfo };

const refuse = (code: string, message: string, details?: unknown) =>
  new WeftError("invalid_request", code, message, { details });

export function parseQemuImgInfo(json: string, file: string): QemuImgInfo {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    throw refuse("IMAGE_INFO_UNREADABLE", `qemu-img info on ${file} did not print JSON`);
  }
  const r = QemuImgInfo.safeParse(raw);
  if (!r.success)
    throw refuse("IMAGE_INFO_UNREADABLE", `qemu-img info on ${file}: ${z.prettifyError(r.error)}`);
  return r.data;
}

function common(info: QemuImgInfo, file: string): void {
  if (info.format !== "qcow2")
    throw refuse("IMAGE_FORMAT_WRONG", `${file} is ${info.format}, expected qcow2`, { format: info.format });
  const data = info["format-specific"]?.data;
  if (data?.corrupt) throw refuse("IMAGE_CORRUPT", `${file} is marked corrupt`);
  if (data?.["data-file"] !== undefined)
    throw refuse("IMAGE_DATA_FILE", `${file} names an external data file (${data["data-file"]}); refused`, {
      dataFile: data["data-file"],
    });
}

/** A base image: standalone qcow2. */
export function checkBaseInfo(info: QemuImgInfo, file: string): void {
  common(info, file);
  const backing = info["full-backing-filename"] ?? info["backing-filename"];
  if (backing !== undefined) {
    throw refuse("IMAGE_BACKING_FILE", `${file} names a backing file (${backing}); a base must stand alone`, {
      backing,
    });
  }
}

/** An overlay: qcow2 backed by exactly `base` (qcow2), which lies inside `cacheDir`. */
export function checkOverlayInfo(info: QemuImgInfo, file: string, base: string, cacheDir: string): void {
  common(info, file);
  const backing = info["full-backing-filename"] ?? info["backing-filename"];
  if (backing === undefined) throw refuse("IMAGE_BACKING_FILE", `${file} has no backing file`);
  const resolved = path.resolve(path.dirname(file), backing);
  const inCache = resolved.startsWith(path.resolve(cacheDir) + path.sep);
  if (!inCache || resolved !== path.resolve(base)) {
    throw refuse("IMAGE_BACKING_FILE", `${file} is backed by ${backing}, expected ${base}`, { backing });
  }
  if (info["backing-filename-format"] !== "qcow2") {
    throw refuse(
      "IMAGE_BACKING_FORMAT",
      `${file} declares its backing file as ${info["backing-filename-format"] ?? "unspecified"}, expected qcow2`,
    );
  }
}
