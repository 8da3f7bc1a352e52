# Read after ../agents/primary.hcl (later files win) when the primary runs in its own network
# namespace: its server port listens on the namespace's link address, where the secondary
# reaches it. The HTTP API stays on 127.0.0.1:8500 inside the namespace.
bind_addr = "10.251.0.1"
