#!/usr/bin/env node
// weft-agent entry point. In the maintenance OS /init starts it with the controller URL and
// boot nonce from the kernel command line; in a host OS systemd starts it in host mode.
console.log("weft-agent: starting");
