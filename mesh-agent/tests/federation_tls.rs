//! The link between datacenters: the server port speaks TLS with the mesh CA's server
//! identity, a secondary verifies its primary against the mesh root it was given, and nothing
//! secret crosses the wire readable. A relay between the two datacenters records every byte
//! while replication and a forwarded write go through it; `openssl` inspects the server
//! port from outside.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{MGMT, agent_hcl, failed_start, free_port, start_agent, start_primary};

/// A TCP relay to `target` that keeps a copy of every byte, both ways.
fn recording_relay(target: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(target) else {
                continue;
            };
            for (mut from, mut to) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        match from.read(&mut buf) {
                            Ok(0) | Err(_) => {
                                let _ = to.shutdown(std::net::Shutdown::Write);
                                return;
                            }
                            Ok(n) => {
                                log.lock().unwrap().extend_from_slice(&buf[..n]);
                                if to.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        }
    });
    (addr, seen)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// `mesh ARGS` against `http` with the management token; its stdout.
fn mesh(http: SocketAddr, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mesh"))
        .args(args)
        .env("CONSUL_HTTP_ADDR", http.to_string())
        .env("CONSUL_HTTP_TOKEN", MGMT)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mesh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn secret_of(created: &str) -> String {
    created
        .lines()
        .find_map(|l| l.strip_prefix("SecretID:"))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn nothing_secret_crosses_between_datacenters_readable() {
    let dir = tempfile::tempdir().unwrap();
    let primary = start_primary(dir.path(), "primary");
    // A token whose secret replication carries, and the replication token itself.
    mesh(
        primary.http,
        &[
            "acl",
            "policy",
            "create",
            "-name",
            "replication",
            "-rules",
            r#"acl = "write"
operator = "write"
service_prefix "" { policy = "read" intentions = "read" }"#,
        ],
    );
    let repl = secret_of(&mesh(
        primary.http,
        &["acl", "token", "create", "-policy-name", "replication"],
    ));
    let other = secret_of(&mesh(
        primary.http,
        &["acl", "token", "create", "-description", "someone else's"],
    ));
    let (relay, seen) = recording_relay(primary.server);
    let (s_http, s_server) = (free_port(), free_port());
    let hcl = agent_hcl(
        "secondary",
        &dir.path().join("s"),
        s_http,
        s_server,
        Some(relay),
        Some(&repl),
    );
    let secondary = start_agent(dir.path(), "secondary", &hcl, s_http, s_server);

    // Replication works through the relay: the other token is known in the secondary.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new(env!("CARGO_BIN_EXE_mesh"))
            .args(["acl", "token", "read", "-self"])
            .env("CONSUL_HTTP_ADDR", secondary.http.to_string())
            .env("CONSUL_HTTP_TOKEN", &other)
            .output()
            .unwrap();
        if out.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "the token never replicated");
        std::thread::sleep(Duration::from_millis(100));
    }
    // And a write made in the secondary is forwarded through it.
    mesh(secondary.http, &["intention", "create", "web", "db"]);
    mesh(primary.http, &["intention", "get", "web", "db"]);

    // `?dc=` goes to the other datacenter's servers over mTLS on their server port, both ways
    // (from the secondary through the relay).
    dc_forwarding_works_both_ways(primary.http, secondary.http);

    let bytes = seen.lock().unwrap().clone();
    assert!(bytes.len() > 1000, "the relay carried the link");
    assert_eq!(bytes[0], 0x16, "the link opens with a TLS handshake record");
    for (what, secret) in [("replication token", &repl), ("a token secret", &other)] {
        assert!(
            !contains(&bytes, secret.as_bytes()),
            "{what} crossed readable"
        );
    }
    assert!(
        !contains(&bytes, MGMT.as_bytes()),
        "the management secret crossed readable"
    );
    assert!(
        !contains(&bytes, b"PRIVATE KEY"),
        "a private key crossed readable"
    );
    assert!(
        !contains(&bytes, b"SecretID"),
        "token records crossed readable"
    );

    // The secondary presents its own server identity once its CA is up (mTLS): the primary's
    // log shows no refusal, and the secondary's server port has its own server certificate.
    let san = server_port_san(secondary.server);
    assert!(san.contains("/agent/server/dc/secondary"), "{san}");
}

