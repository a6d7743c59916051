import { readFile } from "node:fs/promises";
import { labPaths, type LabConfig } from "../config.js";
import { LabError } from "../errors.js";
import { bootTimelines, formatTimelines } from "../timeline.js";

/** Prints each server's boot timeline since its last power-on, from the lab controller's log. */
export async function runTimeline(config: LabConfig, output: "table" | "json"): Promise<void> {
  const file = labPaths(config.stateDir).controllerLog;
  const text = await readFile(file, "utf8").catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT")
      throw new LabError("LAB_NOT_UP", `no controller log at ${file}: is the lab up?`);
    throw err;
  });
  const timelines = bootTimelines(text);
  if (output === "json") console.log(JSON.stringify(timelines, null, 2));
  else if (timelines.length === 0) console.log("no server was powered on through the controller yet");
  else console.log(`seconds after power-on\n${formatTimelines(timelines)}`);
}
