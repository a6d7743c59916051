{
  "targets": [
    {
      "target_name": "weft_udp",
      "sources": ["udp_channel.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror"]
    }
  ]
}