/// `GET /v1/agent/self[?dc=DC]` with the management token, through `curl`; the JSON, or
/// `None` when curl fails.
fn agent_self(http: SocketAddr, dc: Option<&str>) -> Option<serde_json::Value> {
    let query = dc.map(|d| format!("?dc={d}")).unwrap_or_default();
    let out = Command::new("curl")
        .args([
            "-sf",
            "--max-time",
            "10",
            "-H",
            &format!("X-Consul-Token: {MGMT}"),
        ])
        .arg(format!("http://{http}/v1/agent/self{query}"))
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

/// A leaf of service `web` from the mesh CA (through the agent at `http`, with the management
/// token, by `curl`), written to `<dir>/web.pem` and `<dir>/web.key`.
fn web_leaf_files(
    http: SocketAddr,
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let out = Command::new("curl")
        .args(["-sf", "-H", &format!("X-Consul-Token: {MGMT}")])
        .arg(format!("http://{http}/v1/agent/connect/ca/leaf/web"))
        .output()
        .unwrap();
    assert!(out.status.success(), "curl failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (cert, key) = (dir.join("web.pem"), dir.join("web.key"));
    std::fs::write(&cert, v["CertPEM"].as_str().unwrap()).unwrap();
    std::fs::write(&key, v["PrivateKeyPEM"].as_str().unwrap()).unwrap();
    (cert, key)
}

/// `?dc=` from each datacenter's agent to the other's answers as the other.
fn dc_forwarding_works_both_ways(primary: SocketAddr, secondary: SocketAddr) {
    for (from, to) in [(secondary, "primary"), (primary, "secondary")] {
        let v = agent_self(from, Some(to)).unwrap();
        assert_eq!(v["Config"]["Datacenter"], to, "{v}");
    }
}

/// The subject alternative names of the certificate `openssl s_client` is shown at `addr`.
fn server_port_san(addr: SocketAddr) -> String {
    let chain = s_client(addr, &[]);
    assert!(chain.contains("BEGIN CERTIFICATE"), "{chain}");
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    x509.stdin
        .take()
        .unwrap()
        .write_all(chain.as_bytes())
        .unwrap();
    let out = x509.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `openssl s_client -connect addr -showcerts EXTRA`, its output (stdout and stderr). With
/// `EXTRA`, it sends a line and reads on, so a refusal after the handshake (TLS 1.3 checks the
/// client's certificate after its Finished) shows as the alert it is.
fn s_client(addr: SocketAddr, extra: &[&str]) -> String {
    let mut cmd = Command::new("timeout");
    cmd.args([
        "10",
        "openssl",
        "s_client",
        "-connect",
        &addr.to_string(),
        "-showcerts",
    ])
    .args(extra);
    let out = if extra.is_empty() {
        cmd.stdin(Stdio::null()).output().unwrap()
    } else {
        let mut child = cmd
            .arg("-ign_eof")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"ping\n").unwrap();
        // The server answers the line with its alert and closes; then stdin ends.
        std::thread::sleep(Duration::from_millis(500));
        drop(stdin);
        child.wait_with_output().unwrap()
    };
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// [`s_client`] presenting the certificate and key in `cert` and `key`.
fn s_client_presenting(addr: SocketAddr, cert: &std::path::Path, key: &std::path::Path) -> String {
    s_client(
        addr,
        &[
            "-cert",
            cert.to_str().unwrap(),
            "-key",
            key.to_str().unwrap(),
        ],
    )
}

#[test]
fn openssl_sees_the_server_identity_chaining_to_the_mesh_root() {
    let dir = tempfile::tempdir().unwrap();
    let primary = start_primary(dir.path(), "primary");
    let san = server_port_san(primary.server);
    assert!(san.contains("URI:spiffe://"), "{san}");
    assert!(san.contains("/agent/server/dc/primary"), "{san}");
    assert!(san.contains("DNS:server.primary.consul"), "{san}");
    // The presented chain verifies against the root a secondary is given.
    let shown = s_client(primary.server, &[]);
    let leaf: String = shown
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .unwrap()
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .map(|l| format!("{l}\n"))
        .collect();
    let leaf_file = dir.path().join("leaf.pem");
    std::fs::write(&leaf_file, leaf).unwrap();
    let ca = dir.path().join(support::PRIMARY_CA);
    let verify = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&ca)
        .arg(&leaf_file)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );

    // A client certificate from another CA is refused in the handshake, and the port keeps
    // serving.
    let key = dir.path().join("rogue.key");
    let cert = dir.path().join("rogue.pem");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=rogue", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success());
    let rogue = s_client_presenting(primary.server, &cert, &key);
    assert!(rogue.contains("alert certificate unknown"), "{rogue}");
    assert!(server_port_san(primary.server).contains("/agent/server/dc/primary"));
}

#[test]
fn a_secondary_given_another_mesh_root_fails_start_up_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let primary = start_primary(dir.path(), "primary");
    // Another mesh's root in the place of this primary's.
    let other_dir = tempfile::tempdir().unwrap();
    let _other = start_primary(other_dir.path(), "other");
    std::fs::copy(
        other_dir.path().join(support::PRIMARY_CA),
        dir.path().join(support::PRIMARY_CA),
    )
    .unwrap();
    let hcl = agent_hcl(
        "secondary",
        &dir.path().join("s"),
        free_port(),
        free_port(),
        Some(primary.server),
        Some(MGMT),
    );
    let started = Instant::now();
    let text = failed_start(dir.path(), "secondary", &hcl);
    assert!(
        text.contains("presented a certificate this secondary does not trust"),
        "{text}"
    );
    eprintln!("untrusted primary refused after {:?}", started.elapsed());

    // No CA file at all: refused at start, naming the setting.
    let with_ca = agent_hcl(
        "secondary",
        &dir.path().join("s2"),
        free_port(),
        free_port(),
        Some(primary.server),
        Some(MGMT),
    );
    let no_ca = with_ca.split("tls {").next().unwrap().to_owned();
    let text = failed_start(dir.path(), "secondary-no-ca", &no_ca);
    assert!(text.contains("tls.internal_rpc.ca_file"), "{text}");
}

