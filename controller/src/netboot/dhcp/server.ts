// Weft's DHCPv4 server: full mode (dynamic pool, static reservations, persisted leases) or
// proxyDHCP mode (boot options only). The listener is a thin shell around handle(), which
// turns one datagram into at most one reply and is what the unit tests drive.
//
// Node has no SO_BINDTODEVICE, so the socket binds 0.0.0.0:67 and every packet is filtered
// by where it can have come from: giaddr for relayed packets, the served subnet otherwise.
// An unrelayed broadcast from a client with no address (source 0.0.0.0) cannot be traced to
// an interface, so on a host with several broadcast networks only one of them should reach
// port 67 unrelayed. Replies to 255.255.255.255 leave by the route for that address: the host
// needs `ip route add 255.255.255.255/32 dev <interface>` (otherwise ENETUNREACH).
import dgram from "node:dgram";
import { once } from "node:events";
import {
  BOOTREPLY,
  BOOTREQUEST,
  clientOptions,
  decode,
  emptyMessage,
  encode,
  FLAG_BROADCAST,
  type ClientOptions,
  type DhcpMessage,
} from "./codec.js";
import { DhcpDecodeError } from "./errors.js";
import {
  BROADCAST_IP,
  formatMac,
  inSubnet,
  intToIp,
  ipToInt,
  mustIpToInt,
  parseCidr,
  ZERO_IP,
  type Subnet,
} from "./ip.js";
import { ownedBy, type ClientKey, type Lease, type LeaseStore } from "./lease-store.js";
import { noMachineHooks, type MachineHooks } from "./machines.js";
import { MessageType, messageTypeName, Opt, write } from "./options.js";
import { decideBoot, firmwareOf, isPxeClient, type BootDecision, type BootPolicyConfig } from "./policy.js";

// RFC 2131 section 2: the smallest datagram every client takes, and the IP and UDP headers in it.
const MIN_DATAGRAM = 576;
const IP_UDP_HEADERS = 28;
/** Options a reply gives up, in this order, to fit the client (see DhcpServer.fit). */
const DROP_TO_FIT = [Opt.Hostname, Opt.DomainName, Opt.DnsServers, Opt.BroadcastAddress, Opt.TftpServer];

/** The subset of pino the server uses. */
export interface DhcpLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): DhcpLogger;
}

export interface StaticReservation {
  mac: string;
  ip: string;
  hostname?: string;
}

export interface DhcpSubnetConfig {
  /** The network, e.g. "10.0.0.0/24". */
  cidr: string;
  /** Dynamic pool, inclusive; absent: reservations only. */
  range?: { start: string; end: string };
  routers?: string[];
  dnsServers?: string[];
  domainName?: string;
  /** Seconds; default 3600. */
  leaseSeconds?: number;
  reservations?: StaticReservation[];
}

export interface DhcpServerOptions {
  /** full: addresses and boot options; proxy: boot options only, beside another DHCP server. */
  mode: "full" | "proxy";
  /**
   * This server's address on the served segment: server identifier (option 54), the filter
   * for unrelayed packets, and the default TFTP server.
   */
  serverAddress: string;
  /** Local address to bind; default 0.0.0.0 (broadcasts only arrive there). */
  bindAddress?: string;
  /** Server port; default 67. */
  port?: number;
  /** Client port replies go to; default 68. */
  clientPort?: number;
  /** PXE boot server port used in proxy mode (PXE 2.1 section 2.2.4); default 4011, null for none. */
  proxyPort?: number | null;
  /**
   * Served networks. Unrelayed packets are served from the subnet holding serverAddress,
   * relayed ones from the subnet holding giaddr. Proxy mode uses them only as a filter.
   */
  subnets: DhcpSubnetConfig[];
  boot: BootPolicyConfig;
  /** Required in full mode. */
  leases?: LeaseStore;
  machines?: MachineHooks;
  logger: DhcpLogger;
  clock?: () => Date;
  /** How long an offered address stays held for the client; default 60 s. */
  offerHoldSeconds?: number;
  /** How long a declined address stays out of the pool; default 600 s. */
  declineHoldSeconds?: number;
  /**
   * Authoritative for the served subnets (default true): a client asking for an address in
   * the pool that no one holds gets it, one asking for any other gets a NAK. When false, a
   * request for which there is no record is left unanswered (RFC 2131 section 4.3.2).
   */
  authoritative?: boolean;
}

export interface Reply {
  msg: DhcpMessage;
  data: Buffer;
  address: string;
  port: number;
}

