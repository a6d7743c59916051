// A stand-in for Prisma's native schema engine, which the CLI would download from a host these
// machines cannot reach. The CLI starts it (PRISMA_SCHEMA_ENGINE_BINARY, set in
// prisma.config.ts) in one of three ways, and each is answered the way the native engine does:
//
//   schema-engine --version                       one line on stdout: `schema-engine-cli <hash>`
//   schema-engine --datasource JSON cli COMMAND   can-connect-to-database | create-database;
//                                                 failures as JSON log lines on stderr, exit 1
//   schema-engine [--datamodels PATH]... [--datasource JSON]
//                                                 JSON-RPC 2.0, one message per line on stdin and
//                                                 stdout, until stdin closes
//
// Every RPC method is handed to @prisma/schema-engine-wasm, which works through a driver adapter
// chosen by the datasource URL (providers.mjs).
import { readFile } from "node:fs/promises";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { bindMigrationAwareSqlAdapterFactory } from "@prisma/driver-adapter-utils";
import { UserFacingError, rpcError } from "./errors.mjs";
import { providerFor } from "./providers.mjs";
import { loadWasmEngine } from "./wasm.mjs";

/** @typedef {import("./providers.mjs").Datasource} Datasource */
/** @typedef {import("@prisma/driver-adapter-utils").SqlDriverAdapter} SqlDriverAdapter */

/**
 * The CLI reads stderr as JSON log lines (it keeps their messages for error reports).
 * @param {"INFO" | "ERROR"} level
 * @param {string} message
 * @param {Record<string, unknown>} [fields]
 */
function log(level, message, fields = {}) {
  const target = level === "ERROR" ? "schema_engine::logger" : "schema_engine_cli";
  process.stderr.write(JSON.stringify({ level, fields: { message, ...fields }, target }) + "\n");
}

/** @param {unknown} error */
function describe(error) {
  return error instanceof Error ? error.message : String(error);
}

const { values: args, positionals } = parseArgs({
  options: {
    datasource: { type: "string" },
    datamodels: { type: "string", multiple: true },
    version: { type: "boolean", short: "V" },
  },
  allowPositionals: true,
  // Preview features and extension types are accepted and ignored, as the wasm engine has no use for them.
  strict: false,
});

/** @type {Datasource | undefined} */
const datasource = typeof args.datasource === "string" ? JSON.parse(args.datasource) : undefined;

if (args.version) {
  // The CLI shows this in `prisma version`; the hash is the engine commit the wasm was built from.
  const { version } = await loadWasmEngine();
  process.stdout.write(`schema-engine-cli ${version()}\n`);
} else if (positionals[0] === "cli") {
  process.exitCode = await runCliCommand(positionals[1]);
} else {
  await serveRpc();
}

/**
 * @param {string | undefined} command
 * @returns {Promise<number>} exit code
 */
async function runCliCommand(command) {
  // The CLI skips the first stderr line before it looks for the error, as the native engine
  // always starts with this one.
  log("INFO", "Starting schema engine CLI");
  try {
    if (!datasource?.url) throw new UserFacingError(null, "The datasource URL is missing (--datasource).");
    const provider = providerFor(datasource.url);
    if (command === "can-connect-to-database") await provider.checkConnection(datasource.url);
    else if (command === "create-database") await provider.createDatabase(datasource.url);
    else throw new UserFacingError(null, `Unsupported schema engine command: cli ${command ?? "(none)"}`);
    return 0;
  } catch (error) {
    const code = error instanceof UserFacingError ? error.code : null;
    log("ERROR", describe(error), code ? { error_code: code } : {});
    return 1;
  }
}

