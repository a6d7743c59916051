// Which database a datasource URL names, and how the engine reaches it. A provider supplies
// the driver adapter factory the wasm engine works through, plus what the wasm engine lacks
// or gets wrong for that database. PostgreSQL slots in here as a second provider built on
// @prisma/adapter-pg (with its own shadow-database factory and a text view of "char" columns).
import { sqlite } from "./sqlite.mjs";
import { UserFacingError } from "./errors.mjs";

/** @typedef {{ url: string, shadowDatabaseUrl?: string }} Datasource */
/**
 * @typedef {object} Provider
 * @property {string} name
 * @property {(url: string) => boolean} matches
 * @property {(url: string) => Promise<void>} checkConnection throws P1003 when the database does not exist
 * @property {(url: string) => Promise<string>} createDatabase returns the database name
 * @property {(datasource: Datasource) => import("@prisma/driver-adapter-utils").SqlMigrationAwareDriverAdapterFactory} adapterFactory
 * @property {Record<string, Override>} [overrides] replacements for engine methods the wasm engine
 *   gets wrong for this database, by JSON-RPC method name
 */
/**
 * @callback Override
 * @param {{ engine: import("@prisma/schema-engine-wasm").SchemaEngine,
 *   connection: import("@prisma/driver-adapter-utils").SqlDriverAdapter, params: any }} call
 *   `connection` is the engine's own connection to the main database
 * @returns {Promise<unknown>}
 */

/** @type {Provider[]} */
const providers = [sqlite];

/** @param {string} url */
export function providerFor(url) {
  const provider = providers.find((p) => p.matches(url));
  if (provider) return provider;
  const scheme = /^[a-z+]+:/i.exec(url)?.[0] ?? url.slice(0, 12);
  throw new UserFacingError(
    null,
    `This schema engine does not support \`${scheme}\` datasource URLs yet (supported: ${providers
      .map((p) => p.name)
      .join(", ")}).`,
  );
}
