import { defineConfig } from "vitest/config";

// Two projects: fast unit tests of pure logic, and integration tests that start real
// processes (controller, DHCP/TFTP clients, QEMU, libvirtd) and so run one file at a time.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["*/test/**/*.test.ts"],
          exclude: ["**/*.int.test.ts", "**/node_modules/**"],
        },
      },
      {
        test: {
          name: "integration",
          include: ["*/test/**/*.int.test.ts"],
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 300_000,
        },
      },
    ],
  },
});
