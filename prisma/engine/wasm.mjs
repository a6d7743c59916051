// Loads @prisma/schema-engine-wasm by hand. Its entry point imports the .wasm file as an ES
// module, which Node 20 only allows behind --experimental-wasm-modules; instantiating the
// module ourselves and handing it to the generated bindings avoids that flag.
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

/** @typedef {typeof import("@prisma/schema-engine-wasm")} Bindings */

/** @type {Promise<Bindings> | undefined} */
let loaded;

/** @returns {Promise<Bindings>} */
export function loadWasmEngine() {
  loaded ??= (async () => {
    const bindingsPath = require.resolve("@prisma/schema-engine-wasm/schema_engine_bg");
    /** @type {Bindings & { __wbg_set_wasm(exports: WebAssembly.Exports): void }} */
    const bindings = await import(bindingsPath);
    const bytes = await readFile(bindingsPath.replace(/\.js$/, ".wasm"));
    // The module imports every glue function from the bindings file under this name.
    const { instance } = await WebAssembly.instantiate(bytes, { "./schema_engine_bg.js": bindings });
    bindings.__wbg_set_wasm(instance.exports);
    /** @type {() => void} */ (instance.exports["__wbindgen_start"])();
    return bindings;
  })();
  return loaded;
}