export interface PacketSource {
  address: string;
  port: number;
  /** The local port it arrived on (67, or 4011 in proxy mode). */
  localPort?: number;
}

interface ServedSubnet {
  cfg: DhcpSubnetConfig;
  net: Subnet;
  start: number;
  end: number;
  leaseSeconds: number;
  reservationsByMac: Map<string, StaticReservation>;
  reservedIps: Set<number>;
  /** Addresses believed held (a hint: the store decides). */
  taken: Set<number>;
  /** Addresses some in-flight request of this process is trying to claim. */
  pending: Set<number>;
  cursor: number;
}

/** Why a packet got no reply, for the one log line per refused packet. */
class Refusal {
  constructor(
    readonly reason: string,
    readonly level: "info" | "warn" | "debug" = "info",
  ) {}
}

interface Ctx {
  msg: DhcpMessage;
  opts: ClientOptions;
  mac: string;
  client: ClientKey;
  subnet: ServedSubnet;
  relayed: boolean;
  log: DhcpLogger;
  now: Date;
  from: PacketSource;
}

const DEFAULT_LEASE = 3600;
const KNOWN_CACHE_MS = 10_000;

export class DhcpServer {
  private readonly o: DhcpServerOptions;
  private readonly subnets: ServedSubnet[];
  private readonly local: ServedSubnet;
  private readonly machines: MachineHooks;
  private readonly clock: () => Date;
  private readonly sockets: dgram.Socket[] = [];
  private readonly inflight = new Set<Promise<void>>();
  /** Per-client chains so one client's retransmissions are handled in order. */
  private readonly chains = new Map<string, Promise<unknown>>();
  private readonly seenPxe = new Set<string>();
  /** isKnown() answers for a few seconds, so a DISCOVER and its REQUEST ask the store once. */
  private readonly knownCache = new Map<string, { known: boolean; until: number }>();
  private readonly serverIp: number;

  constructor(options: DhcpServerOptions) {
    this.o = options;
    if (options.mode === "full" && !options.leases) throw new Error("full mode needs a lease store");
    this.serverIp = mustIpToInt(options.serverAddress);
    this.machines = options.machines ?? noMachineHooks;
    this.clock = options.clock ?? (() => new Date());
    this.subnets = options.subnets.map((cfg) => {
      const net = parseCidr(cfg.cidr);
      const start = cfg.range ? mustIpToInt(cfg.range.start) : 1;
      const end = cfg.range ? mustIpToInt(cfg.range.end) : 0;
      if (cfg.range && (!inSubnet(net, start) || !inSubnet(net, end) || start > end)) {
        throw new RangeError(`range ${cfg.range.start}-${cfg.range.end} is not inside ${cfg.cidr}`);
      }
      const reservationsByMac = new Map<string, StaticReservation>();
      const reservedIps = new Set<number>();
      for (const r of cfg.reservations ?? []) {
        const ip = mustIpToInt(r.ip);
        if (!inSubnet(net, ip)) throw new RangeError(`reservation ${r.ip} is not inside ${cfg.cidr}`);
        reservationsByMac.set(r.mac.toLowerCase(), r);
        reservedIps.add(ip);
      }
      return {
        cfg,
        net,
        start,
        end,
        leaseSeconds: cfg.leaseSeconds ?? DEFAULT_LEASE,
        reservationsByMac,
        reservedIps,
        taken: new Set<number>(),
        pending: new Set<number>(),
        cursor: start,
      };
    });
    const local = this.subnets.find((s) => inSubnet(s.net, this.serverIp));
    if (!local) throw new RangeError(`serverAddress ${options.serverAddress} is in none of the subnets`);
    this.local = local;
  }

  /** Bind the socket(s) and load the allocator's view of taken addresses. */
  async start(): Promise<void> {
    await this.refreshTaken();
    const ports = [this.o.port ?? 67];
    if (this.o.mode === "proxy" && this.o.proxyPort !== null) ports.push(this.o.proxyPort ?? 4011);
    for (const port of ports) {
      const sock = dgram.createSocket({ type: "udp4" });
      sock.on("message", (buf, rinfo) =>
        this.onMessage(sock, buf, { address: rinfo.address, port: rinfo.port, localPort: port }),
      );
      sock.on("error", (err) => this.o.logger.error({ err, port }, "dhcp socket error"));
      sock.bind({ port, address: this.o.bindAddress ?? "0.0.0.0" });
      await once(sock, "listening");
      sock.setBroadcast(true);
      this.sockets.push(sock);
    }
    this.o.logger.info(
      {
        mode: this.o.mode,
        serverAddress: this.o.serverAddress,
        ports: this.sockets.map((s) => s.address().port),
      },
      "dhcp server listening",
    );
  }