/// A TLS client of the primary's server port that verifies the primary against the root in
/// `ca_file` and presents no certificate: the framed replication transport over it.
fn certless_transport(
    ca_file: &std::path::Path,
    server: SocketAddr,
) -> (
    mesh::ca::tls::TlsIdentity,
    mesh::replication_engine::FramedTransport<
        mesh::replication_engine::tls::TlsConnector<mesh::replication_engine::TcpConnector>,
    >,
) {
    use mesh::ca::tls::{ExpectedServer, TlsIdentity, TrustBundle};
    use mesh::core::{ServerId, Sni, SpiffeId};
    let pem = std::fs::read_to_string(ca_file).unwrap();
    let certs = mesh::ca::x509::certs_from_pem(&pem).unwrap();
    let info = mesh::ca::x509::CertInfo::parse(&certs[0]).unwrap();
    let td: mesh::core::TrustDomain = info.uris[0]
        .strip_prefix("spiffe://")
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let identity = TlsIdentity::new(TrustBundle::from_certs(td.clone(), certs).unwrap());
    let primary: mesh::core::DatacenterName = "primary".parse().unwrap();
    let cfg = identity
        .client_config(ExpectedServer::id(SpiffeId::Server(ServerId::new(
            td,
            primary.clone(),
        ))))
        .unwrap();
    let sni = Sni::server(None, primary, "consul".parse().unwrap());
    let connector = mesh::replication_engine::tls::TlsConnector::new(
        mesh::replication_engine::TcpConnector::new(server),
        Arc::new(cfg),
        &sni,
    )
    .unwrap();
    (
        identity,
        mesh::replication_engine::FramedTransport::new(connector),
    )
}

