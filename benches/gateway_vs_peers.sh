#!/usr/bin/env bash
# Compares mesh's SNI gateway with HAProxy and nginx, and with a direct connection, under the
# same TLS load on loopback. Prints one table (see benches/README.md).
#
#   bash benches/gateway_vs_peers.sh            # SECONDS_PER_FIGURE=2 ROUNDS=3 CONCURRENCY=64
#
# A second table gives each proxy's CPU per connection and per GiB, read from /proc around each
# figure, and as a ratio to the CPU of the two TLS ends (the echo server and the load driver):
# the ratio is the figure that holds on a noisy machine. It also gives the proxy's resident
# memory per idle routed connection (IDLE=1000 connections held open after their handshake).
#
# Every proxy gets the same resources: WORKERS (default 2) worker threads or processes and
# 64 KiB relay buffers, one exact route for the SNI `bench.example` to the same TLS echo server.
# The echo server and the load driver are `examples/tls_echo_load.rs`. Needs haproxy and nginx with the stream module
# (Debian: apt-get install -y haproxy nginx-full); a missing proxy is left out of the table.
# The release build comes first and is not part of the measured time; the measuring part takes
# about ROUNDS x 4 targets x (3 figures x SECONDS_PER_FIGURE + 0.5 s), under 90 s by default.
# Rounds visit the targets in turn and each figure is the median over the rounds, so a burst
# of foreign load on the machine hits every target alike.
set -euo pipefail

cd "$(dirname "$0")/.."
SECS="${SECONDS_PER_FIGURE:-2}"
ROUNDS="${ROUNDS:-3}"
CONCURRENCY="${CONCURRENCY:-64}"
IDLE="${IDLE:-1000}"
WORKERS="${WORKERS:-2}"   # worker threads (mesh, HAProxy) or processes (nginx) of every proxy
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
SNI=bench.example
WORK="$(mktemp -d /tmp/gateway-vs-peers.XXXXXX)"
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

# Waits until something accepts TCP on 127.0.0.1:$1 (at most 10 s); on failure shows log $2.
wait_port() {
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    echo "nothing listens on port $1; $2 says:" >&2
    cat "$2" >&2
    return 1
}

echo "building (release)..." >&2
# As root, measure at a higher priority than other work on the machine (builds, editors): under
# contention the scheduler would otherwise favour whichever set-up runs more threads.
renice -n -10 -p $$ >/dev/null 2>&1 || true
# 1,000 idle connections take 1,000 descriptors in the driver and the echo server, 2,000 in a proxy.
ulimit -n 65536 2>/dev/null || true
if [ -z "${SKIP_BUILD:-}" ]; then   # SKIP_BUILD=1 reuses the binaries of an earlier build
    cargo build --quiet --release -p mesh --example sni_gateway --example tls_echo_load
fi
BIN="$TARGET_DIR/release/examples"

# The TLS echo server (1 worker thread), with a fresh certificate for the SNI.
ECHO_PORT="$(free_port)"
"$BIN/tls_echo_load" serve --listen "127.0.0.1:$ECHO_PORT" --name "$SNI" \
    --cert-out "$WORK/echo.der" --workers 1 >"$WORK/echo.log" 2>&1 &
PIDS+=($!)
ECHO_PID=$!
wait_port "$ECHO_PORT" "$WORK/echo.log"
TARGETS=(--target "direct=127.0.0.1:$ECHO_PORT")

# mesh: the example gateway, 2 worker threads, 64 KiB relay buffers.
MESH_PORT="$(free_port)"
RUST_LOG=warn "$BIN/sni_gateway" --listen "127.0.0.1:$MESH_PORT" \
    --route "$SNI=127.0.0.1:$ECHO_PORT" --workers "$WORKERS" --relay-buffer-bytes 65536 \
    >"$WORK/mesh.log" 2>&1 &
PIDS+=($!)
wait_port "$MESH_PORT" "$WORK/mesh.log"
TARGETS+=(--target "mesh=127.0.0.1:$MESH_PORT@${PIDS[-1]}")

# HAProxy: tcp mode, SNI from req.ssl_sni after waiting for the hello.
if command -v haproxy >/dev/null; then
    HAPROXY_PORT="$(free_port)"
    cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread $WORKERS
    tune.bufsize 65536
    maxconn 4000
defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend sni
    bind 127.0.0.1:$HAPROXY_PORT
    tcp-request inspect-delay 5s
    tcp-request content accept if { req.ssl_hello_type 1 }
    use_backend echo if { req.ssl_sni -i $SNI }
backend echo
    server echo1 127.0.0.1:$ECHO_PORT
EOF
    haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
    PIDS+=($!)
    wait_port "$HAPROXY_PORT" "$WORK/haproxy.log"
    TARGETS+=(--target "haproxy=127.0.0.1:$HAPROXY_PORT@${PIDS[-1]}")
else
    echo "haproxy not installed: left out (apt-get install -y haproxy)" >&2
fi

# nginx: stream module, ssl_preread and a map on the server name.
STREAM_MODULE=/usr/lib/nginx/modules/ngx_stream_module.so
if command -v nginx >/dev/null; then
    NGINX_PORT="$(free_port)"
    LOAD_MODULE=""
    if [ -f "$STREAM_MODULE" ]; then
        LOAD_MODULE="load_module $STREAM_MODULE;"
    fi
    cat >"$WORK/nginx.conf" <<EOF
$LOAD_MODULE
worker_processes $WORKERS;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
stream {
    map \$ssl_preread_server_name \$upstream {
        $SNI 127.0.0.1:$ECHO_PORT;
        default 127.0.0.1:9;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        ssl_preread on;
        preread_timeout 5s;
        proxy_connect_timeout 2s;
        proxy_buffer_size 64k;
        proxy_half_close on;
        proxy_pass \$upstream;
    }
}
EOF
    if nginx -t -q -c "$WORK/nginx.conf" -p "$WORK" 2>"$WORK/nginx-t.log"; then
        nginx -c "$WORK/nginx.conf" -p "$WORK" >"$WORK/nginx.log" 2>&1 &
        PIDS+=($!)
        wait_port "$NGINX_PORT" "$WORK/nginx.log"
        TARGETS+=(--target "nginx=127.0.0.1:$NGINX_PORT@${PIDS[-1]}")
    else
        echo "nginx has no stream module: left out (apt-get install -y nginx-full)" >&2
        cat "$WORK/nginx-t.log" >&2
    fi
else
    echo "nginx not installed: left out (apt-get install -y nginx-full)" >&2
fi

echo "machine: $(nproc) CPUs; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BIN/tls_echo_load" bench --sni "$SNI" --cert "$WORK/echo.der" --seconds "$SECS" --rounds "$ROUNDS" \
    --concurrency "$CONCURRENCY" --streams 4 --workers 1 --server-pid "$ECHO_PID" --idle "$IDLE" \
    "${TARGETS[@]}"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
