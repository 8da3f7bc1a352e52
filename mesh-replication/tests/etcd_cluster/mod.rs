//! Real etcd clusters for the tests: `etcd` processes on loopback ports, each member with its
//! own data directory, stopped (and their directories removed) when the cluster is dropped.
//!
//! The `etcd` binary must be on the PATH (Debian: `apt-get install etcd-server`). Without it
//! the tests fail, naming what is missing: they are built only with the `etcd` feature, which
//! is asked for only where etcd is to be used.
#![allow(dead_code, unreachable_pub)]

use std::error::Error;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mesh_replication::{EtcdOptions, EtcdStore, EtcdTls, Store, TableName, Value};

/// A key and its value, as read back from etcd.
pub type KeyValue = (String, Vec<u8>);

/// One etcd cluster of `n` members on a loopback address.
pub struct EtcdCluster {
    members: Vec<Member>,
    tls: Option<TlsFiles>,
    _dir: tempfile::TempDir,
}

/// The files of a cluster that speaks TLS to its clients and requires their certificates.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA that signed the members' and the client's certificates.
    pub ca: std::path::PathBuf,
    /// A client certificate the members accept, and its key.
    pub client_cert: std::path::PathBuf,
    /// The client key.
    pub client_key: std::path::PathBuf,
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) -> Result<(), Box<dyn Error>> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .map_err(|e| format!("running openssl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

/// A CA, a server certificate for `ip` and a client certificate, made by `openssl`.
fn make_tls(dir: &std::path::Path, ip: &str) -> Result<TlsFiles, Box<dyn Error>> {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=etcd test CA"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(dir, &ca)?;
    for (name, ext) in [
        (
            "server",
            format!("subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth"),
        ),
        ("client", "extendedKeyUsage=clientAuth".to_owned()),
    ] {
        let mut req = vec!["req", "-subj"];
        let subj = format!("/CN=etcd test {name}");
        req.push(subj.as_str());
        req.extend(ec);
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        req.extend(["-keyout", key.as_str(), "-out", csr.as_str()]);
        openssl(dir, &req)?;
        let ext_file = format!("{name}.ext");
        std::fs::write(dir.join(&ext_file), ext)?;
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                csr.as_str(),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                ext_file.as_str(),
                "-out",
                pem.as_str(),
            ],
        )?;
    }
    Ok(TlsFiles {
        ca: dir.join("ca.pem"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    })
}

struct Member {
    name: String,
    client_url: String,
    args: Vec<String>,
    log: std::path::PathBuf,
    child: Option<Child>,
}

/// An error naming what is missing when there is no `etcd` binary to run.
pub fn require_etcd() -> Result<(), Box<dyn Error>> {
    match Command::new("etcd").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => Err("the etcd binary is not on the PATH (apt-get install etcd-server)".into()),
    }
}

/// A loopback address of its own for each cluster (127.x.y.z), so that clusters started at
/// once by parallel tests cannot take each other's ports.
fn own_loopback() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let seed = std::process::id()
        .wrapping_mul(2_654_435_761)
        .wrapping_add(n.wrapping_mul(40_503));
    let (a, b, c) = ((seed >> 16) as u8, (seed >> 8) as u8, (seed as u8).max(2));
    format!("127.{a}.{b}.{c}")
}