#[test]
fn the_server_port_serves_replication_only_to_servers_presenting_their_certificate() {
    use mesh::replication_engine::{
        EnrollRequest, ListRequest, RemoteErrorKind, SecretToken, Transport, TransportError,
    };
    let dir = tempfile::tempdir().unwrap();
    let primary = start_primary(dir.path(), "primary");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (identity, certless) =
        certless_transport(&dir.path().join(support::PRIMARY_CA), primary.server);
    let list = || ListRequest {
        token: SecretToken::new(MGMT),
        table: mesh::tables::lookup(mesh::tables::ACL_TOKENS).unwrap(),
        min_index: mesh::core::Index::ZERO,
        wait: Duration::ZERO,
    };
    // The management token is no key to the tables without a server certificate.
    match rt.block_on(certless.list(list())) {
        Err(TransportError::Remote(r)) => {
            assert_eq!(r.kind, RemoteErrorKind::CertificateRequired, "{r}")
        }
        other => panic!("listed without a client certificate: {other:?}"),
    }

    // Enrollment is what a connection without a certificate may ask, and only for a server
    // of another datacenter, with a token that holds operator:write.
    let td: mesh::core::TrustDomain = identity.bundle().trust_domain().clone();
    let csr_for = |id: mesh::core::SpiffeId| mesh::ca::new_leaf_request(&id, &[]).unwrap();
    let server_of = |dc: &str| {
        mesh::core::SpiffeId::Server(mesh::core::ServerId::new(td.clone(), dc.parse().unwrap()))
    };
    let enroll = |token: &str, csr: &str| {
        rt.block_on(certless.enroll(EnrollRequest {
            token: SecretToken::new(token),
            csr_pem: csr.to_owned(),
        }))
    };
    let own = csr_for(server_of("primary"));
    let err = enroll(MGMT, &own.csr_pem).unwrap_err();
    assert!(format!("{err:?}").contains("Denied"), "{err:?}");
    let web = mesh::core::SpiffeId::Service(mesh::core::ServiceId::new(
        td.clone(),
        "primary".parse().unwrap(),
        "web".parse().unwrap(),
    ));
    let err = enroll(MGMT, &csr_for(web).csr_pem).unwrap_err();
    assert!(format!("{err:?}").contains("InvalidRequest"), "{err:?}");
    let other = csr_for(server_of("secondary"));
    let err = enroll("00000000-0000-0000-0000-000000000000", &other.csr_pem).unwrap_err();
    assert!(err.is_denied(), "{err:?}");
    let chain = enroll(MGMT, &other.csr_pem).unwrap();

    // With the enrolled certificate the same client is served.
    let leaf = mesh::ca::LeafCert::new(
        mesh::ca::IssuedLeaf::from_pem(&chain, String::new()).unwrap(),
        other.key,
    );
    identity.set_leaf(&leaf).unwrap();
    // A fresh transport: the first one's pooled connection presented nothing.
    let served = {
        use mesh::ca::tls::ExpectedServer;
        use mesh::core::{ServerId, Sni, SpiffeId};
        let primary_dc: mesh::core::DatacenterName = "primary".parse().unwrap();
        let cfg = identity
            .client_config(ExpectedServer::id(SpiffeId::Server(ServerId::new(
                td.clone(),
                primary_dc.clone(),
            ))))
            .unwrap();
        mesh::replication_engine::FramedTransport::new(
            mesh::replication_engine::tls::TlsConnector::new(
                mesh::replication_engine::TcpConnector::new(primary.server),
                Arc::new(cfg),
                &Sni::server(None, primary_dc, "consul".parse().unwrap()),
            )
            .unwrap(),
        )
    };
    let listing = rt.block_on(served.list(list())).unwrap();
    assert!(!listing.records.is_empty());

    // A service identity of this mesh (a leaf any service token can get) is refused in the
    // handshake, and the port keeps serving.
    let (cert, key) = web_leaf_files(primary.http, dir.path());
    let refused = s_client_presenting(primary.server, &cert, &key);
    assert!(refused.contains("alert certificate unknown"), "{refused}");

    // The HTTP API the server port serves to other datacenters' servers (by ALPN) is closed to
    // a client without a certificate, whatever its token.
    let out = Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "10",
            "--http1.1",
            "-H",
            &format!("X-Consul-Token: {MGMT}"),
        ])
        .arg(format!("https://{}/v1/agent/self", primary.server))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "curl without a certificate was answered"
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(server_port_san(primary.server).contains("/agent/server/dc/primary"));
    assert!(rt.block_on(served.list(list())).is_ok());
}

