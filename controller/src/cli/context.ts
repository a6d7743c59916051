import type { Command } from "commander";
import { Client, CliError, EXIT, readToken } from "./client.js";
import { FORMATS, type Format } from "./output.js";

/** What every subcommand gets: the controller client, the output format, stdout. */
export interface CliContext {
  client(): Client;
  format(cmd: Command): Format;
  out(text: string): void;
  err(text: string): void;
  env: NodeJS.ProcessEnv;
}

export function createContext(program: Command, env: NodeJS.ProcessEnv): CliContext {
  let client: Client | undefined;
  return {
    env,
    client() {
      if (client) return client;
      const o = program.opts<{ url?: string; socket?: string; tokenFile?: string }>();
      const explicitTokenFile = o.tokenFile ?? env["WEFT_TOKEN_FILE"];
      const token =
        env["WEFT_TOKEN"] ??
        readToken(explicitTokenFile ?? "/var/lib/weft/admin.token", explicitTokenFile !== undefined);
      client = new Client({
        url: o.url ?? env["WEFT_URL"],
        socket: o.socket ?? env["WEFT_SOCKET"] ?? "/run/weft/weft.sock",
        token,
      });
      return client;
    },
    format(cmd) {
      const f = (cmd.opts<{ output?: string }>().output ?? "table") as Format;
      if (!FORMATS.includes(f))
        throw new CliError(`unknown output format ${f}; use one of ${FORMATS.join(", ")}`, EXIT.usage);
      return f;
    },
    out: (t) => void process.stdout.write(t),
    err: (t) => void process.stderr.write(t),
  };
}

/** Adds -o/--output to a subcommand. */
export function withOutput(cmd: Command): Command {
  return cmd.option("-o, --output <format>", `output format: ${FORMATS.join("|")}`, "table");
}
