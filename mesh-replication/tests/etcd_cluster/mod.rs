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

use etcd_client::Client;

/// One etcd cluster of `n` members on 127.0.0.1.
pub struct EtcdCluster {
    members: Vec<Member>,
    _dir: tempfile::TempDir,
}

struct Member {
    name: String,
    client_url: String,
    args: Vec<String>,
    child: Option<Child>,
}

/// An error naming what is missing when there is no `etcd` binary to run.
pub fn require_etcd() -> Result<(), Box<dyn Error>> {
    match Command::new("etcd").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => Err("the etcd binary is not on the PATH (apt-get install etcd-server)".into()),
    }
}

fn free_port() -> Result<u16, Box<dyn Error>> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster answers.
    pub async fn start(n: usize) -> Result<Self, Box<dyn Error>> {
        require_etcd()?;
        let dir = tempfile::tempdir()?;
        let mut peers = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..n {
            peers.push(free_port()?);
            clients.push(free_port()?);
        }
        let initial: Vec<String> = (0..n)
            .map(|i| format!("m{i}=http://127.0.0.1:{}", peers[i]))
            .collect();
        let token = format!("mesh-test-{}", std::process::id());
        let mut members = Vec::new();
        for i in 0..n {
            let client_url = format!("http://127.0.0.1:{}", clients[i]);
            let peer_url = format!("http://127.0.0.1:{}", peers[i]);
            let data = dir.path().join(format!("m{i}"));
            let args = vec![
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
            members.push(Member {
                name: format!("m{i}"),
                client_url,
                args,
                child: None,
            });
        }
        let mut cluster = EtcdCluster { members, _dir: dir };
        for i in 0..n {
            cluster.start_member(i)?;
        }
        cluster.wait_ready(Duration::from_secs(20)).await?;
        Ok(cluster)
    }

    fn start_member(&mut self, i: usize) -> Result<(), Box<dyn Error>> {
        let m = &mut self.members[i];
        let child = Command::new("etcd")
            .args(&m.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting etcd member {}: {e}", m.name))?;
        m.child = Some(child);
        Ok(())
    }

    /// The client URLs of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
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

    /// Waits until a write through the cluster succeeds.
    pub async fn wait_ready(&self, within: Duration) -> Result<(), Box<dyn Error>> {
        let deadline = Instant::now() + within;
        let mut last = String::new();
        while Instant::now() < deadline {
            let opts = etcd_client::ConnectOptions::new()
                .with_connect_timeout(Duration::from_millis(500))
                .with_timeout(Duration::from_secs(1));
            match Client::connect(self.endpoints(), Some(opts)).await {
                Ok(mut c) => match c.put("mesh-test/ready", "", None).await {
                    Ok(_) => return Ok(()),
                    Err(e) => last = e.to_string(),
                },
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("the etcd cluster did not answer within {within:?}: {last}").into())
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
