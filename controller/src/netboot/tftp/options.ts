// Option negotiation for a read request: what the client asked for, what we grant. Pure.
//
// RFC 2347: the server acknowledges only the options it accepts, in an OACK; unknown or
// unusable options are left out, and a request with no accepted option gets DATA at once.
// RFC 2348 blksize: 8..65464 octets; the server may answer a smaller value.
// RFC 2349 timeout: 1..255 seconds, echoed unchanged; tsize: the client sends 0 in a read
//   request and the server answers the file size.
// RFC 7440 windowsize: 1..65535 blocks; the server may answer a smaller value.

import type { TftpOption } from "./packet.js";

export const BLKSIZE_MIN = 8;
export const BLKSIZE_MAX = 65464;
export const DEFAULT_BLKSIZE = 512;

export interface NegotiationLimits {
  /** Largest block size granted (clients asking for more get this). */
  readonly maxBlockSize: number;
  /** Largest window granted (clients asking for more get this). */
  readonly maxWindowSize: number;
}

export interface Negotiated {
  readonly blksize: number;
  readonly windowsize: number;
  /** Retransmission timeout asked for by the client, in milliseconds, if any. */
  readonly timeoutMs: number | undefined;
  /** The options to put in the OACK; empty means no OACK is sent. */
  readonly oack: readonly TftpOption[];
}

function parseDecimal(value: string): number | undefined {
  if (!/^[0-9]{1,10}$/.test(value)) return undefined;
  return Number(value);
}

/**
 * Decide the transfer parameters of a read request.
 * `size` is the number of octets that will be sent, or undefined when it is not known in
 * advance (netascii conversion), in which case tsize is not acknowledged.
 */
export function negotiateRead(
  requested: readonly TftpOption[],
  size: number | undefined,
  limits: NegotiationLimits,
): Negotiated {
  let blksize = DEFAULT_BLKSIZE;
  let windowsize = 1;
  let timeoutMs: number | undefined;
  const oack: TftpOption[] = [];
  const seen = new Set<string>();

  for (const [rawName, rawValue] of requested) {
    const name = rawName.toLowerCase();
    if (seen.has(name)) continue; // the first occurrence wins
    seen.add(name);
    const value = parseDecimal(rawValue);
    if (value === undefined) continue;
    switch (name) {
      case "blksize":
        if (value < BLKSIZE_MIN) break;
        blksize = Math.min(value, BLKSIZE_MAX, limits.maxBlockSize);
        oack.push([rawName, String(blksize)]);
        break;
      case "timeout":
        if (value < 1 || value > 255) break;
        timeoutMs = value * 1000;
        oack.push([rawName, String(value)]);
        break;
      case "tsize":
        // Left out for an empty file too: curl (7.88) rejects an OACK carrying "tsize 0"
        // and the transfer then stalls; leaving an option out is always allowed.
        if (size === undefined || size === 0) break;
        oack.push([rawName, String(size)]);
        break;
      case "windowsize":
        if (value < 1 || value > 65535) break;
        windowsize = Math.min(value, limits.maxWindowSize);
        oack.push([rawName, String(windowsize)]);
        break;
      default:
        break;
    }
  }
  return { blksize, windowsize, timeoutMs, oack };
}
