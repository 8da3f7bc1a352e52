# The secondary datacenter's server. Its replication token is created in the primary first
# (see the README) and given in a second file, replication-token.hcl, beside this one; the
# primary's mesh root (`mesh ca roots -pem` against the primary) is what it verifies the
# primary's server port with.
datacenter = "secondary"
primary_datacenter = "primary"
data_dir = "/tmp/mesh-guide/secondary"
node_name = "secondary-server-1"
bind_addr = "127.0.0.1"
client_addr = "127.0.0.1"
ports {
  http = 8501
  server = 8301
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
retry_join_wan = ["127.0.0.1:8300"]
tls {
  internal_rpc {
    ca_file = "/tmp/mesh-guide/primary-ca.pem"
  }
}
