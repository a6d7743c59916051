// A small DHCP client for tests and the load generator: one UDP socket on port 68, many
// exchanges in flight, replies matched by xid and chaddr. It sets the broadcast flag so every
// server answers by broadcast (there is no ARP entry for the made-up MACs it uses).
import dgram from "node:dgram";
import { once } from "node:events";
import {
  decodeRequest,
  FLAG_BROADCAST,
  type ClientOptions,
  type DhcpMessage,
} from "../src/netboot/dhcp/codec.js";
import { DhcpDecodeError } from "../src/netboot/dhcp/errors.js";
import { encode } from "../src/netboot/dhcp/codec.js";
import { formatMac } from "../src/netboot/dhcp/ip.js";
import { MessageType, Opt, write } from "../src/netboot/dhcp/options.js";
import { clientMessage, type ClientMessage } from "./dhcp-helpers.js";

export interface Received {
  msg: DhcpMessage;
  opts: ClientOptions;
}

export interface ClientSocketOptions {
  /** Local port; default 68. */
  port?: number;
  /** Where requests go; default 255.255.255.255:67. */
  server?: string;
  serverPort?: number;
}

export class DhcpTestClient {
  private readonly waiting = new Map<
    string,
    { wants: (t: number | undefined) => boolean; resolve: (r: Received) => void }
  >();
  private xidNext = (Math.random() * 0xffffffff) >>> 0;

  private constructor(
    private readonly sock: dgram.Socket,
    private readonly server: string,
    private readonly serverPort: number,
  ) {
    sock.on("message", (buf) => {
      let r: Received;
      try {
        r = decodeRequest(buf);
      } catch (e) {
        if (e instanceof DhcpDecodeError) return;
        throw e;
      }
      const key = `${r.msg.xid}/${formatMac(r.msg.chaddr)}`;
      const w = this.waiting.get(key);
      // A DISCOVER and its REQUEST share an xid, and a broadcast reply can arrive more than
      // once (one copy per interface): only the reply type the request calls for counts.
      if (w && w.wants(r.opts.messageType)) {
        this.waiting.delete(key);
        w.resolve(r);
      }
    });
  }

  static async open(o: ClientSocketOptions = {}): Promise<DhcpTestClient> {
    const sock = dgram.createSocket({ type: "udp4", reuseAddr: true });
    sock.bind(o.port ?? 68, "0.0.0.0");
    await once(sock, "listening");
    sock.setBroadcast(true);
    sock.setRecvBufferSize(8 << 20);
    sock.setSendBufferSize(8 << 20);
    return new DhcpTestClient(sock, o.server ?? "255.255.255.255", o.serverPort ?? 67);
  }

  nextXid(): number {
    this.xidNext = (this.xidNext + 1) >>> 0;
    return this.xidNext;
  }

  /** Send and wait for the reply with the same xid and chaddr; retransmit on silence. */
  async exchange(
    c: ClientMessage,
    opts: { timeoutMs?: number; tries?: number; to?: { address: string; port: number } } = {},
  ): Promise<Received | undefined> {
    const m = clientMessage({ flags: FLAG_BROADCAST, ...c, xid: c.xid ?? this.nextXid() });
    const data = encode(m);
    const key = `${m.xid}/${c.mac}`;
    const tries = opts.tries ?? 3;
    for (let t = 0; t < tries; t++) {
      const got = new Promise<Received | undefined>((resolve) => {
        const timer = setTimeout(() => {
          this.waiting.delete(key);
          resolve(undefined);
        }, opts.timeoutMs ?? 1000);
        this.waiting.set(key, {
          wants: (type) =>
            c.type === MessageType.Discover
              ? type === MessageType.Offer
              : type === MessageType.Ack || type === MessageType.Nak,
          resolve: (r) => {
            clearTimeout(timer);
            resolve(r);
          },
        });
      });
      this.sock.send(data, opts.to?.port ?? this.serverPort, opts.to?.address ?? this.server);
      const r = await got;
      if (r) return r;
    }
    return undefined;
  }

  /** Send without waiting (DECLINE, RELEASE). */
  send(c: ClientMessage): void {
    this.sock.send(encode(clientMessage({ xid: this.nextXid(), ...c })), this.serverPort, this.server);
  }

  /** DISCOVER, OFFER, REQUEST, ACK. Returns the ACK (or NAK), or undefined on silence. */
  async lease(
    mac: string,
    opts: { timeoutMs?: number; tries?: number; options?: [number, Buffer][] } = {},
  ): Promise<{ offer: Received; ack: Received } | undefined> {
    const xid = this.nextXid();
    const offer = await this.exchange(
      { type: MessageType.Discover, mac, xid, options: opts.options ?? [] },
      opts,
    );
    if (!offer || offer.opts.messageType !== MessageType.Offer || offer.opts.serverId === undefined)
      return undefined;
    const ack = await this.exchange(
      {
        type: MessageType.Request,
        mac,
        xid,
        options: [
          [Opt.RequestedIp, write.ip(offer.msg.yiaddr)],
          [Opt.ServerId, write.ip(offer.opts.serverId)],
          ...(opts.options ?? []),
        ],
      },
      opts,
    );
    return ack ? { offer, ack } : undefined;
  }

  close(): void {
    this.sock.close();
  }
}
