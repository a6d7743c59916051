// Checking a qcow2 file before anything opens it as a disk: `qemu-img info --output=json`
// through the exec door, parsed with a schema. A qcow2 may name a backing file or an external
// data file, and either can be any file on the host; both are refused, as is a file whose
// probed format is not the one expected.
import { z } from "zod";
import { QemuImgInfo } from "@weft/wire";
import { AgentError } from "./errors.js";
import type { Exec } from "./exec.js";

export { QemuImgInfo };

export interface ImageCheck {
  format: string;
  virtualSize: number;
}

/** Validates parsed `qemu-img info` output against what the caller expects. */
export function checkImageInfo(info: QemuImgInfo, expectedFormat: string): ImageCheck {
  if (info.format !== expectedFormat) {
    throw new AgentError(
      "integrity",
      "IMAGE_FORMAT_MISMATCH",
      `image format is ${info.format}, expected ${expectedFormat}`,
      {
        details: { expected: expectedFormat, actual: info.format },
      },
    );
  }
  const backing = info["full-backing-filename"] ?? info["backing-filename"];
  if (backing !== undefined) {
    throw new AgentError(
      "integrity",
      "IMAGE_HAS_BACKING_FILE",
      `image names a backing file (${backing}); refused`,
      {
        details: { backing },
      },
    );
  }
  const dataFile = info["format-specific"]?.data?.["data-file"];
  if (dataFile !== undefined) {
    throw new AgentError(
      "integrity",
      "IMAGE_HAS_DATA_FILE",
      `image names an external data file (${dataFile}); refused`,
      {
        details: { dataFile },
      },
    );
  }
  return { format: info.format, virtualSize: info["virtual-size"] };
}

export function parseQemuImgInfo(stdout: string): QemuImgInfo {
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch {
    throw new AgentError("exec", "QEMU_IMG_OUTPUT_INVALID", "qemu-img info did not print JSON");
  }
  const r = QemuImgInfo.safeParse(json);
  if (!r.success) {
    throw new AgentError("exec", "QEMU_IMG_OUTPUT_INVALID", `qemu-img info: ${z.prettifyError(r.error)}`);
  }
  return r.data;
}

/**
 * Probes `path` (no `-f`: the format is what qemu-img detects, so a raw file dressed up as
 * something else is caught) and refuses backing files, data files and unexpected formats.
 */
export async function checkImageFile(
  exec: Exec,
  path: string,
  expectedFormat = "qcow2",
): Promise<ImageCheck> {
  const r = await exec.run("qemu-img", ["info", "--output=json", path]);
  return checkImageInfo(parseQemuImgInfo(r.stdout), expectedFormat);
}
