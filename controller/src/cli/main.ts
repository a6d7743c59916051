#!/usr/bin/env node
// weft: the operator CLI. kubectl-like: data on stdout, diagnostics on stderr; exit 1 when the
// controller refuses, 2 on a usage error, 3 when the controller cannot be reached.
import { Command, CommanderError } from "commander";
import { VERSION } from "../version.js";
import { CliError, EXIT } from "./client.js";
import { createContext } from "./context.js";
import { register as status } from "./commands/status.js";
import { register as version } from "./commands/version.js";
import { register as events } from "./commands/events.js";
import { register as machinesList } from "./commands/machines-list.js";
import { register as machinesShow } from "./commands/machines-show.js";
import { register as machinesActions } from "./commands/machines-actions.js";
import { register as images } from "./commands/images.js";
import { register as roles } from "./commands/roles.js";
import { register as guests } from "./commands/guests.js";
import { register as hosts } from "./commands/hosts.js";

const program = new Command("weft")
  .description(`Weft operator CLI ${VERSION}`)
  .option("--url <url>", "controller API URL (env WEFT_URL); default: the local unix socket")
  .option("--socket <path>", "controller unix socket (env WEFT_SOCKET; default /run/weft/weft.sock)")
  .option(
    "--token-file <path>",
    "operator token file (env WEFT_TOKEN_FILE; default /var/lib/weft/admin.token)",
  )
  .exitOverride()
  .showHelpAfterError()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

const ctx = createContext(program, process.env);
status(program, ctx);
version(program, ctx);
events(program, ctx);
const machines = program
  .command("machines")
  .alias("machine")
  .description("machines: list, show, deploy, release, retry, power");
machinesList(machines, ctx);
machinesShow(machines, ctx);
machinesActions(machines, ctx);
images(program, ctx);
roles(program, ctx);
guests(program, ctx);
hosts(program, ctx);
const all = (c: Command): Command[] => [c, ...c.commands.flatMap(all)];
for (const c of all(program)) c.exitOverride();

try {
  await program.parseAsync();
} catch (err) {
  if (err instanceof CommanderError) {
    // --help and --version exit 0; every other parse problem is a usage error.
    process.exitCode = err.exitCode === 0 ? EXIT.ok : EXIT.usage;
  } else if (err instanceof CliError) {
    process.stderr.write(`weft: ${err.message}\n`);
    process.exitCode = err.exitCode;
  } else {
    process.stderr.write(`weft: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = EXIT.failure;
  }
}
