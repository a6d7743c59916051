import { describe, expect, it } from "vitest";
import { negotiateRead } from "../src/netboot/tftp/options.js";
import type { TftpOption } from "../src/netboot/tftp/packet.js";

const limits = { maxBlockSize: 65464, maxWindowSize: 64 };

describe("tftp option negotiation", () => {
  it("sends no OACK when no option was asked for", () => {
    expect(negotiateRead([], 100, limits)).toEqual({
      blksize: 512,
      windowsize: 1,
      timeoutMs: undefined,
      oack: [],
    });
  });

  it("grants blksize, windowsize, timeout and tsize, keeping the client's spelling", () => {
    const asked: TftpOption[] = [
      ["BLKSIZE", "1468"],
      ["tsize", "0"],
      ["windowsize", "16"],
      ["timeout", "3"],
    ];
    expect(negotiateRead(asked, 123456, limits)).toEqual({
      blksize: 1468,
      windowsize: 16,
      timeoutMs: 3000,
      oack: [
        ["BLKSIZE", "1468"],
        ["tsize", "123456"],
        ["windowsize", "16"],
        ["timeout", "3"],
      ],
    });
  });

  const cases: [string, TftpOption[], Partial<ReturnType<typeof negotiateRead>>][] = [
    ["blksize above 65464 is lowered to 65464", [["blksize", "70000"]], { blksize: 65464 }],
    ["blksize below 8 is ignored", [["blksize", "7"]], { blksize: 512, oack: [] }],
    ["blksize 8 is accepted", [["blksize", "8"]], { blksize: 8 }],
    ["a non-numeric blksize is ignored", [["blksize", "12ab"]], { blksize: 512, oack: [] }],
    ["a negative blksize is ignored", [["blksize", "-1"]], { blksize: 512, oack: [] }],
    ["windowsize above the limit is lowered", [["windowsize", "1000"]], { windowsize: 64 }],
    ["windowsize 0 is ignored", [["windowsize", "0"]], { windowsize: 1, oack: [] }],
    ["timeout 0 is ignored", [["timeout", "0"]], { timeoutMs: undefined, oack: [] }],
    ["timeout 256 is ignored", [["timeout", "256"]], { timeoutMs: undefined, oack: [] }],
    [
      "unknown options are left out",
      [
        ["multicast", ""],
        ["rollover", "0"],
      ],
      { oack: [] },
    ],
    [
      "the first of two blksize options wins",
      [
        ["blksize", "1024"],
        ["blksize", "2048"],
      ],
      { blksize: 1024 },
    ],
  ];

  it.each(cases)("%s", (_name, asked, expected) => {
    expect(negotiateRead(asked, 10, limits)).toMatchObject(expected);
  });

  it("caps blksize at the server's configured maximum", () => {
    expect(negotiateRead([["blksize", "9000"]], 10, { maxBlockSize: 1468, maxWindowSize: 64 }).oack).toEqual([
      ["blksize", "1468"],
    ]);
  });

  it("leaves tsize out when the size is unknown (netascii) or zero", () => {
    expect(negotiateRead([["tsize", "0"]], undefined, limits).oack).toEqual([]);
    expect(negotiateRead([["tsize", "0"]], 0, limits).oack).toEqual([]);
  });
});
