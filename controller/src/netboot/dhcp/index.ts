// Weft's DHCPv4 server: codec, boot policy, lease stores, machine hooks and the listener.
export * from "./errors.js";
export * from "./ip.js";
export * from "./options.js";
export * from "./options-pxe.js";
export * from "./codec.js";
export * from "./policy.js";
export * from "./lease-store.js";
export * from "./lease-store-prisma.js";
export * from "./machines.js";
export * from "./machines-prisma.js";
export * from "./server.js";
