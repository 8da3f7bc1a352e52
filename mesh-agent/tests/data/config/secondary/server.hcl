// The secondary datacenter's server: ACL replication as Consul's docs write it.
datacenter = "secondary"
primary_datacenter = "primary"
data_dir = "/var/lib/mesh"
node_name = "secondary-server-1"
server = true
bind_addr = "0.0.0.0"
client_addr = "0.0.0.0"

acl { enabled = true, default_policy = "deny", enable_token_replication = true, tokens { replication = "r3pl1cat10n-0000-4000-8000-000000000003", agent = "agent-token-0000-4000-8000-000000000004" } }

connect {
"enabled": true
}

/* How this secondary reaches the primary: its server port, and its mesh gateways. */
retry_join_wan = ["primary-server-1.example:8300", "10.0.1.11"]
primary_gateways = [
  "gateway-primary.example:8443",
]

enable_central_service_config = true
ports { http = 8500  https = -1  server = 8300 }
