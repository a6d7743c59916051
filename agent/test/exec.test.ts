import { describe, expect, it } from "vitest";
import { fakeClock } from "../src/clock.js";
import { createExec } from "../src/exec.js";
import { memoryLogger } from "../src/log.js";
import { stubRunner, UnstubbedCommandError } from "./helpers/exec.js";

// Real sockets, files and processes: generous timeouts for a loaded CI machine.
describe("the exec door", { timeout: 30_000 }, () => {
  it("logs the command line, exit code and duration", async () => {
    const log = memoryLogger();
    const stub = stubRunner().stub("sgdisk -i 1 /dev/vda", { stdout: "ok\n" });
    const r = await createExec(log, stub.runner, fakeClock()).run("sgdisk", ["-i", "1", "/dev/vda"]);
    expect(r).toMatchObject({ exitCode: 0, stdout: "ok\n", command: "sgdisk" });
    expect(log.lines).toEqual(['weft-agent: exec cmd="sgdisk -i 1 /dev/vda" exit=0 ms=0']);
  });

  it("turns an unexpected exit code into an EXEC_FAILED error with stderr", async () => {
    const stub = stubRunner().stub(/^e2fsck/, { exitCode: 8, stderr: "e2fsck: Bad magic number" });
    const exec = createExec(memoryLogger(), stub.runner);
    await expect(exec.run("e2fsck", ["-fy", "/dev/vda1"])).rejects.toMatchObject({
      type: "exec",
      code: "EXEC_FAILED",
      details: { exitCode: 8, stderr: "e2fsck: Bad magic number" },
    });
    // ...but accepts exit codes the caller declared as success.
    stub.stub(/^fsck/, { exitCode: 1 });
    await expect(exec.run("fsck", [], { okExitCodes: [0, 1] })).resolves.toMatchObject({ exitCode: 1 });
  });

  it("fails loudly for a command the test did not stub", async () => {
    const stub = stubRunner();
    const exec = createExec(memoryLogger(), stub.runner);
    await expect(exec.run("reboot", ["-f"])).rejects.toBeInstanceOf(UnstubbedCommandError);
    await expect(exec.run("reboot", ["-f"])).rejects.toThrow("test did not stub this command: reboot -f");
    expect(stub.unstubbed).toEqual(["reboot -f", "reboot -f"]);
  });

  it("runs real processes through execa and reports a missing binary as EXEC_NOT_FOUND", async () => {
    const exec = createExec(memoryLogger());
    await expect(exec.run("sh", ["-c", "echo hi; exit 3"], { okExitCodes: [3] })).resolves.toMatchObject({
      exitCode: 3,
      stdout: "hi\n",
    });
    await expect(exec.run("weft-no-such-tool", [])).rejects.toMatchObject({ code: "EXEC_NOT_FOUND" });
  });
});