  /** Bound ports, in order: the server port, then the proxy port. */
  ports(): number[] {
    return this.sockets.map((s) => s.address().port);
  }

  async stop(): Promise<void> {
    for (const s of this.sockets.splice(0)) s.close();
    await Promise.allSettled([...this.inflight]);
  }

  private onMessage(sock: dgram.Socket, buf: Buffer, from: PacketSource): void {
    const p = (async () => {
      try {
        const reply = await this.handle(buf, from);
        if (!reply) return;
        sock.send(reply.data, reply.port, reply.address, (err) => {
          if (!err) return;
          const hint =
            (err as NodeJS.ErrnoException).code === "ENETUNREACH" && reply.address === BROADCAST_IP
              ? "broadcasts need a host route: ip route add 255.255.255.255/32 dev <interface>"
              : undefined;
          this.o.logger.warn({ err, to: reply.address, port: reply.port, hint }, "dhcp send failed");
        });
      } catch (err) {
        // handle() logs its own refusals; this is the last net under a bug or a store failure.
        this.o.logger.error({ err }, "dhcp handler failed");
      }
    })();
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p));
  }

  /** One datagram in, at most one reply out. Never throws for bad input. */
  async handle(buf: Buffer, from: PacketSource): Promise<Reply | undefined> {
    let msg: DhcpMessage;
    let opts: ClientOptions;
    try {
      msg = decode(buf);
      opts = clientOptions(msg.options);
    } catch (e) {
      if (e instanceof DhcpDecodeError) {
        this.o.logger.warn(
          {
            reason: "malformed",
            code: e.code,
            option: e.option,
            detail: e.message,
            from: from.address,
            size: buf.length,
          },
          "dhcp packet refused",
        );
        return undefined;
      }
      throw e;
    }
    const mac = formatMac(msg.chaddr, Math.min(msg.hlen, 16));
    const log = this.o.logger.child({
      mac,
      xid: msg.xid.toString(16).padStart(8, "0"),
      type: opts.messageType !== undefined ? messageTypeName[opts.messageType] : undefined,
    });
    const key = opts.clientId ?? mac;
    // Serialise per client: a retransmitted DISCOVER must not race its original.
    const prev = this.chains.get(key) ?? Promise.resolve();
    const run = prev.then(() => this.dispatch(msg, opts, mac, log, from));
    const settled = run.catch(() => undefined);
    this.chains.set(key, settled);
    void settled.then(() => {
      if (this.chains.get(key) === settled) this.chains.delete(key);
    });
    try {
      const out = await run;
      if (out instanceof Refusal) {
        log[out.level]({ reason: out.reason }, "dhcp packet refused");
        return undefined;
      }
      return out;
    } catch (err) {
      log.error({ err }, "dhcp request failed");
      return undefined;
    }
  }

  private async dispatch(
    msg: DhcpMessage,
    opts: ClientOptions,
    mac: string,
    log: DhcpLogger,
    from: PacketSource,
  ): Promise<Reply | Refusal | undefined> {
    if (msg.op !== BOOTREQUEST) return new Refusal("not a BOOTREQUEST", "debug");
    if (msg.htype !== 1 || msg.hlen !== 6)
      return new Refusal(`hardware type ${msg.htype}/${msg.hlen} is not Ethernet`);
    if (opts.messageType === undefined) return new Refusal("BOOTP request without option 53");

    // Which network is this client on (RFC 2131 section 4.3.1: giaddr, else the arrival
    // interface, which the source address stands in for here).
    const relayed = msg.giaddr !== ZERO_IP;
    let subnet: ServedSubnet | undefined;
    if (relayed) {
      const g = ipToInt(msg.giaddr) ?? 0;
      subnet = this.subnets.find((s) => inSubnet(s.net, g));
      if (!subnet) return new Refusal(`relayed from ${msg.giaddr}, a network not served`);
    } else {
      const src = ipToInt(from.address) ?? 0;
      if (src !== 0 && !inSubnet(this.local.net, src)) {
        return new Refusal(`from ${from.address}, outside ${this.local.cfg.cidr}`);
      }
      subnet = this.local;
    }
    const ctx: Ctx = {
      msg,
      opts,
      mac,
      client: { mac, clientId: opts.clientId ?? null },
      subnet,
      relayed,
      log,
      now: this.clock(),
      from,
    };
    this.notePxeClient(ctx);
    if (this.o.mode === "proxy") return this.proxy(ctx);
    switch (opts.messageType) {
      case MessageType.Discover:
        return this.discover(ctx);
      case MessageType.Request:
        return this.request(ctx);
      case MessageType.Decline:
        return this.decline(ctx);
      case MessageType.Release:
        return this.release(ctx);
      case MessageType.Inform:
        return this.inform(ctx);
      default:
        return new Refusal(`message type ${opts.messageType} is not for a server`);
    }
  }

  private notePxeClient(ctx: Ctx): void {
    const { opts, mac } = ctx;
    const userClasses = opts.userClass?.classes;
    if (this.seenPxe.has(mac) || !isPxeClient({ vendorClass: opts.vendorClass, userClasses })) return;
    if (this.seenPxe.size >= 100_000) this.seenPxe.clear(); // a bound, not an eviction policy
    this.seenPxe.add(mac);
    const arch = opts.clientArch?.[0];
    this.machines
      .onPxeClient({
        mac,
        arch,
        firmware: firmwareOf(arch),
        uuid: opts.clientUuid,
        vendorClass: opts.vendorClass,
        userClasses,
        hostname: opts.hostname,
      })
      .catch((err: unknown) => {
        this.seenPxe.delete(mac);
        ctx.log.error({ err }, "recording the PXE client failed");
      });
  }

  private async bootFor(ctx: Ctx, proxy: boolean): Promise<BootDecision> {
    const { opts, mac } = ctx;
    const req = {
      mac,
      clientArch: opts.clientArch,
      vendorClass: opts.vendorClass,
      userClasses: opts.userClass?.classes,
      uuid: opts.clientUuid,
      known: false,
      serverAddress: this.o.serverAddress,
    };
    if (!isPxeClient(req)) req.known = await this.isKnown(mac, ctx.now);
    return decideBoot(this.o.boot, req, { proxy });
  }

  private async isKnown(mac: string, now: Date): Promise<boolean> {
    const hit = this.knownCache.get(mac);
    if (hit && hit.until > now.getTime()) return hit.known;
    const known = await this.machines.isKnown(mac);
    if (this.knownCache.size > 10_000) this.knownCache.clear();
    this.knownCache.set(mac, { known, until: now.getTime() + KNOWN_CACHE_MS });
    return known;
  }

  // ---- full mode ------------------------------------------------------------------------

  /** RFC 2131 section 4.3.1: choose an address, hold it for the client, OFFER it. */
  private async discover(ctx: Ctx): Promise<Reply | Refusal> {
    const lease = await this.allocate(ctx);
    if (lease instanceof Refusal) return lease;
    const boot = await this.bootFor(ctx, false);
    ctx.log.info({ ip: lease.ip, boot: boot.kind }, "dhcp offer");
    return this.reply(ctx, MessageType.Offer, {
      yiaddr: lease.ip,
      lease: true,
      boot,
      hostname: lease.hostname,
    });
  }

  private leaseFor(ctx: Ctx, ip: string, state: "offered" | "bound", reserved: boolean): Lease {
    const seconds = state === "offered" ? (this.o.offerHoldSeconds ?? 60) : ctx.subnet.leaseSeconds;
    const r = ctx.subnet.reservationsByMac.get(ctx.mac);
    return {
      ip,
      mac: ctx.mac,
      clientId: ctx.client.clientId,
      hostname: r?.hostname ?? ctx.opts.hostname ?? null,
      state,
      reserved,
      expiresAt: new Date(ctx.now.getTime() + seconds * 1000),
      machineId: null,
    };
  }

  private inPool(s: ServedSubnet, ip: number): boolean {
    return ip >= s.start && ip <= s.end && !s.reservedIps.has(ip) && ip !== this.serverIp;
  }

  /**
   * The address for a DISCOVER, in the order RFC 2131 section 4.3.1 gives: the client's
   * reservation, its current or previous binding, the address it asks for, then a free one.
   */
  private async allocate(ctx: Ctx): Promise<Lease | Refusal> {
    const store = this.o.leases as LeaseStore;
    const s = ctx.subnet;
    const reservation = s.reservationsByMac.get(ctx.mac);
    if (reservation) {
      const got = await store.claim(this.leaseFor(ctx, reservation.ip, "offered", true), ctx.now);
      return got ?? new Refusal(`reserved address ${reservation.ip} is held by another client`, "warn");
    }
    const previous = (await store.findByClient(ctx.client))
      .filter(
        (l) =>
          l.state !== "declined" && this.inPool(s, ipToInt(l.ip) ?? 0) && inSubnet(s.net, ipToInt(l.ip) ?? 0),
      )
      .sort((a, b) => b.expiresAt.getTime() - a.expiresAt.getTime());
    for (const l of previous) {
      const got = await this.tryClaim(ctx, mustIpToInt(l.ip));
      if (got) return got;
    }
    const wanted = ctx.opts.requestedIp !== undefined ? ipToInt(ctx.opts.requestedIp) : undefined;
    if (wanted !== undefined && this.inPool(s, wanted) && !s.taken.has(wanted)) {
      const got = await this.tryClaim(ctx, wanted);
      if (got) return got;
    }
    for (let pass = 0; pass < 2; pass++) {
      for (;;) {
        const ip = this.nextCandidate(s);
        if (ip === undefined) break;
        const got = await this.tryClaim(ctx, ip);
        if (got) return got;
      }
      // The hint may be stale (leases expired or released, maybe by another controller).
      if (pass === 0) await this.refreshTaken(s);
    }
    return new Refusal(`no free address in ${s.cfg.cidr}`, "warn");
  }

  private nextCandidate(s: ServedSubnet): number | undefined {
    const size = s.end - s.start + 1;
    if (size <= 0) return undefined;
    for (let i = 0; i < size; i++) {
      const ip = s.start + ((s.cursor - s.start + i) % size);
      if (s.taken.has(ip) || s.pending.has(ip) || !this.inPool(s, ip)) continue;
      s.cursor = ip + 1 > s.end ? s.start : ip + 1;
      return ip;
    }
    return undefined;
  }

  private async tryClaim(ctx: Ctx, ip: number): Promise<Lease | undefined> {
    const s = ctx.subnet;
    if (s.pending.has(ip)) return undefined;
    s.pending.add(ip);
    try {
      const got = await (this.o.leases as LeaseStore).claim(
        this.leaseFor(ctx, intToIp(ip), "offered", false),
        ctx.now,
      );
      s.taken.add(ip);
      return got;
    } finally {
      s.pending.delete(ip);
    }
  }

  private async refreshTaken(only?: ServedSubnet): Promise<void> {
    if (!this.o.leases) return;
    const taken = await this.o.leases.listTaken(this.clock());
    for (const s of only ? [only] : this.subnets) {
      s.taken.clear();
      for (const ip of taken) {
        const n = ipToInt(ip);
        if (n !== undefined && inSubnet(s.net, n)) s.taken.add(n);
      }
    }
  }

  /** RFC 2131 section 4.3.2. */
  private async request(ctx: Ctx): Promise<Reply | Refusal | undefined> {
    const { msg, opts } = ctx;
    const store = this.o.leases as LeaseStore;
    if (opts.serverId !== undefined) {
      // SELECTING: the client answers one server's OFFER, and the others learn they lost.
      if (opts.serverId !== this.o.serverAddress) {
        await this.releaseOffer(ctx);
        return new Refusal(`client chose server ${opts.serverId}`, "debug");
      }
      const ip = opts.requestedIp ?? (msg.ciaddr !== ZERO_IP ? msg.ciaddr : undefined);
      if (ip === undefined) return this.nak(ctx, "REQUEST names no address");
      return this.bind(ctx, ip, "selecting");
    }
    // INIT-REBOOT (option 50, no ciaddr) or RENEWING/REBINDING (ciaddr).
    const ip = msg.ciaddr !== ZERO_IP ? msg.ciaddr : opts.requestedIp;
    if (ip === undefined) return this.nak(ctx, "REQUEST names no address");
    const n = ipToInt(ip) ?? 0;
    if (!inSubnet(ctx.subnet.net, n)) return this.nak(ctx, `${ip} is not on ${ctx.subnet.cfg.cidr}`);
    const current = await store.get(ip);
    const mine = current !== undefined && current.state !== "declined" && ownedBy(current, ctx.client);
    const reservation = ctx.subnet.reservationsByMac.get(ctx.mac);
    if (reservation && reservation.ip !== ip) return this.nak(ctx, `client is reserved ${reservation.ip}`);
    if (!mine && !reservation) {
      if (current !== undefined && current.expiresAt > ctx.now && current.state !== "released") {
        return this.nak(ctx, `${ip} is held by another client`);
      }
      if (!this.inPool(ctx.subnet, n)) return this.nak(ctx, `${ip} is not in the pool`);
      if (current === undefined && this.o.authoritative === false) {
        return new Refusal(`no record of ${ip} for this client (not authoritative)`);
      }
    }
    return this.bind(ctx, ip, msg.ciaddr !== ZERO_IP ? "renewing" : "init-reboot");
  }

  /** Turn a held (or free) address into a binding and ACK it; NAK when someone else has it. */
  private async bind(ctx: Ctx, ip: string, phase: string): Promise<Reply | Refusal> {
    const store = this.o.leases as LeaseStore;
    const n = ipToInt(ip) ?? 0;
    const reservation = ctx.subnet.reservationsByMac.get(ctx.mac);
    if (!inSubnet(ctx.subnet.net, n)) return this.nak(ctx, `${ip} is not on ${ctx.subnet.cfg.cidr}`);
    if (reservation && reservation.ip !== ip) return this.nak(ctx, `client is reserved ${reservation.ip}`);
    if (!reservation && !this.inPool(ctx.subnet, n)) return this.nak(ctx, `${ip} is not in the pool`);
    const want = this.leaseFor(ctx, ip, "bound", reservation !== undefined);
    const held =
      (await store.update(ip, ctx.client, {
        state: "bound",
        expiresAt: want.expiresAt,
        hostname: want.hostname,
      })) || (await store.claim(want, ctx.now)) !== undefined;
    if (!held) return this.nak(ctx, `${ip} is held by another client`);
    ctx.subnet.taken.add(n);
    const boot = await this.bootFor(ctx, false);
    ctx.log.info({ ip, phase, boot: boot.kind }, "dhcp ack");
    return this.reply(ctx, MessageType.Ack, { yiaddr: ip, lease: true, boot, hostname: want.hostname });
  }

  /** The client took another server's offer: free the address we held for it. */
  private async releaseOffer(ctx: Ctx): Promise<void> {
    const store = this.o.leases as LeaseStore;
    for (const l of await store.findByClient(ctx.client)) {
      if (l.state === "offered")
        await store.update(l.ip, ctx.client, { state: "expired", expiresAt: ctx.now });
    }
  }

  private nak(ctx: Ctx, reason: string): Reply {
    ctx.log.info({ reason }, "dhcp nak");
    return this.reply(ctx, MessageType.Nak, {
      yiaddr: ZERO_IP,
      lease: false,
      boot: undefined,
      message: reason,
    });
  }

  /** RFC 2131 section 4.3.3: the address is in use on the wire; keep it out of the pool a while. */
  private async decline(ctx: Ctx): Promise<Refusal | undefined> {
    const { opts } = ctx;
    if (opts.serverId !== this.o.serverAddress)
      return new Refusal(`DECLINE for server ${opts.serverId ?? "none"}`);
    if (opts.requestedIp === undefined) return new Refusal("DECLINE without option 50");
    const until = new Date(ctx.now.getTime() + (this.o.declineHoldSeconds ?? 600) * 1000);
    const ok = await (this.o.leases as LeaseStore).decline(opts.requestedIp, ctx.client, until);
    if (!ok) return new Refusal(`DECLINE of ${opts.requestedIp}, which the client does not hold`);
    ctx.subnet.taken.add(ipToInt(opts.requestedIp) ?? 0);
    ctx.log.warn({ ip: opts.requestedIp, until: until.toISOString() }, "dhcp address declined");
    return undefined;
  }

  /** RFC 2131 section 4.3.4: the client gives the address back. */
  private async release(ctx: Ctx): Promise<Refusal | undefined> {
    const { msg, opts } = ctx;
    if (opts.serverId !== undefined && opts.serverId !== this.o.serverAddress) {
      return new Refusal(`RELEASE for server ${opts.serverId}`, "debug");
    }
    const released = await (this.o.leases as LeaseStore).update(msg.ciaddr, ctx.client, {
      state: "released",
      expiresAt: ctx.now,
    });
    if (!released) return new Refusal(`RELEASE of ${msg.ciaddr}, which the client does not hold`);
    ctx.subnet.taken.delete(ipToInt(msg.ciaddr) ?? 0);
    ctx.log.info({ ip: msg.ciaddr }, "dhcp release");
    return undefined;
  }

  /** RFC 2131 section 4.3.5: configuration for a client that has its address already. */
  private async inform(ctx: Ctx): Promise<Reply | Refusal> {
    if (ctx.msg.ciaddr === ZERO_IP) return new Refusal("INFORM without ciaddr");
    const boot = await this.bootFor(ctx, false);
    return this.reply(ctx, MessageType.Ack, { yiaddr: ZERO_IP, lease: false, boot });
  }

  // ---- proxy mode -----------------------------------------------------------------------

  /**
   * proxyDHCP (PXE 2.1 section 2.2.3, RFC 4578): another server hands out addresses; this one
   * answers PXE clients' DISCOVERs on port 67 with an OFFER carrying no address, only boot
   * options, and their REQUESTs on port 4011 with an ACK.
   */
  private async proxy(ctx: Ctx): Promise<Reply | Refusal> {
    const { opts } = ctx;
    const onBootPort = ctx.from.localPort !== undefined && ctx.from.localPort !== (this.o.port ?? 67);
    const userClasses = opts.userClass?.classes;
    if (!isPxeClient({ vendorClass: opts.vendorClass, userClasses })) {
      return new Refusal("proxy mode: not a PXE client", "debug");
    }
    let type: number;
    if (opts.messageType === MessageType.Discover && !onBootPort) type = MessageType.Offer;
    else if (
      opts.messageType === MessageType.Request &&
      (onBootPort || opts.serverId === this.o.serverAddress)
    ) {
      type = MessageType.Ack;
    } else if (opts.messageType === MessageType.Inform && onBootPort) type = MessageType.Ack;
    else return new Refusal("proxy mode: not a DISCOVER, or a REQUEST for this server", "debug");
    const boot = await this.bootFor(ctx, true);
    if (boot.kind === "none") return new Refusal(`proxy mode: ${boot.reason}`);
    ctx.log.info(
      { boot: boot.kind, file: boot.bootFile },
      type === MessageType.Offer ? "proxydhcp offer" : "proxydhcp ack",
    );
    return this.reply(ctx, type, { yiaddr: ZERO_IP, lease: false, boot, proxy: true });
  }

  // ---- replies --------------------------------------------------------------------------

  private reply(
    ctx: Ctx,
    type: number,
    r: {
      yiaddr: string;
      lease: boolean;
      boot: BootDecision | undefined;
      hostname?: string | null;
      message?: string;
      proxy?: boolean;
    },
  ): Reply {
    const { msg, opts, subnet } = ctx;
    const out = emptyMessage(BOOTREPLY);
    out.htype = msg.htype;
    out.hlen = msg.hlen;
    out.xid = msg.xid;
    out.flags = msg.flags;
    out.giaddr = msg.giaddr;
    out.chaddr = Buffer.from(msg.chaddr);
    // RFC 2131 table 3: ciaddr is echoed in ACKs to a client that has an address.
    if (type === MessageType.Ack && msg.ciaddr !== ZERO_IP) out.ciaddr = msg.ciaddr;
    out.yiaddr = r.yiaddr;
    const o = out.options;
    o.set(Opt.MessageType, write.u8(type));
    o.set(Opt.ServerId, write.ip(this.o.serverAddress));
    if (type === MessageType.Nak) {
      if (r.message) o.set(Opt.Message, write.str(r.message.slice(0, 250)));
    } else {
      if (r.lease) {
        // RFC 2132 sections 9.2, 9.11, 9.12: T1 = 0.5 and T2 = 0.875 of the lease by default.
        const secs = subnet.leaseSeconds;
        o.set(Opt.LeaseTime, write.u32(secs));
        o.set(Opt.RenewalTime, write.u32(Math.floor(secs * 0.5)));
        o.set(Opt.RebindingTime, write.u32(Math.floor(secs * 0.875)));
      }
      if (!r.proxy) {
        o.set(Opt.SubnetMask, write.u32(subnet.net.mask));
        o.set(Opt.BroadcastAddress, write.u32(subnet.net.broadcast));
        const c = subnet.cfg;
        if (c.routers?.length) o.set(Opt.Router, write.ips(c.routers));
        if (c.dnsServers?.length) o.set(Opt.DnsServers, write.ips(c.dnsServers));
        if (c.domainName) o.set(Opt.DomainName, write.str(c.domainName));
        if (r.hostname) o.set(Opt.Hostname, write.str(r.hostname));
      }
      const b = r.boot;
      if (b && b.kind !== "none") {
        if (b.nextServer) {
          out.siaddr = b.nextServer;
          o.set(Opt.TftpServer, write.str(b.nextServer));
        }
        // RFC 2132 section 9.5: the file field when it fits, option 67 in any case.
        if (Buffer.byteLength(b.bootFile, "latin1") < 128) out.file = b.bootFile;
        o.set(Opt.BootFile, write.str(b.bootFile));
        if (b.vendorClass) o.set(Opt.VendorClass, write.str(b.vendorClass));
        if (b.vendorSpecific) o.set(Opt.VendorSpecific, b.vendorSpecific);
        // PXE clients expect their machine identifier back (RFC 4578 section 2.3).
        const uuid = msg.options.get(Opt.ClientUuid);
        if (uuid && r.proxy) o.set(Opt.ClientUuid, uuid);
      }
    }
    // RFC 3046 section 2.2: relay agent information is echoed back unchanged, last.
    if (opts.relayAgentInfo) o.set(Opt.RelayAgentInfo, opts.relayAgentInfo);
    const dest = this.destination(ctx, type, out);
    return { msg: out, data: this.fit(ctx, out), ...dest };
  }

  /**
   * Encode a reply within what the client takes: RFC 2131 section 2 promises every client a
   * 576-octet datagram, 548 octets of DHCP message after the IP and UDP headers, and option
   * 57 (RFC 2132 section 9.10) may allow more. What does not fit loses the options a client
   * can do without, least needed first; the address, lease, server and boot file stay.
   */
  private fit(ctx: Ctx, out: DhcpMessage): Buffer {
    const limit = Math.max(MIN_DATAGRAM, ctx.opts.maxMessageSize ?? 0) - IP_UDP_HEADERS;
    let data = encode(out);
    const o = out.options;
    const bootFile = o.get(Opt.BootFile);
    // Option 67 only when the file field says the same (RFC 2132 section 9.5).
    const sameFile =
      bootFile !== undefined && out.file !== "" && Buffer.from(out.file, "latin1").equals(bootFile);
    for (const code of [...DROP_TO_FIT, ...(sameFile ? [Opt.BootFile] : [])]) {
      if (data.length <= limit) break;
      if (o.delete(code)) data = encode(out);
    }
    if (data.length > limit) {
      ctx.log.warn({ octets: data.length, limit }, "dhcp reply larger than the client takes; sent as it is");
    }
    return data;
  }

  /**
   * RFC 2131 section 4.1, "If the 'giaddr' field in a DHCP message from a client is non-zero,
   * the server sends any return messages to the 'DHCP server' port on the BOOTP relay agent
   * whose address appears in 'giaddr'. If the 'giaddr' field is zero and the 'ciaddr' field is
   * nonzero, then the server unicasts DHCPOFFER and DHCPACK messages to the address in
   * 'ciaddr'. If 'giaddr' is zero and 'ciaddr' is zero, and the broadcast bit is set, then the
   * server broadcasts DHCPOFFER and DHCPACK messages to 0xffffffff. If the broadcast bit is not
   * set and 'giaddr' is zero and 'ciaddr' is zero, then the server unicasts DHCPOFFER and
   * DHCPACK messages to the client's hardware address and 'yiaddr' address. In all cases, when
   * 'giaddr' is zero, the server broadcasts any DHCPNAK messages to 0xffffffff."
   *
   * The unicast to a hardware address needs an ARP entry the client does not have yet; Node
   * cannot write one, so those replies are broadcast, which every client accepts. A proxyDHCP
   * request on port 4011 is answered to where it came from (PXE 2.1 section 2.2.4).
   */
  private destination(ctx: Ctx, type: number, out: DhcpMessage): { address: string; port: number } {
    const { msg, from } = ctx;
    const clientPort = this.o.clientPort ?? 68;
    if (from.localPort !== undefined && from.localPort !== (this.o.port ?? 67) && from.address !== ZERO_IP) {
      return { address: from.address, port: from.port };
    }
    if (msg.giaddr !== ZERO_IP) {
      // RFC 2131 section 4.3.2: a NAK through a relay asks the relay to broadcast it.
      if (type === MessageType.Nak) out.flags |= FLAG_BROADCAST;
      return { address: msg.giaddr, port: this.o.port ?? 67 };
    }
    if (type === MessageType.Nak) return { address: BROADCAST_IP, port: clientPort };
    if (msg.ciaddr !== ZERO_IP) return { address: msg.ciaddr, port: clientPort };
    return { address: BROADCAST_IP, port: clientPort };
  }
}
