// The guest service on a temp store with in-memory hosts: placement and addresses, state
// changes and their events, failures mid-create, deletes racing creates, the cleanup pass.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FakeHostDriver } from "../src/guests/fake-driver.js";
import { Ipam } from "../src/guests/ipam.js";
import { GuestService, type HostRow } from "../src/guests/service.js";
import { createLogger } from "../src/log.js";
import { Store } from "../src/store/store.js";
import { addHost, addImage, tempStore, type TempStore } from "./guests-helpers.js";

let t: TempStore;
let drivers: Map<string, FakeHostDriver>;
let service: GuestService;
let hostIds: Record<string, string>;
const log = createLogger("silent");
const spec = { image: "guest-base", memory: "1GiB", disk: "10GB" };

beforeEach(async () => {
  t = tempStore();
  await addImage(t.db, "guest-base", "a".repeat(64));
  const h1 = await addHost(t.db, "h1");
  const h2 = await addHost(t.db, "h2");
  hostIds = { h1: h1.id, h2: h2.id };
  drivers = new Map([
    [h1.id, new FakeHostDriver("h1")],
    [h2.id, new FakeHostDriver("h2")],
  ]);
  service = new GuestService({
    db: t.db,
    store: new Store(t.db),
    log,
    ipam: new Ipam(t.db),
    driverFor: (h: HostRow) => drivers.get(h.id)!,
  });
});
afterEach(async () => {
  await service.settled();
  await t.cleanup();
});

const d = (name: "h1" | "h2") => drivers.get(hostIds[name]!)!;
const events = (subjectType: string) =>
  t.db.event.findMany({ where: { subjectType }, orderBy: { id: "asc" } });

