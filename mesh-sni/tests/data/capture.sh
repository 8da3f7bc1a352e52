#!/usr/bin/env bash
# Captures real ClientHellos from openssl s_client, curl and a rustls client into
# the .bin files beside this script. Everything stays on 127.0.0.1.
#
# Needs: python3, openssl, curl (Debian: apt-get install -y openssl curl python3)
# and cargo (the rustls client is an ignored test of mesh-sni).
# Run from anywhere: mesh-sni/tests/data/capture.sh
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
crate=$(cd "$here/../.." && pwd)
sni=web.default.dc1.internal.11111111-2222-3333-4444-555555555555.consul
tmp=$(mktemp -d)
trap 'kill "$listener" 2>/dev/null || true; rm -rf "$tmp"' EXIT

# Build the rustls client first so the listener does not time out waiting for it.
cargo test -p mesh-sni --test hello_capture --no-run --manifest-path "$crate/Cargo.toml" 2>/dev/null \
    || cargo test -p mesh-sni --test hello_capture --no-run --manifest-path "$crate/Cargo.toml"

python3 "$here/capture_listener.py" "$tmp/port" \
    "$here/openssl.bin" \
    "$here/openssl_tls12.bin" \
    "$here/openssl_frag512.bin" \
    "$here/openssl_frag512_alpn_split.bin" \
    "$here/curl.bin" \
    "$here/rustls.bin" &
listener=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
port=$(cat "$tmp/port")

# 1. openssl, TLS 1.3 + 1.2 offered, ALPN h2 and http/1.1.
openssl s_client -connect "127.0.0.1:$port" -servername "$sni" -alpn h2,http/1.1 \
    </dev/null >/dev/null 2>&1 || true
# 2. openssl restricted to TLS 1.2: no supported_versions extension.
openssl s_client -connect "127.0.0.1:$port" -servername "$sni" -alpn http/1.1 -tls1_2 \
    </dev/null >/dev/null 2>&1 || true
# 3. openssl with 512-byte records (the smallest -max_send_frag): extra ALPN
#    names push the hello past 512 bytes, so the handshake message really is
#    fragmented across two TLS records.
#    a) 16 extra names: the record boundary falls in signature_algorithms,
#       after the server name and the ALPN list.
#    b) 40 extra names: the boundary cuts through the name "mesh-proto-36".
for n in 16 40; do
    alpn=h2,http/1.1
    for i in $(seq 1 "$n"); do alpn="$alpn,mesh-proto-$i"; done
    openssl s_client -connect "127.0.0.1:$port" -servername "$sni" -alpn "$alpn" \
        -max_send_frag 512 </dev/null >/dev/null 2>&1 || true
done
# 4. curl (ALPN h2,http/1.1 by default with nghttp2).
curl -sk --max-time 10 --resolve "$sni:$port:127.0.0.1" "https://$sni:$port/" \
    >/dev/null 2>&1 || true
# 5. rustls (ring provider), driven by an ignored test of mesh-sni.
MESH_HELLO_CAPTURE_ADDR="127.0.0.1:$port" MESH_HELLO_CAPTURE_SNI="$sni" \
    cargo test -p mesh-sni --test hello_capture --manifest-path "$crate/Cargo.toml" \
    -- --exact rustls_client_hello_over_tcp >/dev/null 2>&1 || true

wait "$listener"
