//! The guide "Connect services across datacenters with mesh gateways", run the way an operator
//! runs it: every agent, gateway, sidecar and command is its own `mesh` process, and the two
//! datacenters live in two network namespaces joined by one link, as two hosts would be.
//!
//! It proves that, from the guide's own files and commands:
//! - the secondary replicates from the primary over the link, over TLS verified against the
//!   mesh root `mesh ca roots -pem` printed, with the token the primary made;
//! - `nc 127.0.0.1 8181` next to web (secondary) does not reach socat (primary) while ACLs
//!   deny by default, and echoes once `mesh intention create web socat` is run in the
//!   secondary;
//! - with two gateways per datacenter, killing one in each keeps new connections working;
//! - with the primary's agent stopped, an open connection keeps echoing and new ones still get
//!   through: the sidecars and gateways serve from what they last learned;
//! - gateways, sidecars and agents stop cleanly (exit 0) on SIGTERM.
//!
//! Needs root, iproute2, socat and OpenBSD netcat. Without root or `ip` it fails, unless
//! `MESH_SKIP_NETNS=1` skips it knowingly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // failing unwraps fail tests

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Namespace A's address on the link (the primary).
const A_IP: &str = "10.251.0.1";
/// Namespace B's address on the link (the secondary).
const B_IP: &str = "10.251.0.2";
/// The initial management token of testdata/guide/agents/primary.hcl.
const MGMT: &str = "b1gs33cr3-0000-4000-8000-000000000001";
/// Every agent's HTTP API, inside its own namespace.
const HTTP: &str = "127.0.0.1:8500";
/// The test's name, for skip and failure messages.
const NAME: &str = "the_guide_as_processes_in_two_namespaces";

fn mesh_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mesh")
}

/// testdata/guide of the workspace.
fn guide() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/guide")
}

/// Whether this process runs as root (uid 0), read from `/proc/self/status`.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The test cannot run here. It fails, saying why, unless the caller opted out explicitly with
/// `MESH_SKIP_NETNS=1`: then it says on the real stderr that it was skipped and why.
fn skip(test: &str, why: &str) {
    if std::env::var_os("MESH_SKIP_NETNS").is_some_and(|v| v == "1") {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test} (MESH_SKIP_NETNS=1): {why}"
        );
        return;
    }
    panic!(
        "{test} cannot run: {why}. Run the tests as root with iproute2, or set \
         MESH_SKIP_NETNS=1 to skip this test knowingly."
    );
}

/// Whether `prog` can be run (found on PATH).
fn installed(prog: &str, arg: &str) -> bool {
    Command::new(prog)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Two namespaces and the veth pair between them; removed on drop, whatever happened.
struct Namespaces {
    a: String,
    b: String,
    veth_a: String,
}

impl Namespaces {
    /// The namespace and link names of one test (`tag`) of this process.
    fn names(tag: char) -> (String, String, String, String) {
        let pid = std::process::id();
        (
            format!("mg{tag}-a-{pid}"),
            format!("mg{tag}-b-{pid}"),
            format!("m{tag}a{pid}"),
            format!("m{tag}b{pid}"),
        )
    }

    fn create(tag: char) -> Result<Self, String> {
        let (a, b, va, vb) = Self::names(tag);
        // Dropped (and so cleaned up) if a later step fails.
        let ns = Namespaces {
            a: a.clone(),
            b: b.clone(),
            veth_a: va.clone(),
        };
        ip(&["netns", "add", &a])?;
        ip(&["netns", "add", &b])?;
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb])?;
        ip(&["link", "set", &va, "netns", &a])?;
        ip(&["link", "set", &vb, "netns", &b])?;
        ip(&["-n", &a, "addr", "add", &format!("{A_IP}/24"), "dev", &va])?;
        ip(&["-n", &b, "addr", "add", &format!("{B_IP}/24"), "dev", &vb])?;
        for (n, v) in [(&a, &va), (&b, &vb)] {
            ip(&["-n", n, "link", "set", "lo", "up"])?;
            ip(&["-n", n, "link", "set", v, "up"])?;
        }
        Ok(ns)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end inside it, and with it the pair; the link
        // is deleted by name too in case it never left the root namespace.
        let _ = ip(&["link", "del", &self.veth_a]);
        for n in [&self.a, &self.b] {
            let _ = ip(&["netns", "del", n]);
        }
    }
}

