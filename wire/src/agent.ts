// The agent protocol. The agent polls (heartbeat) and reports; the controller never connects
// to the agent. Long commands run asynchronously on the agent and report RUNNING, then
// SUCCEEDED or FAILED, with progress in between.
//
//   maintenance OS                                   controller
//   POST /v1/agent/enlist {nonce, inventory}   --->  exchanges the boot nonce (once) for a
//                                              <---  per-machine token {machineId, token}
//   POST /v1/agent/heartbeat {mode, ...}       --->  (Bearer token)
//                                              <---  {commands: [...], intervalSeconds}
//   POST /v1/agent/commands/:id {state, ...}   --->  progress and result of one command
//
//   host OS (after install-host wrote /etc/weft/agent.json and rebooted)
//   POST /v1/agent/host/register {capacity}    --->  (Bearer host token) -> host-ready
//   POST /v1/agent/heartbeat {mode: "host"}    --->
import { z } from "zod";

export const Disk = z.object({
  /** Kernel name, e.g. vda, sda, nvme0n1. */
  name: z.string(),
  sizeBytes: z.number().int().nonnegative(),
  model: z.string().nullable(),
  serial: z.string().nullable(),
  rotational: z.boolean().nullable(),
});

export const NicInfo = z.object({
  name: z.string(),
  mac: z.string().regex(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/),
  /** Addresses in CIDR form. */
  addresses: z.array(z.string()),
  speedMbps: z.number().int().nullable(),
});

export const Inventory = z.object({
  firmware: z.enum(["bios", "uefi"]),
  system: z.object({
    uuid: z.string().nullable(),
    serial: z.string().nullable(),
    vendor: z.string().nullable(),
    product: z.string().nullable(),
  }),
  cpu: z.object({
    count: z.number().int().positive(),
    model: z.string().nullable(),
    mhz: z.number().nullable(),
  }),
  memoryBytes: z.number().int().positive(),
  disks: z.array(Disk),
  nics: z.array(NicInfo),
  kernel: z.string().nullable(),
});
export type Inventory = z.infer<typeof Inventory>;

export const EnlistRequest = z.object({ nonce: z.string().min(16).max(128), inventory: Inventory }).strict();
export type EnlistRequest = z.infer<typeof EnlistRequest>;
export const EnlistResponse = z.object({ machineId: z.string(), token: z.string() });
export type EnlistResponse = z.infer<typeof EnlistResponse>;

export const AgentMode = z.enum(["maintenance", "host"]);
export type AgentMode = z.infer<typeof AgentMode>;

export const HeartbeatRequest = z
  .object({
    mode: AgentMode,
    uptimeSeconds: z.number().nonnegative(),
    /** Ids of commands the agent is running now (so a restarted controller knows). */
    running: z.array(z.string()).max(16).default([]),
  })
  .strict();
export type HeartbeatRequest = z.infer<typeof HeartbeatRequest>;

/** One word of a kernel command line: no space, newline or shell character. */
export const KernelArg = z
  .string()
  .regex(/^[\w.,:=/+@-]{1,256}$/, "a kernel argument is 1 to 256 of letters, digits and _.,:=/+@-");

/** Install a host OS image on the machine's disk, write its identity, reboot. */
export const InstallHostParams = z.object({
  image: z.object({
    name: z.string(),
    url: z.string().url(),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    size: z.number().int().positive(),
    format: z.literal("ext4.gz"),
  }),
  /** Target disk kernel name; null lets the agent pick the first non-removable disk. */
  disk: z.string().nullable(),
  /** Written to /etc/weft/agent.json on the installed system. */
  host: z.object({
    machineId: z.string(),
    hostname: z.string(),
    controllerUrl: z.string().url(),
    token: z.string(),
  }),
  /**
   * Words appended to the kernel command line of the installed system (its extlinux APPEND
   * lines), e.g. `tsc=reliable` where the hardware's clock needs it. No spaces or newlines in a
   * word: nothing here can add a line to the boot loader's configuration.
   */
  kernelArgs: z.array(KernelArg).max(64).optional(),
  /**
   * libvirtd over TLS: the controller's CA, the host's server certificate and key (issued at
   * dispatch, never stored by the controller), and the client DNs libvirtd lets in.
   */
  tls: z
    .object({
      caCert: z.string().min(1).max(20_000),
      serverCert: z.string().min(1).max(20_000),
      serverKey: z.string().min(1).max(20_000),
      allowedClients: z.array(z.string().min(1).max(256)).min(1).max(8),
    })
    .optional(),
});
export type InstallHostParams = z.infer<typeof InstallHostParams>;

