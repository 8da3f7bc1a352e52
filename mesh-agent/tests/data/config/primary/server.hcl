# The primary datacenter's server, as a Consul operator writes it.
datacenter         = "primary"
primary_datacenter = "primary"
data_dir           = "/var/lib/mesh"
node_name          = "primary-server-1"
server             = true
bootstrap_expect   = 1
log_level          = "INFO"
bind_addr          = "0.0.0.0"
client_addr        = "127.0.0.1"
advertise_addr     = "10.0.1.10"

addresses {
  http = "127.0.0.1"
}

ports {
  http   = 8500
  https  = 8501
  server = 8300
  grpc   = 8502
}

acl {
  enabled                  = true
  default_policy           = "deny"
  down_policy              = "extend-cache"
  enable_token_persistence = true
  tokens {
    initial_management = "b1gs33cr3t-0000-4000-8000-000000000001"
    agent              = "agent-token-0000-4000-8000-000000000002"
  }
}

connect {
  enabled     = true
  ca_provider = "consul"
  ca_config {
    private_key_type      = "ec"
    private_key_bits      = 384
    leaf_cert_ttl         = "24h"
    intermediate_cert_ttl = "8760h"
    root_cert_ttl         = "87600h"
  }
}

enable_central_service_config = true

tls {
  defaults {
    ca_file         = "/etc/mesh/ca.pem"
    cert_file       = "/etc/mesh/server.pem"
    key_file        = "/etc/mesh/server-key.pem"
    verify_incoming = false
    verify_outgoing = true
  }
}

ui_config {
  enabled = true
}
