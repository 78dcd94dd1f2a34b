//! Throw-away etcd clusters for integration tests (feature `test-cluster`; never shipped).
//!
//! Starts real `etcd` processes (Debian `etcd-server`, or `$ETCD_BIN`) on 127.0.0.1 with
//! ports chosen here, data on /dev/shm, fast raft timers (heartbeat 25 ms, election 250 ms),
//! and waits until every member reports `/health` true. Members are SIGKILLed and their data
//! removed when the [`EtcdCluster`] is dropped, also while unwinding from a failed assertion.
//! They additionally get `PR_SET_PDEATHSIG`, so they die with the *thread* that started them
//! even if the test process is killed: create the cluster on the thread that uses it.
//!
//! The TLS variant generates its own CA, server and client certificates with the `openssl`
//! CLI and runs etcd with `--client-cert-auth`.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::config::EtcdConfig;

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// A port picked by binding :0 can be taken by someone else before etcd binds it.
const START_ATTEMPTS: usize = 3;

/// Certificates of a TLS test cluster (all PEM).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Client certificate signed by `ca_cert`: accepted.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// Client certificate from an unrelated CA: must be rejected.
    pub foreign_client_cert: PathBuf,
    pub foreign_client_key: PathBuf,
}

struct Member {
    client_url: String,
    metrics_addr: String,
    log: PathBuf,
    child: Option<Child>,
}

/// A running etcd cluster; see the module docs.
pub struct EtcdCluster {
    members: Vec<Member>,
    tls: Option<TlsFiles>,
    // Dropped after the members are killed (see Drop).
    dir: tempfile::TempDir,
}

fn etcd_bin() -> PathBuf {
    std::env::var_os("ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"))
}

fn etcdctl_bin() -> PathBuf {
    std::env::var_os("ETCDCTL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcdctl"))
}

fn scratch_dir() -> io::Result<tempfile::TempDir> {
    let shm = Path::new("/dev/shm");
    let builder = tempfile::Builder::new()
        .prefix("etcd-test-")
        .tempdir_in(shm);
    match builder {
        Ok(dir) => Ok(dir),
        // No tmpfs: fall back to the normal temp dir (slower fsyncs, same behaviour).
        Err(_) => tempfile::Builder::new().prefix("etcd-test-").tempdir(),
    }
}

/// `n` distinct free loopback ports (all held open at once so they differ).
fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

impl EtcdCluster {
    /// `members` plain-http members.
    pub fn start(members: usize) -> io::Result<Self> {
        Self::launch(members, false, &[])
    }

    /// `members` plain-http members, each also given `args` (e.g. a benchmark's
    /// auto-compaction settings).
    pub fn start_with_args(members: usize, args: &[&str]) -> io::Result<Self> {
        Self::launch(members, false, args)
    }

    /// `members` https members requiring client certificates (see [`TlsFiles`]).
    pub fn start_tls(members: usize) -> io::Result<Self> {
        Self::launch(members, true, &[])
    }

