// The lab as a library, for tests and the nightly provisioning run.
export * from "./accel.js";
export * from "./config.js";
export * from "./domain-xml.js";
export * from "./errors.js";
export * from "./exec.js";
export * from "./lab.js";
export * from "./procs.js";
export * from "./register.js";
export * from "./state.js";
export * from "./timeline.js";
export type { ControllerStart } from "./controller.js";
export { startController, controllerArgs } from "./controller.js";