/// The SHA-256 fingerprint of the certificate in `pem_file`, as `openssl` prints it.
fn openssl_sha256(pem_file: &std::path::Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(pem_file)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .split_once('=')
        .unwrap()
        .1
        .to_owned()
}

/// `hcl` with its `tls { internal_rpc { ca_file } }` block replaced by the root's fingerprint.
fn with_fingerprint(hcl: &str, fingerprint: &str) -> String {
    let head = hcl.split("tls {").next().unwrap();
    format!(
        "{head}tls {{\n  internal_rpc {{\n    primary_root_sha256 = \"{fingerprint}\"\n  }}\n}}\n"
    )
}

#[test]
fn a_secondary_given_only_the_primary_root_fingerprint_federates_over_mtls() {
    let dir = tempfile::tempdir().unwrap();
    let primary = start_primary(dir.path(), "primary");
    let fingerprint = openssl_sha256(&dir.path().join(support::PRIMARY_CA));
    // `mesh ca roots` prints the same fingerprint.
    let roots = mesh(primary.http, &["ca", "roots"]);
    assert!(roots.contains(&fingerprint), "{roots}");

    let (s_http, s_server) = (free_port(), free_port());
    let hcl = with_fingerprint(
        &agent_hcl(
            "secondary",
            &dir.path().join("s"),
            s_http,
            s_server,
            Some(primary.server),
            Some(MGMT),
        ),
        &fingerprint,
    );
    let secondary = start_agent(dir.path(), "secondary", &hcl, s_http, s_server);
    // It enrolled and replicates: a write made in the secondary is forwarded and read back.
    mesh(secondary.http, &["intention", "create", "web", "db"]);
    mesh(primary.http, &["intention", "get", "web", "db"]);
    let v = agent_self(secondary.http, Some("primary")).unwrap();
    assert_eq!(v["Config"]["Datacenter"], "primary", "{v}");

    // A fingerprint of another root: start-up fails within seconds, saying so.
    let other_dir = tempfile::tempdir().unwrap();
    let _other = start_primary(other_dir.path(), "other");
    let wrong = openssl_sha256(&other_dir.path().join(support::PRIMARY_CA));
    let hcl = with_fingerprint(
        &agent_hcl(
            "secondary",
            &dir.path().join("s2"),
            free_port(),
            free_port(),
            Some(primary.server),
            Some(MGMT),
        ),
        &wrong,
    );
    let started = Instant::now();
    let text = failed_start(dir.path(), "secondary-wrong-fingerprint", &hcl);
    assert!(
        text.contains("fingerprint of tls.internal_rpc.primary_root_sha256"),
        "{text}"
    );
    eprintln!("wrong fingerprint refused after {:?}", started.elapsed());
}