    fn launch(members: usize, tls: bool, args: &[&str]) -> io::Result<Self> {
        if members == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "0 members"));
        }
        let bin = etcd_bin();
        if !bin.exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} not found: apt-get install etcd-server (or set ETCD_BIN)",
                    bin.display()
                ),
            ));
        }
        let mut last_err = None;
        for attempt in 0..START_ATTEMPTS {
            let dir = scratch_dir()?;
            let tls_files = if tls {
                Some(generate_certs(dir.path())?)
            } else {
                None
            };
            let mut cluster = EtcdCluster {
                members: Vec::new(),
                tls: tls_files,
                dir,
            };
            let started = cluster
                .spawn_members(&bin, members, attempt, args)
                .and_then(|()| cluster.verify_one_cluster());
            match started {
                Ok(()) => return Ok(cluster),
                // Dropping `cluster` kills whatever did start.
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("etcd did not start")))
    }

    fn spawn_members(
        &mut self,
        bin: &Path,
        n: usize,
        attempt: usize,
        args: &[&str],
    ) -> io::Result<()> {
        let ports = free_ports(3 * n)?;
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let peer_url = |i: usize| format!("http://127.0.0.1:{}", ports[3 * i + 1]);
        let initial_cluster = (0..n)
            .map(|i| format!("m{i}={}", peer_url(i)))
            .collect::<Vec<_>>()
            .join(",");
        // Unique per cluster (tests of one process start clusters concurrently), so members of
        // two clusters can never take each other for peers.
        static CLUSTERS: AtomicUsize = AtomicUsize::new(0);
        let token = format!(
            "etcd-test-{}-{}-{attempt}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed)
        );
        for i in 0..n {
            let client_url = format!("{scheme}://127.0.0.1:{}", ports[3 * i]);
            let metrics_addr = format!("127.0.0.1:{}", ports[3 * i + 2]);
            let log = self.dir.path().join(format!("m{i}.log"));
            let mut cmd = Command::new(bin);
            cmd.arg(format!("--name=m{i}"))
                .arg(format!(
                    "--data-dir={}",
                    self.dir.path().join(format!("m{i}")).display()
                ))
                .arg(format!("--listen-client-urls={client_url}"))
                .arg(format!("--advertise-client-urls={client_url}"))
                .arg(format!("--listen-peer-urls={}", peer_url(i)))
                .arg(format!("--initial-advertise-peer-urls={}", peer_url(i)))
                // Plain-http /health even when clients need certificates.
                .arg(format!("--listen-metrics-urls=http://{metrics_addr}"))
                .arg(format!("--initial-cluster={initial_cluster}"))
                .arg("--initial-cluster-state=new")
                .arg(format!("--initial-cluster-token={token}"))
                .arg("--heartbeat-interval=25")
                .arg("--election-timeout=250")
                .arg("--logger=zap")
                .arg("--log-outputs=stderr")
                .args(args);
            if let Some(t) = &self.tls {
                cmd.arg(format!("--cert-file={}", t.server_cert.display()))
                    .arg(format!("--key-file={}", t.server_key.display()))
                    .arg(format!("--trusted-ca-file={}", t.ca_cert.display()))
                    .arg("--client-cert-auth");
            }
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log)?);
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let child = cmd.spawn()?;
            self.members.push(Member {
                client_url,
                metrics_addr,
                log,
                child: Some(child),
            });
        }
        self.wait_healthy()
    }

    fn wait_healthy(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut pending: Vec<usize> = (0..self.members.len()).collect();
        while !pending.is_empty() {
            for i in &pending {
                let m = &mut self.members[*i];
                if let Some(child) = m.child.as_mut() {
                    if let Some(status) = child.try_wait()? {
                        m.child = None;
                        return Err(io::Error::other(format!(
                            "etcd member m{i} exited ({status}) during start-up:\n{}",
                            tail(&m.log)
                        )));
                    }
                }
            }
            pending.retain(|&i| !health_ok(&self.members[i].metrics_addr));
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "etcd not healthy within {STARTUP_TIMEOUT:?}:\n{}",
                        tail(&self.members[0].log)
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Proves that the members which reported healthy are this cluster's own processes, all
    /// still running: every client URL answers with one cluster ID and its own member ID.
    /// A port picked by binding :0 is free again until etcd binds it, so another cluster
    /// started at the same moment can take it; its member then answers `/health` on our
    /// metrics address while ours has died of "address in use". Found by a failover test
    /// that killed the leader of what was really a 2-member cluster and lost its quorum.
    fn verify_one_cluster(&mut self) -> io::Result<()> {
        let out = self
            .etcdctl()
            .args(["endpoint", "status", "-w", "fields"])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |name: &str| -> Vec<String> {
            let prefix = format!("\"{name}\" : ");
            text.lines()
                .filter_map(|l| l.strip_prefix(&prefix))
                .map(|v| v.trim_matches('"').to_string())
                .collect()
        };
        let (clusters, ids, mut endpoints) =
            (field("ClusterID"), field("MemberID"), field("Endpoint"));
        endpoints.sort();
        let mut expected_endpoints = self.endpoints();
        expected_endpoints.sort();
        let mut distinct_ids = ids.clone();
        distinct_ids.sort();
        distinct_ids.dedup();
        let n = self.members.len();
        let ours = out.status.success()
            && clusters.len() == n
            && clusters.iter().all(|c| *c == clusters[0])
            && distinct_ids.len() == n
            && endpoints == expected_endpoints;
        if !ours {
            return Err(io::Error::other(format!(
                "etcd endpoints {} are not one {n}-member cluster: cluster IDs {clusters:?}, \
                 member IDs {ids:?}; etcdctl: {}",
                self.endpoints_csv(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        for i in 0..n {
            if !self.is_running(i) {
                return Err(io::Error::other(format!(
                    "etcd member m{i} exited after reporting healthy:\n{}",
                    tail(&self.members[i].log)
                )));
            }
        }
        Ok(())
    }

    /// Client URLs of all members (including killed ones).
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Client URL of one member.
    pub fn endpoint(&self, member: usize) -> &str {
        &self.members[member].client_url
    }

    /// `etcd_endpoints` form: comma-separated client URLs.
    pub fn endpoints_csv(&self) -> String {
        self.endpoints().join(",")
    }

    /// Directory holding the members' data, logs and certificates (removed on drop).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Certificates of a TLS cluster.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// A client configuration for this cluster: all endpoints, the accepted client
    /// certificate for TLS clusters, and a 5 s timeout.
    pub fn config(&self) -> EtcdConfig {
        let mut cfg = EtcdConfig {
            endpoints: self.endpoints(),
            timeout: Duration::from_secs(5),
            ..EtcdConfig::default()
        };
        if let Some(t) = &self.tls {
            cfg.ca_cert_file = Some(t.ca_cert.clone());
            cfg.cert_file = Some(t.client_cert.clone());
            cfg.key_file = Some(t.client_key.clone());
        }
        cfg
    }

    /// SIGKILLs one member (simulates a crashed node); the others keep running.
    pub fn kill_member(&mut self, member: usize) -> io::Result<()> {
        match self.members.get_mut(member).and_then(|m| m.child.take()) {
            Some(mut child) => {
                child.kill()?;
                child.wait().map(|_| ())
            }
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("member {member} is not running"),
            )),
        }
    }

    /// Whether a member's process is still running.
    pub fn is_running(&mut self, member: usize) -> bool {
        match self.members.get_mut(member).and_then(|m| m.child.as_mut()) {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// A member's Prometheus metrics (`/metrics` of its plain-http metrics listener).
    pub fn metrics(&self, member: usize) -> io::Result<String> {
        http_get(&self.members[member].metrics_addr, "/metrics")
    }

    /// The last lines of a member's log (for assertion messages).
    pub fn log_tail(&self, member: usize) -> String {
        tail(&self.members[member].log)
    }

    /// Reads `key` with the stock `etcdctl` (v3 API), independently of our client: proves
    /// that what we wrote is visible to Calico's tooling. `None` when the key is absent.
    pub fn etcdctl_get(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        let out = self
            .etcdctl()
            .args(["get", "--print-value-only", key])
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "etcdctl get {key}: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let mut value = out.stdout;
        if value.is_empty() {
            return Ok(None);
        }
        // etcdctl prints the value followed by one newline.
        if value.last() == Some(&b'\n') {
            value.pop();
        }
        Ok(Some(value))
    }

    /// Stock `etcdctl` (v3 API) aimed at every member, with the client certificate of a TLS
    /// cluster.
    fn etcdctl(&self) -> Command {
        let mut cmd = Command::new(etcdctl_bin());
        cmd.env("ETCDCTL_API", "3")
            .env_remove("ETCDCTL_ENDPOINTS")
            .arg(format!("--endpoints={}", self.endpoints_csv()))
            .arg("--dial-timeout=3s")
            .arg("--command-timeout=5s");
        if let Some(t) = &self.tls {
            cmd.arg(format!("--cacert={}", t.ca_cert.display()))
                .arg(format!("--cert={}", t.client_cert.display()))
                .arg(format!("--key={}", t.client_key.display()));
        }
        cmd.stdin(Stdio::null());
        cmd
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// True when the member's metrics listener answers `/health` with `"health":"true"`
/// (etcd 3.4 only says so once the member sees a leader).
fn health_ok(addr: &str) -> bool {
    http_get(addr, "/health").is_ok_and(|b| b.contains("\"health\":\"true\""))
}

/// The whole HTTP/1.0 answer to `GET path` on the metrics listener `addr`.
fn http_get(addr: &str, path: &str) -> io::Result<String> {
    let sock = addr
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_millis(200))?;
    s.set_read_timeout(Some(Duration::from_secs(1)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = etcd-test
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

fn openssl(dir: &Path, args: &[&str]) -> io::Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("openssl (apt-get install openssl): {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

/// `openssl req` with a fresh P-256 key `<name>.key` and subject `/CN=<name>`, plus `extra`
/// (what to write, and how).
fn req_with_new_key(dir: &Path, name: &str, extra: &[&str]) -> io::Result<()> {
    let (key, subj) = (format!("{name}.key"), format!("/CN={name}"));
    let common = [
        "req",
        "-new",
        "-nodes",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-keyout",
        &key,
        "-subj",
        &subj,
        "-config",
        "openssl.cnf",
    ];
    openssl(dir, &[&common[..], extra].concat())
}

/// Self-signed P-256 CA `<name>.crt`/`<name>.key`.
fn make_ca(dir: &Path, name: &str) -> io::Result<()> {
    let crt = format!("{name}.crt");
    req_with_new_key(
        dir,
        name,
        &["-x509", "-out", &crt, "-days", "2", "-extensions", "ca"],
    )
}

/// Leaf `<name>.crt`/`<name>.key` signed by CA `<ca>`, with extension section `ext`.
fn make_leaf(dir: &Path, name: &str, ca: &str, ext: &str, serial: &str) -> io::Result<()> {
    let (crt, csr) = (format!("{name}.crt"), format!("{name}.csr"));
    req_with_new_key(dir, name, &["-out", &csr])?;
    let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-set_serial",
            serial,
            "-days",
            "2",
            "-out",
            &crt,
            "-extfile",
            "openssl.cnf",
            "-extensions",
            ext,
        ],
    )
}

/// CA, server (127.0.0.1/localhost) and client certificates, plus a client certificate of
/// an unrelated CA, under `<dir>/tls`.
pub fn generate_certs(dir: &Path) -> io::Result<TlsFiles> {
    let dir = dir.join("tls");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("openssl.cnf"), OPENSSL_CNF)?;
    make_ca(&dir, "ca")?;
    make_leaf(&dir, "server", "ca", "server", "1001")?;
    make_leaf(&dir, "client", "ca", "client", "1002")?;
    make_ca(&dir, "foreign-ca")?;
    make_leaf(&dir, "foreign-client", "foreign-ca", "client", "2001")?;
    Ok(TlsFiles {
        ca_cert: dir.join("ca.crt"),
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.crt"),
        client_key: dir.join("client.key"),
        foreign_client_cert: dir.join("foreign-client.crt"),
        foreign_client_key: dir.join("foreign-client.key"),
    })
}
