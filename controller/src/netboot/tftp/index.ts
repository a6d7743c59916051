// Weft's TFTP server: RFC 1350 with option negotiation (RFC 2347), blksize (RFC 2348),
// timeout and tsize (RFC 2349) and windowsize (RFC 7440). Read-only.
//
// Layout: packet.ts is the pure codec; options.ts decides what a request is granted;
// paths.ts maps a requested name into the root; source.ts reads files and caller-provided
// content ahead of the sender; transfer.ts runs one transfer on its own socket, which
// udp-channel.ts opens (Weft's native UDP channel, or node:dgram); server.ts listens, applies
// policy (modes, limits, refusals), logs and emits events.
//
// Behaviour worth knowing when wiring or operating it:
// - Names are relative to the root; a leading "/" is dropped ("/etc/passwd" is
//   ROOT/etc/passwd). ".." segments, NUL and control characters are refused with ERROR 2, as
//   are symlinks resolving outside the root; missing files and non-regular files get ERROR 1.
// - Each transfer has its own UDP socket connected to the client (RFC 1350 section 4 TID).
//   Datagrams from any other address or port are dropped by the kernel instead of being
//   answered with ERROR 5; the transfer is not disturbed either way.
// - A repeated request from the same address and port while its transfer runs is ignored
//   (it is the client retransmitting its RRQ; the transfer's own timer answers it).
// - Block numbers roll over from 65535 to 0.
// - tsize is not acknowledged for netascii (the converted size is not known up front) nor
//   for an empty file (curl 7.88 rejects "tsize 0").
// - Retransmission only on timeout (the client's "timeout" option, else timeoutMs), up to
//   maxRetries times per window, then ERROR 0 "timed out".
// - Events: "transfer-complete" and "transfer-failed" carry bytes, blocks, duration and
//   retransmissions (for metrics); "request-refused" carries the reason and error code.
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
export { nativeChannelStatus } from "./udp-channel.js";
export type { DataPath } from "./udp-channel.js";
export { ErrorCode, Opcode, TftpPacketError, decodePacket, encodePacket } from "./packet.js";
export type { TftpPacket } from "./packet.js";