/** The libvirt network guests attach to on a host (bridge with the gateway address). */
export const GuestNetwork = z.object({
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/),
  bridge: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/),
  gateway: z.string().regex(/^\d{1,3}(\.\d{1,3}){3}$/),
  prefix: z.number().int().min(8).max(30),
});
export type GuestNetwork = z.infer<typeof GuestNetwork>;

/**
 * Host mode: the guest network defined and active, IPv4 forwarding on, and the `ip weft`
 * nftables table replaced by `nft` (null keeps the table the host last applied).
 */
export const GuestNetworkParams = z.object({
  network: GuestNetwork,
  nft: z.string().max(200_000).nullable(),
});
export type GuestNetworkParams = z.infer<typeof GuestNetworkParams>;

export const Command = z.discriminatedUnion("kind", [
  z.object({ id: z.string(), kind: z.literal("install-host"), params: InstallHostParams }),
  z.object({
    id: z.string(),
    kind: z.literal("wipe"),
    params: z.object({ disks: z.array(z.string()).nullable() }),
  }),
  z.object({ id: z.string(), kind: z.literal("reboot"), params: z.object({}) }),
  z.object({ id: z.string(), kind: z.literal("guest-network"), params: GuestNetworkParams }),
]);
export type Command = z.infer<typeof Command>;

export const HeartbeatResponse = z.object({
  commands: z.array(Command),
  /** Heartbeat interval; agents add random jitter so that many do not beat in step. */
  intervalSeconds: z.number().positive(),
});
export type HeartbeatResponse = z.infer<typeof HeartbeatResponse>;

export const CommandState = z.enum(["RUNNING", "SUCCEEDED", "FAILED"]);
export const CommandReport = z
  .object({
    state: CommandState,
    /** 0..1 */
    progress: z.number().min(0).max(1).optional(),
    /** Short name of the current stage, e.g. partition, write-image, verify, bootloader. */
    stage: z.string().max(64).optional(),
    message: z.string().max(2000).optional(),
    error: z
      .object({ type: z.string(), code: z.string(), message: z.string(), details: z.unknown().optional() })
      .optional(),
  })
  .strict();
export type CommandReport = z.infer<typeof CommandReport>;

export const HostCapacity = z.object({
  cpus: z.number().int().positive(),
  cpuMhz: z.number().int().nonnegative(),
  memoryMiB: z.number().int().positive(),
  diskBytes: z.number().int().nonnegative(),
  /** Whether /dev/kvm runs guests here. */
  kvm: z.boolean(),
});
/** What the host can enforce for guests (probed by its agent). */
export const HostGuestCapabilities = z.object({
  /** libvirt's <bandwidth>: tc htb, sfq and ingress work on this kernel. */
  bandwidth: z.boolean(),
  bandwidthReason: z.string().max(1000),
  /** libvirt may raise RLIMIT_MEMLOCK to <hard_limit> (CAP_SYS_RESOURCE). */
  memlock: z.boolean(),
  memlockReason: z.string().max(1000),
});
export type HostGuestCapabilities = z.infer<typeof HostGuestCapabilities>;

export const HostRegisterRequest = z
  .object({
    capacity: HostCapacity,
    guests: HostGuestCapabilities.optional(),
    libvirt: z.object({ uri: z.string(), version: z.string().nullable() }),
    address: z.string().nullable(),
    inventory: Inventory.optional(),
  })
  .strict();
export type HostRegisterRequest = z.infer<typeof HostRegisterRequest>;
