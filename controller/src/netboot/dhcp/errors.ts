// Errors of the DHCP codec. decode() throws nothing else: every malformed input maps to one
// stable code, so the server can log and drop it, and a fuzz test can assert exactly that.

export type DhcpDecodeErrorCode =
  /** Shorter than the fixed BOOTP header plus the magic cookie. */
  | "TRUNCATED"
  /** Longer than any DHCP message this server accepts (DHCP_MAX_PACKET). */
  | "OVERSIZED"
  /** op is neither BOOTREQUEST (1) nor BOOTREPLY (2). */
  | "BAD_OP"
  /** hlen larger than the 16-byte chaddr field. */
  | "BAD_HLEN"
  /** The four bytes after the header are not 99.130.83.99. */
  | "BAD_MAGIC"
  /** An option's length byte, or its value, runs past the end of its field. */
  | "OPTION_OVERFLOW"
  /** A known option whose value has the wrong length or an impossible value. */
  | "BAD_OPTION";

export class DhcpDecodeError extends Error {
  override readonly name = "DhcpDecodeError";
  readonly code: DhcpDecodeErrorCode;
  /** The option code concerned, for OPTION_OVERFLOW and BAD_OPTION. */
  readonly option: number | undefined;

  constructor(code: DhcpDecodeErrorCode, message: string, option?: number) {
    super(message);
    this.code = code;
    this.option = option;
  }
}
