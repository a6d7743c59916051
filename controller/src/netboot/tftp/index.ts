// Weft's TFTP server (RFC 1350 with RFC 2347/2348/2349/7440 options), read-only.
export { TftpServer } from "./server.js";
export type {
  TftpLogger,
  TftpRefusedEvent,
  TftpRequestInfo,
  TftpResolver,
  TftpServerEvents,
  TftpServerOptions,
  TftpTransferEvent,
  TftpTransferFailedEvent,
} from "./server.js";
export type { VirtualFile } from "./source.js";
export { ErrorCode, Opcode, TftpPacketError, decodePacket, encodePacket } from "./packet.js";
export type { TftpPacket } from "./packet.js";