describe("GuestService", () => {
  it("creates a role spread over hosts, each guest pending → creating → running with events", async () => {
    const r = await service.createRole({ name: "web", instances: 2, spec }, "operator:t");
    expect(r.role).toMatchObject({ name: "web", instances: 2, vip: "10.79.0.1", state: "active" });
    expect(new Set(r.guests.map((g) => g.host))).toEqual(new Set(["h1", "h2"]));
    await service.settled();
    const guests = await service.listGuests({ role: "web" });
    expect(guests.map((g) => g.state)).toEqual(["running", "running"]);
    const ev = await events("guest");
    const g1 = ev.filter((e) => e.subjectId === ev[0]!.subjectId).map((e) => [e.fromState, e.toState]);
    expect(g1).toEqual([
      [null, "pending"],
      ["pending", "creating"],
      ["creating", "running"],
    ]);
    const running = ev.find((e) => e.toState === "running")!;
    expect(running.data).toMatchObject({ createMs: expect.any(Number), steps: expect.any(Object) });
    expect((await events("role"))[0]!.message).toMatch(/role web created/);
    // Each host balances the VIP over its own guest; the config drive carries the address.
    expect(d("h1").vips.get("10.79.0.1")?.dips).toHaveLength(1);
    const cd = [...d("h1").configDrives.values()][0]!;
    expect(cd).toMatchObject({ prefix: 16, gateway: "10.78.0.1", role: "web", vip: "10.79.0.1" });
    expect(d("h1").downloads + d("h2").downloads).toBe(2); // one per host
  });

  it("refuses a role that fits nowhere and leaves nothing behind", async () => {
    await expect(
      service.createRole({ name: "big", instances: 3, spec: { ...spec, memory: "10GiB" } }, "operator:t"),
    ).rejects.toThrow(/no host can take this guest: h1: memory/);
    expect(await t.db.role.count()).toBe(0);
    expect(await t.db.guest.count()).toBe(0);
  });

  it("refuses bad input without changing state", async () => {
    await expect(service.createRole({ name: "Web!", instances: 1, spec }, "o")).rejects.toThrow(/role name/);
    await expect(service.createRole({ name: "web", instances: -1, spec }, "o")).rejects.toThrow(/instances/);
    await expect(
      service.createRole({ name: "web", instances: 1, spec: { ...spec, cpu: "-2GHz" } }, "o"),
    ).rejects.toThrow(/not a quantity/);
    await expect(
      service.createRole({ name: "web", instances: 1, spec: { ...spec, image: "nope" } }, "o"),
    ).rejects.toThrow(/image nope not found/);
    expect(await t.db.role.count()).toBe(0);
    await service.createRole({ name: "web", instances: 0, spec }, "o");
    await expect(service.createRole({ name: "web", instances: 1, spec }, "o")).rejects.toMatchObject({
      code: "ROLE_EXISTS",
    });
  });

  it("marks a guest failed with the reason and removes what was made", async () => {
    d("h1").failures.push("domain");
    d("h2").failures.push("domain");
    await service.createRole({ name: "web", instances: 1, spec }, "o");
    await service.settled();
    const [g] = await service.listGuests();
    expect(g).toMatchObject({ state: "failed", lastError: expect.stringMatching(/domain failed on h/) });
    const host = g!.host as "h1" | "h2";
    expect(d(host).overlays.size).toBe(0);
    expect(d(host).calls).toContain(`destroy ${g!.name}`);
  });

  it("leaves no orphan overlay once a host that failed mid-create is back (cleanup pass)", async () => {
    await service.createRole({ name: "web", instances: 1, spec: { ...spec } }, "o");
    await service.settled();
    const [running] = await service.listGuests();
    const host = running!.host as "h1" | "h2";
    const other = host === "h1" ? "h2" : "h1";
    // The next instance goes to the other host; it dies after the overlay is made.
    const gate = d(other).pause("configDrive");
    await service.scaleRole("web", 2, "o");
    await gate.reached;
    d(other).reachable = false;
    gate.release();
    await service.settled();
    const failed = (await service.listGuests()).find((g) => g.state === "failed")!;
    expect(failed.lastError).toMatch(/does not answer/);
    expect(d(other).overlays.has(failed.name)).toBe(true); // the host could not clean up

    expect((await service.reconcile()).errors).toEqual([expect.stringMatching(/does not answer/)]);
    d(other).reachable = true;
    const r = await service.reconcile();
    expect(r.removed).toEqual([`${other}/${failed.name}`]);
    expect(d(other).overlays.size).toBe(0);
    expect(d(host).domains.size).toBe(1); // the running guest is left alone
  });

  it("deletes a guest: domain gone, DIP freed, VIP map updated", async () => {
    await service.createRole({ name: "web", instances: 2, spec }, "o");
    await service.settled();
    const [a, b] = await service.listGuests();
    await service.deleteGuest(b!.name, "o");
    expect(await service.listGuests()).toHaveLength(1);
    const hb = d(b!.host as "h1" | "h2");
    expect(hb.domains.has(b!.name)).toBe(false);
    expect(hb.vips.has("10.79.0.1")).toBe(false); // its host has no guest of the role left
    const ha = d(a!.host as "h1" | "h2");
    expect(ha.vips.get("10.79.0.1")?.dips).toEqual([a!.dip]);
    await expect(service.deleteGuest("nope", "o")).rejects.toMatchObject({ code: "GUEST_NOT_FOUND" });
    expect((await events("guest")).at(-1)!.message).toMatch(/deleted; DIP 10\.78\.0\.3 released/);
  });

  it("deletes a role while its instances start: no orphans", async () => {
    const gate = d("h1").pause("overlay");
    await service.createRole({ name: "web", instances: 2, spec }, "o");
    await gate.reached; // one create is half way
    const del = service.deleteRole("web", "o");
    await new Promise((r) => setTimeout(r, 20));
    gate.release();
    await del;
    await service.settled();
    expect(await t.db.guest.count()).toBe(0);
    expect(await t.db.role.count()).toBe(0);
    for (const h of ["h1", "h2"] as const) {
      expect(d(h).domains.size).toBe(0);
      expect(d(h).overlays.size).toBe(0);
      expect(d(h).vips.size).toBe(0);
    }
  });

  it("finishes a role delete the hosts could not do at the time", async () => {
    await service.createRole({ name: "web", instances: 2, spec }, "o");
    await service.settled();
    d("h2").reachable = false;
    await expect(service.deleteRole("web", "o")).rejects.toMatchObject({ code: "ROLE_DELETE_INCOMPLETE" });
    expect((await service.getRole("web")).state).toBe("deleting");
    expect((await service.listGuests())[0]).toMatchObject({
      state: "deleting",
      lastError: expect.stringMatching(/h2/),
    });
    d("h2").reachable = true;
    await service.reconcile();
    expect(await t.db.guest.count()).toBe(0);
    expect(await t.db.role.count()).toBe(0);
    expect(d("h2").domains.size).toBe(0);
  });

  it("scales down failed and newest guests first", async () => {
    await service.createRole({ name: "web", instances: 3, spec }, "o");
    await service.settled();
    d("h1").failures.push("domain");
    d("h2").failures.push("domain");
    await service.scaleRole("web", 4, "o");
    await service.settled();
    expect((await service.listGuests()).filter((g) => g.state === "failed")).toHaveLength(1);
    const r = await service.scaleRole("web", 2, "o");
    expect(r.role.instances).toBe(2);
    const left = await service.listGuests();
    expect(left.map((g) => [g.name, g.state])).toEqual([
      ["web-1", "running"],
      ["web-2", "running"],
    ]);
  });

  it("applies the memory hard limit live where libvirt cannot put it in the XML", async () => {
    const h = d("h1");
    Object.assign(h.caps, { memlock: false, bandwidth: false });
    d("h2").reachable = false;
    await t.db.host.update({ where: { id: hostIds["h2"]! }, data: { state: "unreachable" } });
    await service.createRole({ name: "web", instances: 1, spec }, "o");
    await service.settled();
    const dom = [...h.domains.values()][0]!;
    expect(dom.xml).not.toContain("<hard_limit");
    expect(dom.xml).not.toContain("<bandwidth>");
    expect(dom.liveHardLimitKiB).toBe((1024 + 256 + 128) * 1024);
  });

  it("keeps each host's VIP table current when a role's guests come up on two hosts at once", async () => {
    // h1's guest is held before it runs; the sync for h2's guest reads h1's table (empty) and
    // is held applying it; then h1's guest runs and syncs. Were syncs able to overtake each
    // other, the held one would land last and leave h1 without its DIP.
    const domain = d("h1").pause("domain");
    await service.createRole({ name: "web", instances: 2, spec }, "o");
    await domain.reached;
    const vip = d("h1").pause("vip");
    await vip.reached;
    domain.release();
    await vi.waitFor(async () =>
      expect((await service.listGuests({ role: "web" })).map((g) => g.state)).toEqual(["running", "running"]),
    );
    vip.release();
    await service.settled();
    for (const g of await service.listGuests({ role: "web" })) {
      expect(d(g.host as "h1" | "h2").vips.get("10.79.0.1")?.dips).toEqual([g.dip]);
    }
  });

  it("renders a host's whole VIP table from the store, so a new driver keeps every role's VIP", async () => {
    await service.createRole({ name: "web", instances: 2, spec }, "o");
    await service.createRole({ name: "api", instances: 2, spec }, "o");
    await service.settled();
    // A restarted controller: h1's driver remembers nothing applied before.
    drivers.set(hostIds["h1"]!, new FakeHostDriver("h1"));
    const webOnH2 = (await service.listGuests({ role: "web" })).find((g) => g.host === "h2")!;
    await service.deleteGuest(webOnH2.name, "o");
    expect([...d("h1").vips.keys()].sort()).toEqual(["10.79.0.1", "10.79.0.2"]);
    expect(d("h2").vips.has("10.79.0.1")).toBe(false);
    expect(d("h2").vips.get("10.79.0.2")?.dips).toHaveLength(1);
  });

  it("re-applies each host's VIP table from the store in the first cleanup pass after a start", async () => {
    await service.createRole({ name: "web", instances: 2, spec }, "o");
    await service.settled();
    const fresh = new Map([
      [hostIds["h1"]!, new FakeHostDriver("h1")],
      [hostIds["h2"]!, new FakeHostDriver("h2")],
    ]);
    const restarted = new GuestService({
      db: t.db,
      store: new Store(t.db),
      log,
      ipam: new Ipam(t.db),
      driverFor: (h: HostRow) => fresh.get(h.id)!,
    });
    expect((await restarted.reconcile()).errors).toEqual([]);
    for (const g of await restarted.listGuests({ role: "web" })) {
      expect(fresh.get(hostIds[g.host!]!)!.vips.get("10.79.0.1")?.dips).toEqual([g.dip]);
    }
    await restarted.reconcile();
    expect(fresh.get(hostIds["h1"]!)!.calls.filter((c) => c.startsWith("vip"))).toHaveLength(1);
  });

  it("lists hosts with used and free capacity", async () => {
    await service.createRole({ name: "web", instances: 2, spec }, "o");
    const hosts = await service.listHosts();
    expect(hosts.map((h) => h.capacity.used.guests)).toEqual([1, 1]);
    expect(hosts[0]!.capacity.free.cpuMhz).toBe(4 * 2400 - 1600);
  });
});

describe("createGuestSubsystem", () => {
  it("builds the service, the CA location and a cleanup loop that stops on abort", async () => {
    const { createGuestSubsystem } = await import("../src/guests/index.js");
    const { Images } = await import("../src/images/images.js");
    const store = new Store(t.db);
    const sub = createGuestSubsystem({
      db: t.db,
      store,
      images: new Images(t.db, store, `${t.dir}/images`),
      log,
      dataDir: t.dir,
      driverFor: (h) => drivers.get(h.id)!,
    });
    expect(sub.ca.caCertFile).toBe(`${t.dir}/pki/ca/cacert.pem`);
    await sub.service.createRole({ name: "web", instances: 1, spec }, "o");
    const ac = new AbortController();
    sub.startCleanup(10, ac.signal);
    await new Promise((r) => setTimeout(r, 50));
    ac.abort();
    await sub.close();
    expect((await sub.service.listGuests())[0]?.state).toBe("running");
  });
});
