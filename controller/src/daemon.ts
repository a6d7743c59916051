// The controller daemon: opens and migrates the store, makes sure an admin token exists, and
// serves the API on TCP and on a unix socket. Receives its configuration; reads no env.
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import type { Config } from "./config.js";
import type { Logger } from "./log.js";
import { WeftError } from "./errors.js";
import { createApp } from "./api/app.js";
import { createMetrics } from "./api/metrics.js";
import type { ApiContext } from "./api/context.js";
import { ensureAdminToken, writeAdminToken } from "./auth/tokens.js";
import { defaultMigrationsDir, openDb, type Db } from "./store/db.js";
import { migrateSqlite } from "./store/migrate.js";
import { Store } from "./store/store.js";
import { VERSION } from "./version.js";
import { Images } from "./images/images.js";
import { Agents } from "./machines/agents.js";
import { Lifecycle } from "./machines/lifecycle.js";
import { startNetboot } from "./netboot/services.js";
import { createGuestSubsystem } from "./guests/index.js";
import { defaultPowerDrivers, type PowerDriverRegistry } from "./power/index.js";

export interface Daemon {
  readonly listeners: string[];
  /** The TCP port actually bound (useful with port 0). */
  readonly port: number;
  stop(): Promise<void>;
}

export interface DaemonOptions {
  migrationsDir?: string;
  /** Power drivers by name; default: libvirt. */
  power?: PowerDriverRegistry;
  rotateAdminToken?: boolean;
}

export async function startDaemon(config: Config, log: Logger, opts: DaemonOptions = {}): Promise<Daemon> {
  fs.mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const migrated = migrateSqlite(config.databaseUrl, opts.migrationsDir ?? defaultMigrationsDir);
  if (migrated.applied.length) log.info({ applied: migrated.applied }, "applied database migrations");

  const db = openDb(config.databaseUrl);
  const closers: (() => Promise<void>)[] = [() => db.$disconnect()];
  try {
    await checkDatabase(db, config.databaseUrl);
    const store = new Store(db);
    if (opts.rotateAdminToken) {
      await writeAdminToken(db, store, config.tokenFile, true);
      log.info({ tokenFile: config.tokenFile }, "rotated the admin token");
    } else {
      await ensureAdminToken(db, store, config.tokenFile, log);
    }

    const lifecycle = new Lifecycle(db, store, log, undefined, config.stateTimeouts);
    const abort = new AbortController();
    const images = new Images(db, store, config.imagesDir);
    const guests = createGuestSubsystem({ db, store, images, log, dataDir: config.dataDir });
    closers.unshift(() => guests.close());
    const ctx: ApiContext = {
      db,
      store,
      images,
      lifecycle,
      agents: new Agents(
        db,
        store,
        lifecycle,
        config.bootUrl,
        guests.hostSetup,
        config.hostKernelArgs.split(" ").filter((w) => w !== ""),
      ),
      power: opts.power ?? defaultPowerDrivers(),
      log,
      metrics: createMetrics(),
      version: VERSION,
      startedAt: new Date(),
      listeners: [],
      migrations: migrated.total,
      shutdown: abort.signal,
    };
    const app = createApp(ctx, guests.service, {
      bootUrl: config.bootUrl,
      ipxeDir: config.ipxeDir,
      kernelImage: "maintenance-kernel",
      initrdImage: "maintenance-initrd",
      cmdline: config.maintenanceCmdline,
    });

    const tcp = http.createServer(app);
    const [host, portText] = splitHostPort(config.listen);
    await listen(tcp, { host, port: Number(portText) });
    closers.unshift(() => closeServer(tcp));
    const addr = tcp.address() as net.AddressInfo;
    ctx.listeners.push(`http://${addr.family === "IPv6" ? `[${addr.address}]` : addr.address}:${addr.port}`);

    const unix = http.createServer(app);
    await listenUnix(unix, config.socket);
    closers.unshift(async () => {
      await closeServer(unix);
      fs.rmSync(config.socket, { force: true });
    });
    ctx.listeners.push(`unix:${config.socket}`);
    closers.unshift(async () => abort.abort());

    const netboot = await startNetboot(config, db, log);
    closers.unshift(() => netboot.stop());
    ctx.listeners.push(...netboot.listeners);

    // Finishes guest work a host could not do at the time (deletes, orphan overlays).
    guests.startCleanup(60_000, abort.signal);

    // Waiting states have deadlines; a machine past its deadline fails with the reason.
    const sweeper = setInterval(() => {
      lifecycle.sweepTimeouts().catch((err: unknown) => log.warn({ err }, "timeout sweep failed"));
    }, 5000);
    closers.unshift(async () => clearInterval(sweeper));

    log.info(
      { listeners: ctx.listeners, version: VERSION, database: redactUrl(config.databaseUrl) },
      "controller started",
    );
    await store.recordEvent({
      subjectType: "controller",
      actor: "controller",
      message: `controller ${VERSION} started`,
    });

    let stopping: Promise<void> | undefined;
    return {
      listeners: ctx.listeners,
      port: addr.port,
      stop: () => (stopping ??= runClosers(closers)),
    };
  } catch (err) {
    await runClosers(closers);
    throw err;
  }
}

async function runClosers(closers: (() => Promise<void>)[]): Promise<void> {
  for (const close of closers) await close().catch(() => undefined);
}

/** A file that is not a database fails here, with a clear message, before anything serves. */
async function checkDatabase(db: Db, url: string): Promise<void> {
  try {
    await db.$queryRawUnsafe("SELECT count(*) FROM _prisma_migrations");
  } catch (err) {
    throw new WeftError(
      "unavailable",
      "DB_UNUSABLE",
      `database ${redactUrl(url)} is not usable: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}

function redactUrl(url: string): string {
  return url.replace(/\/\/([^:/@]+):[^@]*@/, "//$1:***@");
}

function splitHostPort(s: string): [string, string] {
  const i = s.lastIndexOf(":");
  return [s.slice(0, i).replace(/^\[|\]$/g, ""), s.slice(i + 1)];
}

function listen(server: http.Server, opts: net.ListenOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      reject(
        new WeftError(
          "unavailable",
          "LISTEN_FAILED",
          `cannot listen on ${opts.path ?? `${opts.host}:${opts.port}`}: ${err.code ?? err.message}`,
          {
            cause: err,
          },
        ),
      ),
    );
    server.listen(opts, () => resolve());
  });
}

/** Listens on a unix socket, replacing a stale one but never one a live controller holds. */
async function listenUnix(server: http.Server, socket: string): Promise<void> {
  fs.mkdirSync(path.dirname(socket), { recursive: true, mode: 0o755 });
  if (fs.existsSync(socket)) {
    const alive = await new Promise<boolean>((resolve) => {
      const c = net.connect(socket, () => {
        c.destroy();
        resolve(true);
      });
      c.on("error", () => resolve(false));
    });
    if (alive) throw new WeftError("conflict", "SOCKET_IN_USE", `another controller is serving on ${socket}`);
    fs.rmSync(socket, { force: true });
  }
  await listen(server, { path: socket });
  // Owner and group only; the token is still required on every request.
  fs.chmodSync(socket, 0o660);
}

function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
    // Event streams never go idle; give them a moment to end on the abort, then cut them.
    setTimeout(() => server.closeAllConnections(), 1000).unref();
  });
}
