// Registering the lab's servers with the controller (name, MAC, libvirt power driver) and
// importing the built boot images, through the controller's API on its unix socket. The
// same registrations are kept in <state dir>/servers.json for tools that read them.
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { libvirtUri, type LabConfig } from "./config.js";
import { labPaths } from "./config.js";
import { writeFileAtomic } from "./state.js";

export interface ServerRegistration {
  name: string;
  macs: string[];
  powerDriver: "libvirt";
  powerParams: { uri: string; domain: string };
}

export function serverRegistrations(
  config: LabConfig,
  servers: ReadonlyArray<{ name: string; mac: string }>,
): ServerRegistration[] {
  const uri = libvirtUri(config.stateDir);
  return servers.map((s) => ({
    name: s.name,
    macs: [s.mac],
    powerDriver: "libvirt",
    powerParams: { uri, domain: s.name },
  }));
}

interface ApiReply {
  status: number;
  body: { code?: string; message?: string } | undefined;
}

function post(socket: string, token: string, p: string, body: unknown): Promise<ApiReply> {
  const payload = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        socketPath: socket,
        path: p,
        method: "POST",
        headers: {
          authorization: `Bearer ${token}`,
          "content-type": "application/json",
          "content-length": payload.length,
        },
      },
      (res) => {
        let text = "";
        res.on("data", (c: Buffer) => (text += c.toString()));
        res.on("end", () => {
          let parsed: ApiReply["body"];
          try {
            parsed = text ? (JSON.parse(text) as ApiReply["body"]) : undefined;
          } catch {
            parsed = undefined;
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}

export interface RegisterResult {
  registrations: ServerRegistration[];
  /** Why registration with the controller was skipped, when it was. */
  skipped?: string;
  images: string[];
}

/** Registers every server (an already registered one is fine) and imports built images. */
export async function registerServers(
  config: LabConfig,
  servers: ReadonlyArray<{ name: string; mac: string }>,
  imageCache: string,
): Promise<RegisterResult> {
  const paths = labPaths(config.stateDir);
  const regs = serverRegistrations(config, servers);
  writeFileAtomic(paths.servers, `${JSON.stringify({ servers: regs }, null, 2)}\n`);
  if (!fs.existsSync(paths.controllerToken) || !fs.existsSync(paths.controllerSocket)) {
    return { registrations: regs, skipped: "the controller is not running", images: [] };
  }
  const token = fs.readFileSync(paths.controllerToken, "utf8").trim();
  for (const r of regs) {
    const res = await post(paths.controllerSocket, token, "/v1/machines", r);
    if (res.status !== 201 && res.body?.code !== "NAME_IN_USE" && res.body?.code !== "MAC_IN_USE") {
      throw new Error(`registering ${r.name}: ${res.body?.message ?? `HTTP ${res.status}`}`);
    }
  }
  const images: string[] = [];
  for (const manifest of findManifests(imageCache)) {
    const res = await post(paths.controllerSocket, token, "/v1/images", { manifest });
    if (res.status >= 400)
      throw new Error(`importing ${manifest}: ${res.body?.message ?? `HTTP ${res.status}`}`);
    images.push(path.basename(manifest, ".manifest.json"));
  }
  return { registrations: regs, images };
}

/** <cache>/<recipe>/<name>.manifest.json, as boot-images writes them. */
function findManifests(cache: string): string[] {
  if (!fs.existsSync(cache)) return [];
  return fs
    .readdirSync(cache, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .flatMap((d) =>
      fs
        .readdirSync(path.join(cache, d.name))
        .filter((f) => f.endsWith(".manifest.json"))
        .map((f) => path.join(cache, d.name, f)),
    )
    .sort();
}
