# The secondary datacenter's server when it runs in its own network namespace (the guide's
# ../agents/secondary.hcl has both agents on one host's loopback). The primary's server is
# reached over the link between the namespaces, over TLS; the replication token comes in a
# second file written after the primary made it, data_dir and the primary's mesh root
# (tls.internal_rpc.ca_file) in a third.
datacenter = "secondary"
primary_datacenter = "primary"
data_dir = "/tmp/mesh-guide/secondary"
node_name = "secondary-server-1"
bind_addr = "10.251.0.2"
client_addr = "127.0.0.1"
ports {
  http = 8500
  server = 8300
}
acl {
  enabled = true
  default_policy = "deny"
  enable_token_replication = true
}
connect {
"enabled": true
}
enable_central_service_config = true
retry_join_wan = ["10.251.0.1:8300"]