fn free_port(ip: &str) -> Result<u16, Box<dyn Error>> {
    Ok(TcpListener::bind((ip, 0))?.local_addr()?.port())
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster answers.
    pub async fn start(n: usize) -> Result<Self, Box<dyn Error>> {
        Self::start_with(n, false).await
    }

    /// Starts `n` members that speak TLS to clients and require a client certificate
    /// (`--client-cert-auth`), with certificates made by `openssl`.
    pub async fn start_tls(n: usize) -> Result<Self, Box<dyn Error>> {
        Self::start_with(n, true).await
    }

    async fn start_with(n: usize, with_tls: bool) -> Result<Self, Box<dyn Error>> {
        require_etcd()?;
        let dir = tempfile::tempdir()?;
        let ip = own_loopback();
        let tls = if with_tls {
            Some(make_tls(dir.path(), &ip)?)
        } else {
            None
        };
        let scheme = if with_tls { "https" } else { "http" };
        let mut peers = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..n {
            peers.push(free_port(&ip)?);
            clients.push(free_port(&ip)?);
        }
        let initial: Vec<String> = (0..n)
            .map(|i| format!("m{i}=http://{ip}:{}", peers[i]))
            .collect();
        let token = format!("mesh-test-{}", std::process::id());
        let mut members = Vec::new();
        for i in 0..n {
            let client_url = format!("{scheme}://{ip}:{}", clients[i]);
            let peer_url = format!("http://{ip}:{}", peers[i]);
            let data = dir.path().join(format!("m{i}"));
            let mut args: Vec<String> = vec![
                "--name".into(),
                format!("m{i}"),
                "--data-dir".into(),
                data.display().to_string(),
                "--listen-client-urls".into(),
                client_url.clone(),
                "--advertise-client-urls".into(),
                client_url.clone(),
                "--listen-peer-urls".into(),
                peer_url.clone(),
                "--initial-advertise-peer-urls".into(),
                peer_url,
                "--initial-cluster".into(),
                initial.join(","),
                "--initial-cluster-state".into(),
                "new".into(),
                "--initial-cluster-token".into(),
                token.clone(),
                "--logger".into(),
                "zap".into(),
                "--log-level".into(),
                "error".into(),
            ];
            if let Some(_files) = &tls {
                let path = |f: &str| dir.path().join(f).display().to_string();
                args.extend([
                    "--cert-file".into(),
                    path("server.pem"),
                    "--key-file".into(),
                    path("server.key"),
                    "--trusted-ca-file".into(),
                    path("ca.pem"),
                    "--client-cert-auth".into(),
                ]);
            }
            members.push(Member {
                name: format!("m{i}"),
                client_url,
                args,
                log: dir.path().join(format!("m{i}.log")),
                child: None,
            });
        }
        let mut cluster = EtcdCluster {
            members,
            tls,
            _dir: dir,
        };
        for i in 0..n {
            cluster.start_member(i)?;
        }
        cluster.wait_ready(Duration::from_secs(20)).await?;
        Ok(cluster)
    }

    fn start_member(&mut self, i: usize) -> Result<(), Box<dyn Error>> {
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)?;
        let child = Command::new("etcd")
            .args(&m.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting etcd member {}: {e}", m.name))?;
        m.child = Some(child);
        Ok(())
    }

    /// The client URLs of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// The TLS files, for a cluster started with [`EtcdCluster::start_tls`].
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// Options for a store under `prefix` on this cluster (with TLS and the client
    /// certificate when the cluster speaks TLS).
    pub fn options(&self, prefix: &str) -> Result<EtcdOptions, Box<dyn Error>> {
        let mut opts = EtcdOptions::new(self.endpoints(), prefix);
        if let Some(files) = &self.tls {
            opts.tls = Some(
                EtcdTls::new(std::fs::read(&files.ca)?).with_client_identity(
                    std::fs::read(&files.client_cert)?,
                    std::fs::read(&files.client_key)?,
                ),
            );
        }
        Ok(opts)
    }

    /// Kills member `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its data directory.
    pub fn restart(&mut self, i: usize) -> Result<(), Box<dyn Error>> {
        self.kill(i);
        // Now an existing cluster: the member rejoins with its data.
        if let Some(pos) = self.members[i].args.iter().position(|a| a == "new") {
            self.members[i].args[pos] = "existing".into();
        }
        self.start_member(i)
    }

    /// Every key under `prefix` with its value, read with `etcdctl` (Debian: etcd-client).
    pub fn dump(&self, prefix: &str) -> Result<Vec<KeyValue>, Box<dyn Error>> {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints().join(",")));
        if let Some(files) = &self.tls {
            cmd.arg(format!("--cacert={}", files.ca.display()))
                .arg(format!("--cert={}", files.client_cert.display()))
                .arg(format!("--key={}", files.client_key.display()));
        }
        let out = cmd
            .args(["get", "--prefix", prefix, "--write-out=fields"])
            .output()
            .map_err(|e| format!("running etcdctl (apt-get install etcd-client): {e}"))?;
        if !out.status.success() {
            return Err(format!("etcdctl: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        // `fields` output: one `"Key" : "..."` and one `"Value" : "..."` line per key, the
        // strings quoted as Go does (printable bytes as they are, others escaped).
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut pairs = Vec::new();
        let mut key = None;
        for line in text.lines() {
            if let Some(k) = line.strip_prefix("\"Key\" : ") {
                key = Some(k.trim_matches('"').to_owned());
            } else if let Some(v) = line.strip_prefix("\"Value\" : ")
                && let Some(k) = key.take()
            {
                pairs.push((k, v.trim_matches('"').as_bytes().to_vec()));
            }
        }
        Ok(pairs)
    }

    /// Waits until a write through the cluster succeeds.
    pub async fn wait_ready(&self, within: Duration) -> Result<(), Box<dyn Error>> {
        let deadline = Instant::now() + within;
        let mut last = String::new();
        while Instant::now() < deadline {
            let mut opts = self.options("mesh-test/ready")?;
            opts.request_timeout = Duration::from_secs(1);
            opts.retry_for = Duration::ZERO;
            match EtcdStore::open(opts).await {
                Ok(s) => {
                    let t = TableName::new("ready")?;
                    match s.upsert(&t, "probe", Value::bytes(&b""[..]), None).await {
                        Ok(_) => return Ok(()),
                        Err(e) => last = e.to_string(),
                    }
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let logs: Vec<String> = self
            .members
            .iter()
            .map(|m| {
                let text = std::fs::read_to_string(&m.log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(5).collect();
                format!("{}: {}", m.name, tail.join(" | "))
            })
            .collect();
        Err(format!(
            "the etcd cluster did not answer within {within:?}: {last}; logs: {}",
            logs.join("; ")
        )
        .into())
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
