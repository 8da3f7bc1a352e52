#!/usr/bin/env python3
"""Loopback listener that saves the records holding each client's ClientHello.

Usage: capture_listener.py PORT_FILE OUT1 [OUT2 ...]

Binds 127.0.0.1 on an OS-assigned port, writes the port to PORT_FILE, then
accepts one connection per OUT file, in order. For each it reads TLS records
until the handshake message started in the first record is complete, writes
exactly those records to OUT and closes the connection (the client then fails
its handshake, which is expected).
"""
import socket
import sys


def read_hello(conn):
    data = b""
    pos = 0
    payload = b""
    while True:
        while len(data) < pos + 5:
            chunk = conn.recv(65536)
            if not chunk:
                raise EOFError("connection closed before a full record")
            data += chunk
        rec_len = int.from_bytes(data[pos + 3:pos + 5], "big")
        end = pos + 5 + rec_len
        while len(data) < end:
            chunk = conn.recv(65536)
            if not chunk:
                raise EOFError("connection closed inside a record")
            data += chunk
        if data[pos] != 0x16:
            raise ValueError("record of type %d before the hello ended" % data[pos])
        payload += data[pos + 5:end]
        pos = end
        if len(payload) >= 4:
            hello_len = 4 + int.from_bytes(payload[1:4], "big")
            if len(payload) >= hello_len:
                return data[:pos]


def main():
    port_file, outs = sys.argv[1], sys.argv[2:]
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(60)
    with open(port_file, "w") as f:
        f.write(str(srv.getsockname()[1]))
    for out in outs:
        conn, _ = srv.accept()
        conn.settimeout(20)
        try:
            hello = read_hello(conn)
        finally:
            conn.close()
        with open(out, "wb") as f:
            f.write(hello)
        print("%s: %d bytes" % (out, len(hello)), flush=True)


if __name__ == "__main__":
    main()
