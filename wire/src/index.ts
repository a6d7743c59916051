// The wire contract shared by the controller, the `weft` CLI and the agent: zod schemas and
// the types inferred from them. Nothing here may depend on express or Prisma (the agent ships
// inside the boot images).
export * from "./errors.js";
export * from "./api.js";
export * from "./images.js";
export * from "./agent.js";
export * from "./qemu-img.js";
