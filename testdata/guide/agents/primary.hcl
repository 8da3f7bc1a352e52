# The primary datacenter's server, as the guide configures Consul's.
datacenter = "primary"
primary_datacenter = "primary"
data_dir = "/tmp/mesh-guide/primary"
node_name = "primary-server-1"
bind_addr = "127.0.0.1"
client_addr = "127.0.0.1"
ports {
  http = 8500
  server = 8300
}
acl {
  enabled = true
  default_policy = "deny"
  enable_token_replication = true
  tokens {
    initial_management = "b1gs33cr3-0000-4000-8000-000000000001"
  }
}
connect {
"enabled": true
}
enable_central_service_config = true