async function serveRpc() {
  /** @type {ReturnType<typeof start> | undefined} */
  let started;
  // The wasm engine needs an adapter even for commands that touch no database (a diff between
  // two schema files); without a datasource an in-memory SQLite database serves.
  const url = datasource?.url ?? "file::memory:";

  const start = async () => {
    const provider = providerFor(url);
    const factory = provider.adapterFactory({ ...(datasource ?? {}), url });
    // Keep the engine's own connection to the main database: the provider's replacements for
    // engine methods must work on it (SQLite: the engine may hold an exclusive lock).
    /** @type {SqlDriverAdapter | undefined} */
    let connection;
    const adapter = bindMigrationAwareSqlAdapterFactory({
      provider: factory.provider,
      adapterName: factory.adapterName,
      connect: async () => (connection = await factory.connect()),
      connectToShadowDb: () => factory.connectToShadowDb(),
    });
    const datamodels = await Promise.all(
      /** @type {string[]} */ (args.datamodels ?? []).map(
        async (file) => /** @type {[string, string]} */ ([file, await readFile(file, "utf8")]),
      ),
    );
    const { SchemaEngine } = await loadWasmEngine();
    // `datamodels` must be undefined or non-empty. The callback receives the engine's log
    // lines, already JSON, which is what the CLI expects on stderr.
    const engine = await SchemaEngine.new(
      { datamodels: datamodels.length > 0 ? datamodels : undefined },
      (/** @type {string} */ line) => process.stderr.write(line + "\n"),
      adapter,
    ).catch((error) => {
      throw originalError(error, adapter.errorRegistry);
    });
    // The engine connects while it is constructed.
    if (!connection) throw new Error("The schema engine did not connect to the database.");
    return { engine, provider, connection, errors: adapter.errorRegistry };
  };

  /** @param {unknown} message */
  const send = (message) => process.stdout.write(JSON.stringify(message) + "\n");

  // Requests the engine sends to the CLI (only `print`), waiting for its acknowledgement.
  /** @type {Map<string, () => void>} */
  const awaitingCli = new Map();
  let printed = 0;
  /** @param {string} content */
  const print = (content) =>
    new Promise((resolve) => {
      const id = `print-${++printed}`;
      awaitingCli.set(id, () => resolve(undefined));
      send({ jsonrpc: "2.0", id, method: "print", params: { content } });
    });

  /**
   * @param {string} method
   * @param {any} params
   */
  const call = async (method, params) => {
    started ??= start();
    const { engine, provider, connection, errors } = await started;
    try {
      const override = provider.overrides?.[method];
      if (override) return await override({ engine, connection, params });
      switch (method) {
        case "getDatabaseVersion":
          return await engine.version(params ?? null);
        case "createDatabase":
          return { databaseName: await provider.createDatabase(params?.datasource?.url ?? url) };
        case "diff": {
          // The native engine prints the diff through the CLI (a `print` request) and returns no
          // text; the CLI writes nothing of the result itself.
          const result = await engine.diff(params);
          if (result.stdout) await print(result.stdout.replace(/\n$/, ""));
          return { exitCode: result.exitCode, stdout: null };
        }
      }
      const handler = /** @type {Record<string, unknown>} */ (/** @type {unknown} */ (engine))[method];
      if (typeof handler !== "function")
        throw new UserFacingError(null, `Unknown schema engine method: ${method}`);
      // Called on the engine itself: the bindings read the instance pointer from `this`.
      return await handler.call(engine, params);
    } catch (error) {
      throw originalError(error, errors);
    }
  };

  // One call at a time: the wasm engine is single-threaded and the CLI never overlaps calls.
  let queue = Promise.resolve();
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  lines.on("line", (line) => {
    if (!line.trim()) return;
    /** @type {{ id?: string | number, method?: string, params?: unknown }} */
    let message;
    try {
      message = JSON.parse(line);
    } catch {
      send({ jsonrpc: "2.0", id: null, error: { code: -32700, message: "Parse error" } });
      return;
    }
    const { id, method, params } = message;
    if (method === undefined) {
      awaitingCli.get(String(id))?.();
      awaitingCli.delete(String(id));
      return;
    }
    queue = queue.then(async () => {
      try {
        const result = await call(method, params);
        send({ jsonrpc: "2.0", id, result: result ?? {} });
      } catch (error) {
        log("ERROR", describe(error));
        send({ jsonrpc: "2.0", id, error: rpcError(error) });
      }
    });
  });
  await new Promise((resolve) => lines.on("close", () => resolve(undefined)));
  // A CLI that went away will not acknowledge what we printed.
  for (const acknowledged of awaitingCli.values()) acknowledged();
  await queue;
  // Driver pools (PostgreSQL) keep timers alive; the CLI waits for this process to exit.
  process.exit(0);
}

/**
 * An exception thrown by JavaScript code under the adapter (a provider's own check, a driver
 * failure) reaches us from the engine as "External error id#N"; the adapter binding kept the
 * original, whose message is the one worth showing.
 * @param {unknown} error
 * @param {import("@prisma/driver-adapter-utils").ErrorRegistry} registry
 */
function originalError(error, registry) {
  const id = /External error id#(\d+)/.exec(describe(error))?.[1];
  return (id === undefined ? undefined : registry.consumeError(Number(id)))?.error ?? error;
}
