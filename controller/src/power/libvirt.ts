// Power through libvirt: the lab's "servers" are libvirt domains, and a host's guests could
// be driven the same way. Parameters: { uri, domain } - the libvirt connection URI (in the
// lab, qemu:///system?socket=<lab state dir>/libvirt/sock/libvirt-sock) and the domain name.
//
// The binding's errors carry only libvirt's message (no numeric code reaches JavaScript), so
// classifyLibvirtMessage() maps the messages libvirt is known to produce onto our codes.
import { Hypervisor, DomainState, type Domain } from "@unraid/libvirt";
import { z } from "zod";
import {
  PowerError,
  requireParams,
  type PowerAction,
  type PowerDriver,
  type PowerErrorCode,
  type PowerState,
  type ValidationResult,
} from "./driver.js";

export const libvirtPowerParams = z.strictObject({
  uri: z
    .string()
    .min(1)
    .max(1024)
    .regex(/^[a-z][a-z0-9+.-]*:\/\/\S*$/i, "must be a libvirt connection URI such as qemu:///system"),
  domain: z
    .string()
    .min(1)
    .max(200)
    // libvirt refuses '/' in names; control characters would only hide mistakes.
    .refine(isDomainName, "must be a libvirt domain name (no '/' or control characters)"),
});

function isDomainName(name: string): boolean {
  for (const ch of name) {
    const c = ch.codePointAt(0) ?? 0;
    if (ch === "/" || c < 0x20 || c === 0x7f) return false;
  }
  return true;
}

export type LibvirtPowerParams = z.infer<typeof libvirtPowerParams>;

/** The slice of a libvirt connection the driver uses; tests may supply their own. */
export interface LibvirtConnection {
  lookup(domain: string): Promise<LibvirtDomainHandle>;
  close(): Promise<void>;
}
export interface LibvirtDomainHandle {
  state(): Promise<DomainState>;
  start(): Promise<void>;
  destroy(): Promise<void>;
}
export type LibvirtConnect = (uri: string) => Promise<LibvirtConnection>;

export interface LibvirtPowerDriverOptions {
  connect?: LibvirtConnect;
  /** Upper bound for one action, connection included; a hung daemon becomes POWER_UNREACHABLE. */
  timeoutMs?: number;
}

const NOT_FOUND = [/^Domain not found/i, /no domain with matching/i];
const UNREACHABLE = [
  /Failed to connect socket/i,
  /Cannot recv data/i,
  /Cannot write data/i,
  /End of file while reading data/i,
  /Connection reset by peer/i,
  /Broken pipe/i,
  /client socket is closed/i,
  /no connection driver available/i,
  /unable to connect to server/i,
  /Connection refused/i,
  /not connected/i,
];
const ALREADY_RUNNING = /domain is already running/i;
const NOT_RUNNING = /domain is not running/i;

/** Maps a libvirt error message onto a power error code. */
export function classifyLibvirtMessage(message: string): PowerErrorCode {
  if (NOT_FOUND.some((re) => re.test(message))) return "POWER_TARGET_NOT_FOUND";
  if (UNREACHABLE.some((re) => re.test(message))) return "POWER_UNREACHABLE";
  return "POWER_ACTION_FAILED";
}

/** libvirt's domain state as a power state. */
export function powerStateOf(state: DomainState): PowerState {
  switch (state) {
    case DomainState.RUNNING:
    case DomainState.BLOCKED:
    case DomainState.PAUSED:
    case DomainState.SHUTDOWN: // shutting down: still drawing power
    case DomainState.PMSUSPENDED:
      return "on";
    case DomainState.SHUTOFF:
    case DomainState.CRASHED:
      return "off";
    default:
      return "unknown";
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const connectWithBinding: LibvirtConnect = async (uri) => {
  const hv = new Hypervisor({ uri });
  await hv.connectOpen();
  return {
    async lookup(name) {
      const dom: Domain = await hv.domainLookupByName(name);
      return {
        state: async () => (await dom.getInfo()).state,
        start: () => dom.create(),
        destroy: () => dom.destroy(),
      };
    },
    close: () => hv.connectClose(),
  };
};

export class LibvirtPowerDriver implements PowerDriver<LibvirtPowerParams> {
  readonly name = "libvirt";
  readonly #connect: LibvirtConnect;
  readonly #timeoutMs: number;

  constructor(options: LibvirtPowerDriverOptions = {}) {
    this.#connect = options.connect ?? connectWithBinding;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
  }

  validate(params: unknown): ValidationResult<LibvirtPowerParams> {
    const r = libvirtPowerParams.safeParse(params);
    if (r.success) return { ok: true, params: r.data };
    return {
      ok: false,
      error: new PowerError("POWER_BAD_PARAMS", `libvirt power parameters: ${z.prettifyError(r.error)}`, {
        details: { driver: this.name, issues: r.error.issues },
      }),
    };
  }

  on(params: unknown): Promise<void> {
    return this.#withDomain("on", params, async (dom) => {
      if (powerStateOf(await dom.state()) === "on") return;
      await ignoring(ALREADY_RUNNING, dom.start());
    });
  }

  off(params: unknown): Promise<void> {
    return this.#withDomain("off", params, async (dom) => {
      await ignoring(NOT_RUNNING, dom.destroy());
    });
  }

  cycle(params: unknown): Promise<void> {
    return this.#withDomain("cycle", params, async (dom) => {
      await ignoring(NOT_RUNNING, dom.destroy());
      await ignoring(ALREADY_RUNNING, dom.start());
    });
  }

  status(params: unknown): Promise<PowerState> {
    return this.#withDomain("status", params, async (dom) => powerStateOf(await dom.state()));
  }

  async #withDomain<T>(
    action: PowerAction,
    params: unknown,
    body: (dom: LibvirtDomainHandle) => Promise<T>,
  ): Promise<T> {
    const { uri, domain } = requireParams(this, params);
    const details = { driver: this.name, action, uri, domain };
    let timer: NodeJS.Timeout | undefined;
    const work = (async () => {
      const conn = await this.#connect(uri);
      try {
        return await body(await conn.lookup(domain));
      } finally {
        await conn.close().catch(() => undefined);
      }
    })();
    // After a timeout the work goes on and closes its own connection; its outcome is dropped.
    work.catch(() => undefined);
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new PowerError(
              "POWER_UNREACHABLE",
              `libvirt ${action} ${domain}: no answer from ${uri} within ${this.#timeoutMs} ms`,
              {
                details,
              },
            ),
          ),
        this.#timeoutMs,
      );
    });
    try {
      return await Promise.race([work, timeout]);
    } catch (err) {
      if (err instanceof PowerError) throw err;
      const message = messageOf(err);
      throw new PowerError(
        classifyLibvirtMessage(message),
        `libvirt ${action} ${domain} at ${uri}: ${message}`,
        { cause: err, details },
      );
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Awaits p, treating a libvirt error that matches `harmless` as success. */
async function ignoring(harmless: RegExp, p: Promise<void>): Promise<void> {
  try {
    await p;
  } catch (err) {
    if (!harmless.test(messageOf(err))) throw err;
  }
}
