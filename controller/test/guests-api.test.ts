// The roles/guests/hosts routers and the weft CLI commands end to end, over a unix socket
// (no network), with in-memory hosts behind the guest service.
import fs from "node:fs";
import type http from "node:http";
import path from "node:path";
import { Command } from "commander";
import express, { type NextFunction, type Request, type Response } from "express";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ApiContext } from "../src/api/context.js";
import { guestsRouter, hostsRouter, rolesRouter } from "../src/api/routes/guests.js";
import { Client } from "../src/cli/client.js";
import type { CliContext } from "../src/cli/context.js";
import { FORMATS, type Format } from "../src/cli/output.js";
import { register as registerGuests } from "../src/cli/commands/guests.js";
import { register as registerHosts } from "../src/cli/commands/hosts.js";
import { register as registerRoles } from "../src/cli/commands/roles.js";
import { WeftError } from "../src/errors.js";
import { FakeHostDriver } from "../src/guests/fake-driver.js";
import { Ipam } from "../src/guests/ipam.js";
import { GuestService } from "../src/guests/service.js";
import { createLogger } from "../src/log.js";
import { Store } from "../src/store/store.js";
import { addHost, addImage, tempStore, type TempStore } from "./guests-helpers.js";

let t: TempStore;
let server: http.Server;
let socket: string;
let service: GuestService;
const driver = new FakeHostDriver("h1");

beforeAll(async () => {
  t = tempStore();
  await addImage(t.db, "guest-base", "b".repeat(64));
  await addHost(t.db, "h1");
  service = new GuestService({
    db: t.db,
    store: new Store(t.db),
    log: createLogger("silent"),
    ipam: new Ipam(t.db),
    driverFor: () => driver,
  });
  const ctx = { db: t.db } as unknown as ApiContext;
  const app = express();
  app.use(express.json());
  app.use("/v1/roles", rolesRouter(ctx, service));
  app.use("/v1/guests", guestsRouter(ctx, service));
  app.use("/v1/hosts", hostsRouter(ctx));
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const e = err instanceof WeftError ? err : new WeftError("internal", "INTERNAL", String(err));
    res.status(e.status).json(e.toBody());
  });
  socket = path.join(t.dir, "api.sock");
  server = app.listen(socket);
  await new Promise<void>((resolve) => server.once("listening", () => resolve()));
});
afterAll(async () => {
  await service.settled();
  await new Promise((r) => server.close(r));
  await t.cleanup();
});

async function weft(...args: string[]): Promise<{ out: string; err: string; error?: Error }> {
  let out = "";
  let err = "";
  const program = new Command("weft").exitOverride();
  const ctx: CliContext = {
    env: { CI: "true" },
    client: () => new Client({ socket }),
    format: (cmd) => (cmd.opts<{ output?: string }>().output ?? "table") as Format,
    out: (s) => void (out += s),
    err: (s) => void (err += s),
  };
  registerRoles(program, ctx);
  registerGuests(program, ctx);
  registerHosts(program, ctx);
  const all = (c: Command): Command[] => [c, ...c.commands.flatMap(all)];
  for (const c of all(program)) c.exitOverride().configureOutput({ writeErr: (s) => void (err += s) });
  try {
    await program.parseAsync(["node", "weft", ...args]);
    return { out, err };
  } catch (e) {
    return { out, err, error: e as Error };
  }
}

describe("weft roles/guests/hosts against the API", () => {
  it("creates a role with human units and follows it until its guests run", async () => {
    const r = await weft(
      "roles",
      "create",
      "web",
      "--instances",
      "2",
      "--image",
      "guest-base",
      "--vcpu",
      "1",
      "--cpu",
      "1.6GHz",
      "--memory",
      "1.7GiB",
      "--net",
      "100Mbit",
      "--disk",
      "250GB",
      "--port",
      "80",
      "--port",
      "53/udp",
    );
    expect(r.error).toBeUndefined();
    expect(r.err).toMatch(/role web created, VIP 10\.79\.0\.1; 2 guests placed/);
    expect(r.err).toMatch(/all 2 guests of web running/);
    expect(r.out).toMatch(/^NAME\s+ROLE\s+HOST\s+STATE\s+DIP/);
    expect(r.out).toMatch(/web-1\s+web\s+h1\s+running\s+10\.78\.0\.2\s+1x1\.6GHz\s+1741MiB/);
  });

  it("lists roles, guests and hosts in every format", async () => {
    const roles = await weft("roles", "list", "-o", "wide");
    expect(roles.out).toMatch(
      /web\s+2\s+2\s+10\.79\.0\.1\s+active\s+guest-base\s+1x1600MHz 1741MiB 250GB 100Mbit\s+80\/tcp,53\/udp/,
    );
    const json = JSON.parse((await weft("guests", "list", "-o", "json")).out) as {
      items: { name: string }[];
    };
    expect(json.items.map((g) => g.name)).toEqual(["web-1", "web-2"]);
    expect((await weft("guests", "show", "web-2", "-o", "yaml")).out).toMatch(/dip: 10\.78\.0\.3/);
    const hosts = await weft("hosts", "list");
    expect(hosts.out).toMatch(/h1\s+ready\s+\S+\s+tcg\s+2\s+3\.2GHz\/9\.6GHz/);
    expect(FORMATS).toContain("wide");
  });

  it("scales and deletes through the API, with clear refusals", async () => {
    expect((await weft("roles", "scale", "web", "3")).error).toBeUndefined();
    expect((await service.listGuests()).map((g) => g.state)).toEqual(["running", "running", "running"]);
    expect((await weft("guests", "delete", "web-3")).err).toMatch(/deleted web-3/);
    const bad = await weft(
      "roles",
      "create",
      "db",
      "--instances",
      "1",
      "--image",
      "guest-base",
      "--memory",
      "-1GiB",
    );
    expect(bad.error?.message).toMatch(/memory: "-1GiB" is not a quantity such as 1\.6GHz \[SPEC_INVALID\]/);
    const full = await weft(
      "roles",
      "create",
      "db",
      "--instances",
      "1",
      "--image",
      "guest-base",
      "--memory",
      "64GiB",
    );
    expect(full.error?.message).toMatch(/no host can take this guest: h1: memory/);
    const missing = await weft("guests", "show", "nope");
    expect(missing.error?.message).toMatch(/guest nope not found \[GUEST_NOT_FOUND\]/);
    expect((await weft("roles", "delete", "web")).err).toMatch(/deleted web/);
    expect(await t.db.guest.count()).toBe(0);
    expect(driver.domains.size).toBe(0);
  });

  it("answers 400 to a malformed body", async () => {
    const c = new Client({ socket });
    await expect(
      c.request("POST", "/v1/roles", { name: "x", instances: "2", spec: { image: "guest-base" } }),
    ).rejects.toThrow(/invalid request body \[BODY_INVALID\]/);
    expect(fs.existsSync(socket)).toBe(true);
  });
});