/// A long-running process (agent, gateway, sidecar, socat), its stdout and stderr in a log
/// file. Killed on drop.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status if it has exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().unwrap();
        }
        self.status
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill {sig} {} ({})", self.pid(), self.name);
    }

    /// Waits (bounded) for the process to exit.
    fn wait_exit(&mut self, bound: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Everything the test started: processes, their logs, a transcript of every command; on a
/// failure, every log is printed. Fields drop in order: processes, then the namespaces, then
/// the temporary directory.
struct World {
    procs: Vec<Proc>,
    /// Every one-shot command run, with its output.
    transcript: PathBuf,
    ns: Namespaces,
    dir: tempfile::TempDir,
}

impl Drop for World {
    fn drop(&mut self) {
        for p in &mut self.procs {
            if p.exited().is_none() {
                let _ = p.child.kill();
                let _ = p.child.wait();
            }
        }
        if std::thread::panicking() {
            let mut all = String::new();
            all.push_str(&format!(
                "\n===== commands run =====\n{}",
                std::fs::read_to_string(&self.transcript).unwrap_or_default()
            ));
            for p in &self.procs {
                all.push_str(&format!(
                    "\n===== {} (pid {}, {:?}) =====\n{}",
                    p.name,
                    p.child.id(),
                    p.status,
                    p.log_text()
                ));
            }
            eprintln!("{all}");
        }
    }
}

/// Which namespace a command runs in.
#[derive(Clone, Copy, Debug)]
enum Ns {
    A,
    B,
}

impl World {
    fn ns(&self, ns: Ns) -> &str {
        match ns {
            Ns::A => &self.ns.a,
            Ns::B => &self.ns.b,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `ip netns exec NS PROG ARGS...` with the CLI's environment cleared of anything the
    /// caller's shell might carry.
    fn command(&self, ns: Ns, prog: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.ns(ns), prog])
            .args(args)
            .env_remove("CONSUL_HTTP_ADDR")
            .env_remove("CONSUL_HTTP_TOKEN")
            .env_remove("CONSUL_HTTP_TOKEN_FILE")
            .env_remove("CONSUL_CACERT")
            .env_remove("RUST_LOG");
        cmd
    }

    fn note(&self, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.transcript)
            .unwrap();
        let _ = writeln!(f, "{text}");
    }

    /// Starts a long-running process in `ns`; its output goes to `<name>.log`.
    fn spawn(&mut self, ns: Ns, name: &str, prog: &str, args: &[&str], token: Option<&str>) {
        let log = self.path(&format!("{name}.log"));
        let out = File::create(&log).unwrap();
        let mut cmd = self.command(ns, prog, args);
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        if prog == mesh_bin() {
            cmd.env("CONSUL_HTTP_ADDR", HTTP);
            if let Some(t) = token {
                cmd.env("CONSUL_HTTP_TOKEN", t);
            }
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({prog}): {e}"));
        self.note(&format!(
            "[{ns:?}] started {name} (pid {}): {prog} {}",
            child.id(),
            args.join(" ")
        ));
        self.procs.push(Proc {
            name: name.to_owned(),
            child,
            log,
            status: None,
        });
    }

    fn proc(&mut self, name: &str) -> &mut Proc {
        self.procs
            .iter_mut()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no process {name}"))
    }

    /// Runs `mesh ARGS...` in `ns` against the agent there, with `token`; bounded by
    /// coreutils' `timeout` so that a hung command fails the test instead of hanging it.
    fn mesh(&self, ns: Ns, token: &str, args: &[&str]) -> Output {
        let mut full = vec!["60", mesh_bin()];
        full.extend_from_slice(args);
        let out = self
            .command(ns, "timeout", &full)
            .env("CONSUL_HTTP_ADDR", HTTP)
            .env("CONSUL_HTTP_TOKEN", token)
            .output()
            .unwrap();
        self.note(&format!(
            "[{ns:?}] $ mesh {}\n  exit {:?}\n  stdout: {}\n  stderr: {}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
        out
    }

    /// `mesh ARGS...` that must succeed; its stdout.
    fn mesh_ok(&self, ns: Ns, token: &str, args: &[&str]) -> String {
        let out = self.mesh(ns, token, args);
        assert!(
            out.status.success(),
            "[{ns:?}] mesh {} failed ({:?}):\n{}\n{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `mesh acl token create ARGS...` in the primary; the new token's SecretID.
    fn token_create(&self, args: &[&str]) -> String {
        let mut full = vec!["acl", "token", "create"];
        full.extend_from_slice(args);
        let out = self.mesh_ok(Ns::A, MGMT, &full);
        out.lines()
            .find_map(|l| l.strip_prefix("SecretID:"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|| panic!("no SecretID in:\n{out}"))
    }

    /// `echo WORD | nc -N 127.0.0.1 PORT` in `ns`: what came back.
    fn nc(&self, ns: Ns, port: u16, word: &str) -> String {
        let script = format!("echo {word} | nc -N -w 5 127.0.0.1 {port}");
        let out = self
            .command(ns, "timeout", &["15", "sh", "-c", &script])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        self.note(&format!(
            "[{ns:?}] $ {script}\n  exit {:?}\n  stdout: {}\n  stderr: {}",
            out.status.code(),
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
        text
    }

    /// Fails when a process the test still needs has exited.
    fn assert_running(&mut self, name: &str) {
        let p = self.proc(name);
        if let Some(s) = p.exited() {
            panic!("{name} exited with {s}:\n{}", p.log_text());
        }
    }

    /// Waits (bounded) until `name`'s log contains `text`, failing if it exits first.
    fn wait_log(&mut self, name: &str, text: &str, bound: Duration) {
        let deadline = Instant::now() + bound;
        loop {
            self.assert_running(name);
            if self.proc(name).log_text().contains(text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not log {text:?} within {bound:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (bounded) until `mesh ARGS` in `ns` succeeds while `proc` keeps running.
    fn wait_mesh(&mut self, ns: Ns, proc: &str, token: &str, args: &[&str], what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.assert_running(proc);
            if self.mesh(ns, token, args).status.success() {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: not within 60 s");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A connection held open through the mesh: `socat - TCP:127.0.0.1:PORT` in a namespace,
/// written to and read from by the test.
struct Held {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Held {
    fn open(world: &World, ns: Ns, port: u16) -> Self {
        let mut child = world
            .command(ns, "socat", &["-", &format!("TCP:127.0.0.1:{port}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Held {
            child,
            stdin,
            lines,
        }
    }

    /// Sends `word` and returns what came back (bounded).
    fn echo(&mut self, word: &str) -> Result<String, String> {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{word}").map_err(|e| format!("write: {e}"))?;
        stdin.flush().map_err(|e| format!("flush: {e}"))?;
        self.lines
            .recv_timeout(Duration::from_secs(10))
            .map_err(|e| format!("no echo within 10 s: {e}"))
    }

    /// Closes the connection from the client side and waits for the client to exit.
    fn close(&mut self) {
        self.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The two namespaces and a world to run processes in, after checking what the test needs;
/// `None` when the test is skipped knowingly (`MESH_SKIP_NETNS=1`), a panic when it cannot
/// run otherwise.
fn world(tag: char, test: &str) -> Option<World> {
    if !is_root() {
        skip(test, "needs root (network namespaces)");
        return None;
    }
    if ip(&["-V"]).is_err() {
        skip(test, "`ip` (iproute2) is not installed");
        return None;
    }
    assert!(
        installed("socat", "-V"),
        "socat is not installed (the guide's backend service): apt-get install -y socat"
    );
    assert!(
        installed("nc", "-h"),
        "nc is not installed (the guide's client): apt-get install -y netcat-openbsd"
    );
    let ns = match Namespaces::create(tag) {
        Ok(ns) => ns,
        Err(e) => {
            // Root without CAP_SYS_ADMIN (an unprivileged container) cannot create them.
            let (a, b, va, _) = Namespaces::names(tag);
            let _ = ip(&["link", "del", &va]);
            let _ = ip(&["netns", "del", &a]);
            let _ = ip(&["netns", "del", &b]);
            skip(test, &format!("cannot create network namespaces: {e}"));
            return None;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    Some(World {
        procs: Vec::new(),
        transcript: dir.path().join("commands.log"),
        ns,
        dir,
    })
}

#[test]
fn the_guide_as_processes_in_two_namespaces() {
    let Some(mut w) = world('g', NAME) else {
        return;
    };
    let started = Instant::now();
    let g = guide();
    let file = |rel: &str| g.join(rel).to_str().unwrap().to_owned();

    // --- The primary datacenter in A: the guide's primary.hcl, its server port on the link.
    let a_data = w.path("primary-data.hcl");
    std::fs::write(
        &a_data,
        format!("data_dir = \"{}\"\n", w.path("primary").display()),
    )
    .unwrap();
    let a_data = a_data.to_str().unwrap().to_owned();
    w.spawn(
        Ns::A,
        "agent-primary",
        mesh_bin(),
        &[
            "agent",
            "-config-file",
            &file("agents/primary.hcl"),
            "-config-file",
            &file("processes/primary-netns.hcl"),
            "-config-file",
            &a_data,
        ],
        None,
    );
    w.wait_mesh(
        Ns::A,
        "agent-primary",
        MGMT,
        &["members"],
        "the primary's agent answers",
    );

    // --- The replication token, then the secondary in B that replicates with it.
    w.mesh_ok(
        Ns::A,
        MGMT,
        &[
            "acl",
            "policy",
            "create",
            "-name",
            "replication",
            "-rules",
            &format!("@{}", file("replication-policy.json")),
        ],
    );
    let repl = w.token_create(&[
        "-description",
        "replication token",
        "-policy-name",
        "replication",
    ]);
    let repl_file = w.path("replication-token.hcl");
    std::fs::write(
        &repl_file,
        format!("acl {{ tokens {{ replication = \"{repl}\" }} }}\n"),
    )
    .unwrap();
    // The primary's mesh root, as `mesh ca roots -pem` prints it in A: what the secondary
    // verifies the primary's server port with.
    let root = w.mesh_ok(Ns::A, MGMT, &["ca", "roots", "-pem"]);
    let root_file = w.path("primary-ca.pem");
    std::fs::write(&root_file, root).unwrap();
    let b_data = w.path("secondary-data.hcl");
    std::fs::write(
        &b_data,
        format!(
            "data_dir = \"{}\"\ntls {{\n  internal_rpc {{\n    ca_file = \"{}\"\n  }}\n}}\n",
            w.path("secondary").display(),
            root_file.display()
        ),
    )
    .unwrap();
    let (repl_file, b_data) = (
        repl_file.to_str().unwrap().to_owned(),
        b_data.to_str().unwrap().to_owned(),
    );
    w.spawn(
        Ns::B,
        "agent-secondary",
        mesh_bin(),
        &[
            "agent",
            "-config-file",
            &file("processes/secondary.hcl"),
            "-config-file",
            &b_data,
            "-config-file",
            &repl_file,
        ],
        None,
    );
    // The management token answering in B means the secondary replicated it from A.
    w.wait_mesh(
        Ns::B,
        "agent-secondary",
        MGMT,
        &["members"],
        "the secondary's agent answers with the replicated management token",
    );

    // --- Gateway tokens: the guide's policy as written, plus write on the names the guide
    // registers its gateways under (its policy grants only "mesh-gateway").
    w.mesh_ok(
        Ns::A,
        MGMT,
        &[
            "acl",
            "policy",
            "create",
            "-name",
            "mesh-gateway",
            "-rules",
            &format!("@{}", file("mesh-gateway-policy.json")),
        ],
    );
    w.mesh_ok(
        Ns::A,
        MGMT,
        &[
            "acl",
            "policy",
            "create",
            "-name",
            "gateway-names",
            "-rules",
            &format!("@{}", file("processes/gateway-names-policy.json")),
        ],
    );
    let gw_a = w.token_create(&[
        "-description",
        "mesh-gateway primary datacenter token",
        "-policy-name",
        "mesh-gateway",
        "-policy-name",
        "gateway-names",
    ]);
    let gw_b = w.token_create(&[
        "-description",
        "mesh-gateway secondary datacenter token",
        "-policy-name",
        "mesh-gateway",
        "-policy-name",
        "gateway-names",
    ]);
    // "Since you have ACLs enabled, you will have to create a token for the service."
    let socat_token = w.token_create(&["-description", "socat", "-service-identity", "socat"]);
    let web_token = w.token_create(&["-description", "web", "-service-identity", "web"]);

    // Sidecars use the gateways for traffic between datacenters.
    w.mesh_ok(
        Ns::A,
        MGMT,
        &["config", "write", &file("proxy-defaults.json")],
    );

    // socat in the primary, web (socat in "primary" as its upstream) in the secondary.
    w.mesh_ok(
        Ns::A,
        MGMT,
        &["services", "register", &file("agents/socat.json")],
    );
    w.mesh_ok(
        Ns::B,
        MGMT,
        &["services", "register", &file("agents/web.json")],
    );

    // The tokens used in B must have been replicated there.
    for (t, what) in [(&gw_b, "the secondary gateway's"), (&web_token, "web's")] {
        w.wait_mesh(
            Ns::B,
            "agent-secondary",
            t,
            &["acl", "token", "read", "-self"],
            &format!("{what} token replicated to the secondary"),
        );
    }

    // --- Two gateways per datacenter: LAN on the namespace's loopback, WAN on the link.
    let gateways = [
        (
            Ns::A,
            "gateway-primary",
            "gateway-primary-1",
            8443,
            9443,
            &gw_a,
            A_IP,
        ),
        (
            Ns::A,
            "gateway-primary",
            "gateway-primary-2",
            8444,
            9444,
            &gw_a,
            A_IP,
        ),
        (
            Ns::B,
            "gateway-secondary",
            "gateway-secondary-1",
            8443,
            9443,
            &gw_b,
            B_IP,
        ),
        (
            Ns::B,
            "gateway-secondary",
            "gateway-secondary-2",
            8444,
            9444,
            &gw_b,
            B_IP,
        ),
    ];
    for (ns, service, id, lan, wan, token, wan_ip) in gateways {
        w.spawn(
            ns,
            id,
            mesh_bin(),
            &[
                "connect",
                "envoy",
                "-mesh-gateway",
                "-register",
                "-service-name",
                service,
                "-proxy-id",
                id,
                "-address",
                &format!("127.0.0.1:{lan}"),
                "-wan-address",
                &format!("{wan_ip}:{wan}"),
                &format!("-token={token}"),
            ],
            None,
        );
    }
    for (_, _, id, ..) in gateways {
        w.wait_log(id, "==> mesh gateway", Duration::from_secs(30));
    }

    // --- socat, checked with nc on its own node as the guide does, and the sidecars.
    w.spawn(
        Ns::A,
        "socat",
        "socat",
        &["-v", "tcp-l:8181,fork", "exec:/bin/cat"],
        None,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !w.nc(Ns::A, 8181, "local").contains("local") {
        w.assert_running("socat");
        assert!(
            Instant::now() < deadline,
            "socat does not echo on 127.0.0.1:8181 in the primary's namespace"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    w.spawn(
        Ns::A,
        "sidecar-socat",
        mesh_bin(),
        &["connect", "envoy", "-sidecar-for", "socat"],
        Some(&socat_token),
    );
    w.spawn(
        Ns::B,
        "sidecar-web",
        mesh_bin(),
        &["connect", "envoy", "-sidecar-for", "web"],
        Some(&web_token),
    );
    w.wait_log(
        "sidecar-socat",
        "==> sidecar of socat running",
        Duration::from_secs(30),
    );
    w.wait_log(
        "sidecar-web",
        "==> sidecar of web running",
        Duration::from_secs(30),
    );

    // --- Default deny: no intention yet, nc next to web gets nothing back. The attempts
    // are repeated until socat's sidecar has refused one, so that the refusal is the
    // intention's, not a path still being set up.
    let out = w.mesh(Ns::B, MGMT, &["intention", "check", "web", "socat"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "intention check web socat before any intention: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = w.nc(Ns::B, 8181, "hello");
        assert!(
            !got.contains("hello"),
            "web reached socat before any intention allowed it: {got:?}"
        );
        let refused_there = w
            .proc("sidecar-socat")
            .log_text()
            .lines()
            .any(|l| l.contains("connection refused by intentions") && l.contains("/svc/web"));
        if refused_there {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "within 20 s no connection from web reached socat's sidecar to be refused there by \
             the intentions"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // --- The intention, made in the secondary (forwarded to the primary, replicated back).
    w.mesh_ok(Ns::B, MGMT, &["intention", "create", "web", "socat"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if w.nc(Ns::B, 8181, "hello").trim() == "hello" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nc 127.0.0.1 8181 next to web did not echo within 20 s of the intention"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = w.mesh(Ns::B, MGMT, &["intention", "check", "web", "socat"]);
    assert_eq!(out.status.code(), Some(0), "intention check after create");

    // --- One gateway of each datacenter crashes: new connections still get through.
    w.proc("gateway-primary-1").signal("-KILL");
    w.proc("gateway-secondary-1").signal("-KILL");
    for id in ["gateway-primary-1", "gateway-secondary-1"] {
        assert!(
            w.proc(id).wait_exit(Duration::from_secs(10)).is_some(),
            "{id} survived SIGKILL"
        );
    }
    for i in 0..6 {
        let word = format!("after-gateway-crash-{i}");
        let got = w.nc(Ns::B, 8181, &word);
        assert_eq!(
            got.trim(),
            word,
            "connection {i} after one gateway per datacenter was killed"
        );
    }

    // --- The primary's agent stops: an open connection keeps echoing, and new ones from web
    // still get through (sidecars and gateways serve from what they know).
    let mut held = Held::open(&w, Ns::B, 8181);
    assert_eq!(
        held.echo("held-before").as_deref(),
        Ok("held-before"),
        "the held connection echoes"
    );
    w.proc("agent-primary").signal("-TERM");
    let status = w.proc("agent-primary").wait_exit(Duration::from_secs(30));
    match status {
        Some(s) => assert!(
            s.success(),
            "the primary's agent exited with {s} on SIGTERM"
        ),
        None => panic!("the primary's agent did not stop within 30 s of SIGTERM"),
    }
    // Nothing answers on the primary's HTTP API any more.
    let out = w.mesh(Ns::A, MGMT, &["members"]);
    assert!(!out.status.success(), "the primary's agent still answers");
    assert_eq!(
        held.echo("held-after").as_deref(),
        Ok("held-after"),
        "the held connection echoes after the primary's agent stopped"
    );
    for i in 0..4 {
        let word = format!("primary-agent-down-{i}");
        let got = w.nc(Ns::B, 8181, &word);
        assert_eq!(
            got.trim(),
            word,
            "new connection {i} with the primary's agent stopped"
        );
    }
    assert_eq!(
        held.echo("held-last").as_deref(),
        Ok("held-last"),
        "the held connection still echoes"
    );
    held.close();

    // --- Stop: SIGTERM to the data plane, then to the rest. The gateways deregister (the
    // primary's agent is gone, so only the secondary's can), drain and exit 0.
    for name in [
        "sidecar-web",
        "sidecar-socat",
        "gateway-primary-2",
        "gateway-secondary-2",
    ] {
        w.proc(name).signal("-TERM");
    }
    for name in [
        "gateway-primary-2",
        "gateway-secondary-2",
        "sidecar-web",
        "sidecar-socat",
    ] {
        let status = w.proc(name).wait_exit(Duration::from_secs(15));
        match status {
            Some(s) => assert!(s.success(), "{name} exited with {s} on SIGTERM"),
            None => panic!("{name} did not exit within 15 s of SIGTERM"),
        }
        let log = w.proc(name).log_text();
        assert!(log.contains("==> stopping"), "{name}'s log: {log}");
    }
    let log = w.proc("gateway-secondary-2").log_text();
    assert!(
        !log.contains("deregistering gateway failed"),
        "the secondary's gateway could not deregister from its running agent: {log}"
    );
    for name in ["agent-secondary", "socat"] {
        w.proc(name).signal("-TERM");
    }
    let status = w.proc("agent-secondary").wait_exit(Duration::from_secs(30));
    match status {
        Some(s) => assert!(
            s.success(),
            "the secondary's agent exited with {s} on SIGTERM"
        ),
        None => panic!("the secondary's agent did not stop within 30 s of SIGTERM"),
    }
    // socat exits 143 on SIGTERM; it only has to be gone.
    let status = w.proc("socat").wait_exit(Duration::from_secs(15));
    assert!(status.is_some(), "socat did not stop on SIGTERM");
    eprintln!(
        "the guide ran as processes in namespaces {} and {} in {:.1?}",
        w.ns.a,
        w.ns.b,
        started.elapsed()
    );
}

/// `curl` in `ns` against the agent there: `GET /v1/agent/self?dc=DC` with `token`; the
/// datacenter that answered, or `None`.
fn answering_datacenter(w: &World, ns: Ns, token: &str, dc: &str) -> Option<String> {
    let out = w
        .command(
            ns,
            "curl",
            &[
                "-sf",
                "--max-time",
                "15",
                "-H",
                &format!("X-Consul-Token: {token}"),
                &format!("http://{HTTP}/v1/agent/self?dc={dc}"),
            ],
        )
        .output()
        .unwrap();
    w.note(&format!(
        "[{ns:?}] $ curl http://{HTTP}/v1/agent/self?dc={dc}\n  exit {:?}",
        out.status.code()
    ));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["Config"]["Datacenter"].as_str().map(str::to_owned)
}

/// Whether something accepts TCP connections at `addr` as seen from `ns` (`nc -z`).
fn reachable(w: &World, ns: Ns, host: &str, port: u16) -> bool {
    w.command(ns, "nc", &["-z", "-w", "2", host, &port.to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// One datacenter's agent configuration for the federation-through-gateways test: every
/// port on the namespace's loopback, WAN federation through the gateways on.
fn gateway_only_hcl(w: &World, dc: &str, extra: &str) -> PathBuf {
    let file = w.path(&format!("{dc}.hcl"));
    std::fs::write(
        &file,
        format!(
            r#"datacenter = "{dc}"
primary_datacenter = "primary"
data_dir = "{}"
node_name = "{dc}-server-1"
bind_addr = "127.0.0.1"
client_addr = "127.0.0.1"
ports {{
  http = 8500
  server = 8300
}}
acl {{
  enabled = true
  default_policy = "deny"
  enable_token_replication = true
  tokens {{
    initial_management = "{MGMT}"
    replication = "{MGMT}"
  }}
}}
connect {{
  enabled = true
  enable_mesh_gateway_wan_federation = true
}}
{extra}"#,
            w.path(dc).display()
        ),
    )
    .unwrap();
    file
}

/// Federation through the mesh gateways alone: each datacenter's server port and HTTP API
/// listen on its namespace's loopback, so the link carries nothing but the gateways' WAN
/// ports. The secondary is given the primary's gateway (`primary_gateways`) and the root's
/// fingerprint; it enrolls, replicates and forwards writes through the gateway by the server
/// SNI, and `?dc=` works both ways (the primary going through its own gateway).
#[test]
fn federation_through_the_mesh_gateways_alone() {
    const TEST: &str = "federation_through_the_mesh_gateways_alone";
    let Some(mut w) = world('f', TEST) else {
        return;
    };
    let started = Instant::now();
    let primary_hcl = gateway_only_hcl(&w, "primary", "");
    w.spawn(
        Ns::A,
        "agent-primary",
        mesh_bin(),
        &["agent", "-config-file", primary_hcl.to_str().unwrap()],
        None,
    );
    w.wait_mesh(
        Ns::A,
        "agent-primary",
        MGMT,
        &["members"],
        "the primary answers",
    );
    let gateway = |w: &mut World, ns: Ns, dc: &str, wan_ip: &str| {
        let id = format!("gateway-{dc}");
        w.spawn(
            ns,
            &id,
            mesh_bin(),
            &[
                "connect",
                "envoy",
                "-mesh-gateway",
                "-register",
                "-service-name",
                &id,
                "-proxy-id",
                &id,
                "-address",
                "127.0.0.1:8443",
                "-wan-address",
                &format!("{wan_ip}:9443"),
                &format!("-token={MGMT}"),
            ],
            None,
        );
        w.wait_log(&id, "==> mesh gateway", Duration::from_secs(30));
    };
    gateway(&mut w, Ns::A, "primary", A_IP);

    // From B, the primary's server port and HTTP API cannot be reached; its gateway can.
    assert!(
        !reachable(&w, Ns::B, A_IP, 8300),
        "the primary's server port is on the link"
    );
    assert!(
        !reachable(&w, Ns::B, A_IP, 8500),
        "the primary's HTTP API is on the link"
    );
    assert!(
        reachable(&w, Ns::B, A_IP, 9443),
        "the primary's gateway is not on the link"
    );

    let roots = w.mesh_ok(Ns::A, MGMT, &["ca", "roots"]);
    let fingerprint = roots
        .lines()
        .find_map(|l| l.strip_prefix("SHA-256 Fingerprint:"))
        .map(|f| f.trim().to_owned())
        .unwrap_or_else(|| panic!("no fingerprint in:\n{roots}"));
    let secondary_hcl = gateway_only_hcl(
        &w,
        "secondary",
        &format!(
            "primary_gateways = [\"{A_IP}:9443\"]\n\
             tls {{\n  internal_rpc {{\n    primary_root_sha256 = \"{fingerprint}\"\n  }}\n}}\n"
        ),
    );
    w.spawn(
        Ns::B,
        "agent-secondary",
        mesh_bin(),
        &["agent", "-config-file", secondary_hcl.to_str().unwrap()],
        None,
    );
    w.wait_mesh(
        Ns::B,
        "agent-secondary",
        MGMT,
        &["members"],
        "the secondary answers with the management token it replicated through the gateway",
    );
    gateway(&mut w, Ns::B, "secondary", B_IP);

    // A write made in the secondary is forwarded to the primary through the gateway.
    w.mesh_ok(Ns::B, MGMT, &["intention", "create", "web", "socat"]);
    w.mesh_ok(Ns::A, MGMT, &["intention", "get", "web", "socat"]);
    // `?dc=` both ways; the primary reaches the secondary through its own gateway once the
    // gateways know each other.
    assert_eq!(
        answering_datacenter(&w, Ns::B, MGMT, "primary").as_deref(),
        Some("primary")
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while answering_datacenter(&w, Ns::A, MGMT, "secondary").as_deref() != Some("secondary") {
        w.assert_running("gateway-primary");
        w.assert_running("gateway-secondary");
        assert!(
            Instant::now() < deadline,
            "?dc=secondary from the primary never got through the gateways"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for name in [
        "gateway-secondary",
        "gateway-primary",
        "agent-secondary",
        "agent-primary",
    ] {
        w.proc(name).signal("-TERM");
        match w.proc(name).wait_exit(Duration::from_secs(30)) {
            Some(s) => assert!(s.success(), "{name} exited with {s} on SIGTERM"),
            None => panic!("{name} did not stop within 30 s of SIGTERM"),
        }
    }
    eprintln!(
        "federation through the gateways alone ran in {:.1?}",
        started.elapsed()
    );
}
