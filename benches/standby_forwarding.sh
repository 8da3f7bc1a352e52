#!/usr/bin/env bash
# What a standing-by server costs a client: the same request, one at a time on one keep-alive
# connection, straight to the leading `mesh agent` and through a standby that forwards it,
# alternating in rounds within one run (see benches/README.md). Needs `etcd` on the PATH
# (Debian: etcd-server) and protoc for the build.
#
#   bash benches/standby_forwarding.sh      # N=3000 requests per figure, ROUNDS=3; SKIP_BUILD=1
set -euo pipefail

cd "$(dirname "$0")/.."
N="${N:-3000}"
ROUNDS="${ROUNDS:-3}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
WORK="$(mktemp -d /tmp/standby-forwarding.XXXXXX)"
TOKEN=b1gs33cr3-0000-4000-8000-000000000001
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_http() {
    for _ in $(seq 1 200); do
        if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$1/v1/status/leader', timeout=1)" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "nothing serves HTTP on port $1; $2 says:" >&2
    cat "$2" >&2
    return 1
}

if [ -z "${SKIP_BUILD:-}" ]; then
    echo "building (release)..." >&2
    cargo build --quiet --release -p mesh-agent --features etcd
fi
MESH="$TARGET_DIR/release/mesh"

ETCD_CLIENT="$(free_port)"
ETCD_PEER="$(free_port)"
etcd --data-dir "$WORK/etcd" --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
    --initial-cluster "default=http://127.0.0.1:$ETCD_PEER" >"$WORK/etcd.log" 2>&1 &
PIDS+=($!)
openssl rand -hex 32 >"$WORK/state.key"
HTTP=()
for i in 1 2; do
    HTTP+=("$(free_port)")
    cat >"$WORK/server$i.hcl" <<HCL
datacenter = "primary"
primary_datacenter = "primary"
data_dir = "$WORK/data$i"
node_name = "server-$i"
bind_addr = "127.0.0.1"
client_addr = "127.0.0.1"
log_level = "warn"
ports {
  http = ${HTTP[$((i - 1))]}
  server = $(free_port)
}
acl {
  enabled = true
  default_policy = "deny"
  tokens {
    initial_management = "$TOKEN"
  }
}
connect {
  enabled = true
}
storage {
  etcd {
    endpoints = ["http://127.0.0.1:$ETCD_CLIENT"]
    state_key_file = "$WORK/state.key"
  }
}
HCL
    "$MESH" agent -config-file "$WORK/server$i.hcl" >"$WORK/server$i.log" 2>&1 &
    PIDS+=($!)
    # The first one leads; the second, started once it serves, stands by.
    wait_http "${HTTP[$((i - 1))]}" "$WORK/server$i.log"
done
CONSUL_HTTP_ADDR="127.0.0.1:${HTTP[0]}" CONSUL_HTTP_TOKEN="$TOKEN" "$MESH" intention create web db >/dev/null

python3 - "127.0.0.1:${HTTP[0]}" "127.0.0.1:${HTTP[1]}" "$TOKEN" "$N" "$ROUNDS" <<'PY'
import http.client, sys, time
leader, standby, token, n, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
path = "/v1/connect/intentions/check?source=web&destination=db"
def run(addr):
    host, port = addr.split(":")
    c = http.client.HTTPConnection(host, int(port))
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        c.request("GET", path, headers={"X-Consul-Token": token})
        r = c.getresponse()
        r.read()
        if r.status != 200:
            raise SystemExit(f"{addr}: HTTP {r.status}")
        lat.append(time.perf_counter() - t)
    lat.sort()
    return n / sum(lat), lat[n // 2] * 1e6, lat[int(n * 0.99)] * 1e6
res = {"leader": [], "standby": []}
for i in range(rounds):
    for name, addr in (("leader", leader), ("standby", standby)):
        rate, p50, p99 = run(addr)
        res[name].append((rate, p50, p99))
        print(f"round {i} {name:8s} {rate:8.0f} req/s  p50 {p50:6.0f} us  p99 {p99:6.0f} us")
med = lambda xs: sorted(xs)[len(xs) // 2]
l = [med([r[k] for r in res["leader"]]) for k in range(3)]
s = [med([r[k] for r in res["standby"]]) for k in range(3)]
print(f"median of {rounds} rounds of {n} requests (intentions/check, one keep-alive connection):")
print(f"  leader  {l[0]:8.0f} req/s  p50 {l[1]:6.0f} us  p99 {l[2]:6.0f} us")
print(f"  standby {s[0]:8.0f} req/s  p50 {s[1]:6.0f} us  p99 {s[2]:6.0f} us"
      f"  ({s[0] / l[0]:.2f}x the rate, +{s[1] - l[1]:.0f} us at p50)")
PY
