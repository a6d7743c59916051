import type { Command } from "commander";
import type { VersionView } from "@weft/wire";
import { VERSION } from "../../version.js";
import { CliError } from "../client.js";
import { type CliContext, withOutput } from "../context.js";
import { render } from "../output.js";

export function register(program: Command, ctx: CliContext): void {
  withOutput(program.command("version").description("show the CLI's and the controller's versions")).action(
    async (_o, cmd: Command) => {
      let server: VersionView | { error: string };
      try {
        server = await ctx.client().get<VersionView>("/v1/version");
      } catch (err) {
        server = { error: err instanceof CliError ? err.message : String(err) };
      }
      const data = { client: { version: VERSION, node: process.version }, controller: server };
      const rows = [
        { part: "client", version: VERSION },
        {
          part: "controller",
          version: "version" in server ? server.version : `unavailable (${server.error})`,
        },
      ];
      ctx.out(
        render(ctx.format(cmd), data, rows, [
          { header: "PART", get: (r) => r.part },
          { header: "VERSION", get: (r) => r.version },
        ]),
      );
    },
  );
}
