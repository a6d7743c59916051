// The machine lifecycle as data. Every change goes through Lifecycle.fire(), which checks the
// edge here, records an event, and sets the deadline of the state it enters.
import type { MachineState } from "@weft/wire";

export type Trigger =
  | "boot"
  | "enlisted"
  | "deploy"
  | "installed"
  | "host-registered"
  | "release"
  | "wiped"
  | "fail"
  | "timeout"
  | "retry";

export interface StateInfo {
  /** What the machine is doing or waiting for. */
  doc: string;
  /** Seconds the machine may wait here before it fails with a timeout; null: it may rest. */
  timeoutSeconds: number | null;
  /** What the machine's HTTP boot script makes it boot. */
  boots: "maintenance" | "local-disk";
}

export const STATES: Record<MachineState, StateInfo> = {
  discovered: {
    doc: "seen on the network (DHCP) or registered by an operator",
    timeoutSeconds: null,
    boots: "maintenance",
  },
  enlisting: {
    doc: "maintenance OS booted; waiting for the agent's inventory",
    timeoutSeconds: 600,
    boots: "maintenance",
  },
  ready: { doc: "inventory known; waiting for an operator", timeoutSeconds: null, boots: "maintenance" },
  deploying: {
    doc: "agent partitions the disk and writes the host image",
    timeoutSeconds: 1800,
    boots: "maintenance",
  },
  rebooting: {
    doc: "image written; waiting for the host OS agent to register",
    timeoutSeconds: 600,
    boots: "local-disk",
  },
  "host-ready": {
    doc: "host agent registered; libvirt reachable",
    timeoutSeconds: null,
    boots: "local-disk",
  },
  releasing: {
    doc: "maintenance OS wipes the disk before the machine is ready again",
    timeoutSeconds: 1200,
    boots: "maintenance",
  },
  failed: {
    doc: "stopped with last_error; an operator retries or releases it",
    timeoutSeconds: null,
    boots: "maintenance",
  },
};

interface Edge {
  from: MachineState[];
  to: MachineState;
  why: string;
}

/** One entry per edge; `to` of "fail"/"timeout" is always failed. */
export const TRANSITIONS: Record<Trigger, Edge[]> = {
  boot: [
    // The maintenance OS asked for its token: the machine is booting into enlistment.
    { from: ["discovered", "ready", "failed"], to: "enlisting", why: "maintenance OS booted" },
    // A machine being released boots the maintenance OS to be wiped, and stays releasing.
    { from: ["releasing"], to: "releasing", why: "maintenance OS booted to wipe" },
    // A deploy in progress survives a reboot of the maintenance OS: the agent re-runs the install.
    { from: ["deploying"], to: "deploying", why: "maintenance OS rebooted during deploy" },
  ],
  // The agent's inventory arrived.
  enlisted: [{ from: ["enlisting"], to: "ready", why: "inventory received" }],
  // An operator asked for a host image on the disk.
  deploy: [{ from: ["ready"], to: "deploying", why: "operator deploy" }],
  // The agent wrote and verified the image and is rebooting into it.
  installed: [{ from: ["deploying"], to: "rebooting", why: "image written and verified" }],
  // The host OS agent registered with the credential written at install time.
  "host-registered": [
    { from: ["rebooting"], to: "host-ready", why: "host agent registered" },
    // A host that restarts re-registers; nothing changes.
    { from: ["host-ready"], to: "host-ready", why: "host agent registered again" },
  ],
  // An operator released the machine: wipe and back to ready.
  release: [{ from: ["ready", "host-ready", "failed"], to: "releasing", why: "operator release" }],
  // The agent wiped the disks.
  wiped: [{ from: ["releasing"], to: "ready", why: "disks wiped" }],
  // Something went wrong in an active state (the reason is recorded as last_error).
  fail: [
    {
      from: ["discovered", "enlisting", "deploying", "rebooting", "releasing"],
      to: "failed",
      why: "failure",
    },
  ],
  // A waiting state outlived its deadline.
  timeout: [{ from: ["enlisting", "deploying", "rebooting", "releasing"], to: "failed", why: "timed out" }],
  // An operator retries a failed machine: it boots the maintenance OS and enlists again.
  retry: [{ from: ["failed"], to: "enlisting", why: "operator retry" }],
};

export function edgeFor(trigger: Trigger, from: MachineState): Edge | undefined {
  return TRANSITIONS[trigger].find((e) => e.from.includes(from));
}
