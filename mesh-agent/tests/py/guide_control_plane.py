"""The guide's control-plane steps, driven by py-consul against two `mesh agent` processes.

Run by mesh-agent/tests/py_consul.rs. Phase `replication-token` runs against the primary alone
and prints the replication token's secret; phase `guide` runs once the secondary is up.
Every check raises on failure; the last line printed is `ok`.
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import consul
from consul.exceptions import ACLPermissionDenied

GUIDE = os.environ["GUIDE_DIR"]


def client(addr, token):
    host, port = addr.rsplit(":", 1)
    return consul.Consul(host=host, port=int(port), token=token)


def eventually(what, f, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = f()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s: {what}")
        time.sleep(0.05)


def replication_token(primary, mgmt):
    p = client(primary, mgmt)
    with open(os.path.join(GUIDE, "replication-policy.json")) as f:
        p.acl.policy.create("replication", rules=f.read(), description="ACL replication")
    t = p.acl.token.create(description="replication token", policies_name=["replication"])
    print(json.dumps({"secret": t["SecretID"]}))


def guide(primary, secondary, mgmt):
    p = client(primary, mgmt)
    s = client(secondary, mgmt)

    # Both datacenters know each other, the local one first.
    assert s.catalog.datacenters()[:1] == ["secondary"], s.catalog.datacenters()
    assert set(p.catalog.datacenters()) == {"primary", "secondary"}, p.catalog.datacenters()

    # Tokens for the gateways, from the guide's policy file as written.
    with open(os.path.join(GUIDE, "mesh-gateway-policy.json")) as f:
        p.acl.policy.create("mesh-gateway", rules=f.read())
    for dc in ("primary", "secondary"):
        t = p.acl.token.create(
            description=f"mesh-gateway {dc} datacenter token", policies_name=["mesh-gateway"]
        )
        assert t["SecretID"] and t["AccessorID"], t
        assert [x["Name"] for x in t["Policies"]] == ["mesh-gateway"], t
    policies = {x["Name"] for x in p.acl.policy.list()}
    assert {"mesh-gateway", "replication", "global-management"} <= policies, policies

    # Tokens replicate: the secondary resolves a token made in the primary.
    eventually("secondary sees the gateway policy", lambda: any(
        x["Name"] == "mesh-gateway" for x in s.acl.policy.list()))

    # proxy-defaults, as the guide writes it, through the config endpoint.
    with open(os.path.join(GUIDE, "proxy-defaults.json")) as f:
        entry = json.load(f)
    body = {k: v for k, v in entry.items() if k not in ("Kind", "Name")}
    assert p.config.set(entry["Kind"], entry["Name"], body) is True
    got = eventually("proxy-defaults replicated", lambda: _config_get(s, "proxy-defaults", "global"))
    assert got["Kind"] == "proxy-defaults", got

    # Service tokens.
    socat = p.acl.token.create(description="socat", service_identities=[{"ServiceName": "socat"}])
    web = p.acl.token.create(description="web", service_identities=[{"ServiceName": "web"}])
    eventually("secondary resolves the web token", lambda: _resolves(secondary, web["SecretID"]))

    # socat with its sidecar in the primary.
    assert p.agent.service.register(
        "socat", port=8181, token=socat["SecretID"], connect={"sidecar_service": {}}
    )
    services = p.agent.services()
    assert "socat" in services and "socat-sidecar-proxy" in services, services
    assert services["socat-sidecar-proxy"]["Kind"] == "connect-proxy", services

    # A blocking health.connect query in the secondary, woken by web's registration.
    index, nodes = s.health.connect("web")
    assert nodes == [], nodes
    answer = {}

    def wait():
        answer["r"] = s.health.connect("web", index=index, wait="30s")

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.3)
    assert waiter.is_alive(), "the blocking query returned before any change"
    assert s.agent.service.register(
        "web",
        port=8080,
        token=web["SecretID"],
        connect={"sidecar_service": {"proxy": {"upstreams": [
            {"destination_name": "socat", "datacenter": "primary", "local_bind_port": 8181}
        ]}}},
    )
    waiter.join(35)
    assert not waiter.is_alive(), "the blocking query was not woken"
    new_index, nodes = answer["r"]
    assert int(new_index) > int(index), (index, new_index)
    assert len(nodes) == 1 and nodes[0]["Service"]["Service"] == "web-sidecar-proxy", nodes

    # Default deny: web -> socat is refused until an intention allows it.
    assert s.connect.intentions.check("web", "socat") is False

    # 403 for a token without the right: web's token cannot write intentions on socat.
    try:
        s.connect.intentions.upsert("web", "socat", action="allow", token=web["SecretID"])
        raise AssertionError("web's token wrote an intention on socat")
    except ACLPermissionDenied as e:
        assert "Permission denied" in str(e), e

    # The intention, made in the secondary (forwarded to the primary).
    assert s.connect.intentions.upsert("web", "socat", action="allow") is True
    assert s.connect.intentions.check("web", "socat") is True
    eventually("primary enforces the intention",
               lambda: p.connect.intentions.check("web", "socat") is True)
    listed = [(i["SourceName"], i["DestinationName"], i["Action"]) for i in s.connect.intentions.list()]
    assert ("web", "socat", "allow") in listed, listed

    # CA roots, and a leaf for web whose chain openssl accepts.
    roots = s.agent.connect.ca.roots()
    active = [r for r in roots["Roots"] if r["Active"]]
    assert len(active) == 1, roots
    leaf = s.agent.connect.ca.leaf("web", token=web["SecretID"])
    assert leaf["Service"] == "web", leaf
    assert leaf["ServiceURI"].endswith("/svc/web"), leaf
    with tempfile.TemporaryDirectory() as d:
        root_pem = os.path.join(d, "root.pem")
        leaf_pem = os.path.join(d, "leaf.pem")
        chain_pem = os.path.join(d, "chain.pem")
        with open(root_pem, "w") as f:
            f.write(active[0]["RootCert"])
        certs = _split_pem(leaf["CertPEM"])
        with open(leaf_pem, "w") as f:
            f.write(certs[0])
        with open(chain_pem, "w") as f:
            f.write("".join(certs[1:]) or active[0]["RootCert"])
        args = ["openssl", "verify", "-CAfile", root_pem, "-untrusted", chain_pem, leaf_pem]
        out = subprocess.run(args, capture_output=True, text=True)
        assert out.returncode == 0, (out.stdout, out.stderr)

    # A token for another service cannot get web's leaf.
    try:
        s.agent.connect.ca.leaf("web", token=socat["SecretID"])
        raise AssertionError("socat's token got web's leaf")
    except ACLPermissionDenied:
        pass
    print("ok")


def _config_get(c, kind, name):
    try:
        return c.config.get(kind, name)
    except consul.ConsulException:
        return None


def _resolves(addr, secret):
    try:
        client(addr, secret).acl.token.read_self()
        return True
    except consul.ConsulException:
        return False


def _split_pem(text):
    out, cur = [], []
    for line in text.splitlines(keepends=True):
        cur.append(line)
        if line.startswith("-----END"):
            out.append("".join(cur))
            cur = []
    return out


if __name__ == "__main__":
    phase = sys.argv[1]
    if phase == "replication-token":
        replication_token(os.environ["PRIMARY_HTTP"], os.environ["MGMT"])
    elif phase == "guide":
        guide(os.environ["PRIMARY_HTTP"], os.environ["SECONDARY_HTTP"], os.environ["MGMT"])
    else:
        raise SystemExit(f"unknown phase {phase}")