/// Runs `openssl ARGS` in `dir`, failing the test when it fails.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An operator's CA (`ops-ca.pem`) and, for each datacenter, a server certificate it signed
/// (`<dc>.pem`, `<dc>.key`) naming `spiffe://ops.example/agent/server/dc/<dc>`.
fn operator_pki(dir: &std::path::Path, dcs: &[&str]) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=ops-ca",
            "-keyout",
            "ops-ca.key",
            "-out",
            "ops-ca.pem",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    for dc in dcs {
        let ext = format!("{dc}.ext");
        std::fs::write(
            dir.join(&ext),
            format!(
                "subjectAltName=URI:spiffe://ops.example/agent/server/dc/{dc},DNS:server.{dc}.consul\n\
                 extendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n\
                 keyUsage=critical,digitalSignature\n"
            ),
        )
        .unwrap();
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                &format!("/CN=server.{dc}.consul"),
                "-keyout",
                &format!("{dc}.key"),
                "-out",
                &format!("{dc}.csr"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{dc}.csr"),
                "-CA",
                "ops-ca.pem",
                "-CAkey",
                "ops-ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &format!("{dc}.pem"),
                "-extfile",
                &ext,
            ],
        );
    }
}

/// The `tls { internal_rpc { ... } }` block with the operator's files of `dc` in `dir`.
fn operator_tls(dir: &std::path::Path, dc: &str) -> String {
    format!(
        "tls {{\n  internal_rpc {{\n    ca_file = \"{}\"\n    cert_file = \"{}\"\n    key_file = \"{}\"\n  }}\n}}\n",
        dir.join("ops-ca.pem").display(),
        dir.join(format!("{dc}.pem")).display(),
        dir.join(format!("{dc}.key")).display()
    )
}

#[test]
fn operator_certificate_files_federate_over_mtls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    std::fs::create_dir(&pki).unwrap();
    operator_pki(&pki, &["primary", "secondary"]);

    let (p_http, p_server) = (free_port(), free_port());
    let hcl = agent_hcl(
        "primary",
        &dir.path().join("p"),
        p_http,
        p_server,
        None,
        None,
    ) + &operator_tls(&pki, "primary");
    let primary = start_agent(dir.path(), "primary", &hcl, p_http, p_server);
    // The server port presents the operator's certificate, which verifies against its CA.
    let san = server_port_san(primary.server);
    assert!(
        san.contains("spiffe://ops.example/agent/server/dc/primary"),
        "{san}"
    );
    let verify = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(pki.join("ops-ca.pem"))
        .arg(pki.join("primary.pem"))
        .output()
        .unwrap();
    assert!(verify.status.success());

    let (s_http, s_server) = (free_port(), free_port());
    let with_ca = agent_hcl(
        "secondary",
        &dir.path().join("s"),
        s_http,
        s_server,
        Some(primary.server),
        Some(MGMT),
    );
    let hcl = with_ca.split("tls {").next().unwrap().to_owned() + &operator_tls(&pki, "secondary");
    let secondary = start_agent(dir.path(), "secondary", &hcl, s_http, s_server);
    mesh(secondary.http, &["intention", "create", "web", "db"]);
    mesh(primary.http, &["intention", "get", "web", "db"]);
    dc_forwarding_works_both_ways(primary.http, secondary.http);
    // A certificate the operator's CA did not sign (the mesh CA's own service leaf) is
    // refused.
    let (cert, key) = web_leaf_files(primary.http, dir.path());
    let refused = s_client_presenting(primary.server, &cert, &key);
    assert!(refused.contains("alert"), "{refused}");

    // A certificate naming another server's identity does not start.
    let hcl = agent_hcl(
        "secondary",
        &dir.path().join("s2"),
        free_port(),
        free_port(),
        Some(primary.server),
        Some(MGMT),
    );
    let wrong = hcl.split("tls {").next().unwrap().to_owned() + &operator_tls(&pki, "primary");
    let text = failed_start(dir.path(), "secondary-wrong-cert", &wrong);
    assert!(text.contains("not this server's identity"), "{text}");
}
