//! Test double of the Kubernetes API server, speaking the real wire protocol subset the suite
//! uses: HTTPS with a generated CA, bearer-token (or client-certificate) auth, JSON objects,
//! GET / LIST / POST / PUT / PATCH / DELETE on core and Calico CRD resources, global
//! `resourceVersion` with 409 conflicts, and `kind: Status` errors worded like the real server.
//!
//! It owns: an in-memory object store, request routing and validation, a generated kubeconfig,
//! and fault injection (API down / stalled). It must NOT be used outside tests, must not grow
//! behaviour a real API server lacks, and should reject what a real server rejects for the calls
//! the suite makes (unknown resources 404, bad JSON 400, type mismatches 400, invalid names 422,
//! unconditional custom-resource updates 422, stale resourceVersion 409).
//!
//! Known simplifications (documented so tests do not rely on them): no watch (`watch=true` is
//! a 400), `dryRun` and `resourceVersion` list semantics are ignored, strategic merge patch
//! replaces lists instead of merging by key, no admission/defaulting/schema validation of
//! `spec`, no RBAC (any valid credential may do anything), no graceful pod deletion.
//!
//! ```no_run
//! let api = test_apiserver::TestApiServer::start().unwrap();
//! api.put(serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
//!     "metadata": {"name": "default"}})).unwrap();
//! // point a client at api.kubeconfig_path()
//! ```

mod collection;
mod discovery;
mod http;
mod patch;
mod resources;
mod selector;
mod status;
mod store;
mod tls;
mod util;

use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use serde_json::{json, Value};

use http::{Conn, HttpRequest, ReadOutcome};
use resources::parse_path;
use store::{ObjectStore, Request};

pub use resources::{object_path, Resource, RESOURCES};

/// Start-up and seeding failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("test-apiserver I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("test-apiserver TLS setup: {0}")]
    Tls(String),
    #[error("test-apiserver seed: {0}")]
    Seed(String),
}

/// State shared between the handle, the accept thread and connection threads.
struct Shared {
    store: Mutex<ObjectStore>,
    token: String,
    tls: Arc<ServerConfig>,
    down: AtomicBool,
    stall: AtomicBool,
    shutdown: AtomicBool,
    listening: AtomicBool,
    requests: AtomicU64,
    /// The last [`LOG_LIMIT`] requests and response codes (a scale bench sends millions).
    log: Mutex<VecDeque<String>>,
    codes: Mutex<VecDeque<u16>>,
    /// API groups whose CRDs are "not installed": discovery omits them and their paths 404.
    uninstalled: Mutex<Vec<String>>,
}

/// Requests and response codes kept for tests to inspect: far more than any test sends, a
/// bounded memory for a scale bench's millions.
pub const LOG_LIMIT: usize = 100_000;

/// Appends to a bounded log, dropping the oldest entry when it is full.
fn push_bounded<T>(log: &Mutex<VecDeque<T>>, entry: T) {
    let mut log = lock(log);
    if log.len() >= LOG_LIMIT {
        log.pop_front();
    }
    log.push_back(entry);
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not wedge the server for the others.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running server; stops (and deletes its files) on drop.
pub struct TestApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    accept: Option<JoinHandle<()>>,
}

/// Socket read timeout: how often idle connections poll the down/shutdown flags.
const POLL: Duration = Duration::from_millis(200);

impl TestApiServer {
    /// Generate PKI and kubeconfig, bind 127.0.0.1 on a free port, serve in the background.
    pub fn start() -> Result<Self, Error> {
        let pki = tls::generate()?;
        let dir = tempfile::Builder::new()
            .prefix("test-apiserver.")
            .tempdir()?;
        let token = util::random_hex(24)?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        std::fs::write(dir.path().join("ca.crt"), &pki.ca_pem)?;
        std::fs::write(dir.path().join("client.crt"), &pki.client_cert_pem)?;
        std::fs::write(dir.path().join("client.key"), &pki.client_key_pem)?;
        std::fs::write(dir.path().join("token"), &token)?;
        let shared = Arc::new(Shared {
            store: Mutex::new(ObjectStore::default()),
            token,
            tls: pki.server_config,
            down: AtomicBool::new(false),
            stall: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            listening: AtomicBool::new(true),
            requests: AtomicU64::new(0),
            log: Mutex::new(VecDeque::new()),
            codes: Mutex::new(VecDeque::new()),
            uninstalled: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name("test-apiserver-accept".into())
            .spawn(move || accept_loop(s, listener, addr))?;
        let server = TestApiServer {
            shared,
            addr,
            dir,
            accept: Some(accept),
        };
        let kc = server.kubeconfig_path();
        server.write_kubeconfig(&kc, &server.shared.token)?;
        Ok(server)
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The socket address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The accepted bearer token.
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// A file containing the token (for `tokenFile` / `k8s_auth_token` style configs).
    pub fn token_path(&self) -> PathBuf {
        self.dir.path().join("token")
    }

    /// PEM CA certificate that signed the server (and client) certificates.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// PEM client certificate accepted for client-certificate auth.
    pub fn client_cert_path(&self) -> PathBuf {
        self.dir.path().join("client.crt")
    }

    /// PEM private key of [`TestApiServer::client_cert_path`].
    pub fn client_key_path(&self) -> PathBuf {
        self.dir.path().join("client.key")
    }

    /// A kubeconfig (server URL, inline CA data, bearer token) like the one Calico's installer
    /// writes.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// Write a kubeconfig for this server with the given token (e.g. a wrong one for 401 tests).
    pub fn write_kubeconfig(&self, path: &Path, token: &str) -> Result<(), Error> {
        let ca = base64::engine::general_purpose::STANDARD.encode(std::fs::read(self.ca_path())?);
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority-data: \"{ca}\"\nusers:\n- name: calico\n  user:\n    token: \"{token}\"\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: calico\ncurrent-context: test\n",
            self.url()
        );
        std::fs::write(path, text)?;
        Ok(())
    }

    /// Insert or overwrite any object, deriving its path from apiVersion/kind/metadata
    /// (namespaced objects need `metadata.namespace`). Fills uid/creationTimestamp and a new
    /// resourceVersion; returns the stored object.
    pub fn put(&self, obj: Value) -> Result<Value, Error> {
        if !obj.is_object() {
            return Err(Error::Seed("object must be a JSON object".into()));
        }
        lock(&self.shared.store).seed(obj).map_err(Error::Seed)
    }

    /// The stored object at an API path (`/api/v1/namespaces/default/pods/p`), if any.
    pub fn get(&self, path: &str) -> Option<Value> {
        let t = parse_path(path).ok()?;
        lock(&self.shared.store).peek(&t)
    }

    /// Remove the object at an API path behind the clients' back; returns it.
    pub fn remove(&self, path: &str) -> Option<Value> {
        let t = parse_path(path).ok()?;
        lock(&self.shared.store).remove(&t)
    }

    /// `true`: stop listening (new connections are refused) and drop open connections.
    /// `false`: listen again on the same port.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
        if down {
            // Wake the blocking accept so it drops the listener, then wait until it has.
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            wait_until(|| !self.shared.listening.load(Ordering::SeqCst));
        } else {
            wait_until(|| self.shared.listening.load(Ordering::SeqCst));
        }
    }

    /// `true`: accept connections and read requests but never answer (clients time out);
    /// stalled connections are closed when the stall ends.
    pub fn set_stall(&self, stall: bool) {
        self.shared.stall.store(stall, Ordering::SeqCst);
    }

    /// Serve `group` (e.g. `projectcalico.org`) as if its CRDs were not installed: discovery
    /// (`/apis`) no longer lists it and its paths answer 404, as in a cluster without them.
    /// By default every group in [`RESOURCES`] is served (Calico's v1 and v3 CRDs both).
    pub fn uninstall_group(&self, group: &str) {
        lock(&self.shared.uninstalled).push(group.to_string());
    }

    /// Number of HTTP requests received (including rejected ones).
    pub fn request_count(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// The requests received so far (the last [`LOG_LIMIT`]), as `"METHOD /path?query"`.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.shared.log).iter().cloned().collect()
    }

    /// HTTP status codes of the responses sent so far (the last [`LOG_LIMIT`]), in order
    /// (stalled or dropped requests have none).
    pub fn response_codes(&self) -> Vec<u16> {
        lock(&self.shared.codes).iter().copied().collect()
    }

    /// How many responses carried `code` (e.g. 409 to prove CAS retries happened).
    pub fn count_responses(&self, code: u16) -> usize {
        lock(&self.shared.codes)
            .iter()
            .filter(|c| **c == code)
            .count()
    }
}

fn wait_until(cond: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(5);
    while !cond() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn accept_loop(shared: Arc<Shared>, listener: TcpListener, addr: SocketAddr) {
    let mut listener = Some(listener);
    loop {
        if shared.shutdown.load(Ordering::SeqCst) {
            return;
        }
        if shared.down.load(Ordering::SeqCst) {
            listener = None;
            shared.listening.store(false, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let l = match &listener {
            Some(l) => l,
            None => match TcpListener::bind(addr) {
                Ok(l) => {
                    shared.listening.store(true, Ordering::SeqCst);
                    listener.insert(l)
                }
                Err(e) => {
                    log::warn!("test-apiserver: rebinding {addr}: {e}");
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            },
        };
        let Ok((tcp, _)) = l.accept() else { continue };
        if shared.shutdown.load(Ordering::SeqCst) || shared.down.load(Ordering::SeqCst) {
            continue;
        }
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("test-apiserver-conn".into())
            .spawn(move || serve_conn(&s, tcp));
        if let Err(e) = spawned {
            log::warn!("test-apiserver: spawning connection thread: {e}");
        }
    }
}

fn serve_conn(shared: &Shared, tcp: TcpStream) {
    let setup = tcp
        .set_read_timeout(Some(POLL))
        .and_then(|_| tcp.set_write_timeout(Some(Duration::from_secs(10))))
        .and_then(|_| tcp.set_nodelay(true));
    let Ok(()) = setup else { return };
    let Ok(tls) = ServerConnection::new(shared.tls.clone()) else {
        return;
    };
    let mut conn = Conn::new(StreamOwned::new(tls, tcp));
    loop {
        let gone = || shared.shutdown.load(Ordering::SeqCst) || shared.down.load(Ordering::SeqCst);
        if gone() {
            return;
        }
        let req = match conn.read_request() {
            Ok(ReadOutcome::Request(r)) => r,
            Ok(ReadOutcome::Idle) => continue,
            Ok(ReadOutcome::Closed) | Err(_) => return,
        };
        shared.requests.fetch_add(1, Ordering::SeqCst);
        let line = if req.query.is_empty() {
            format!("{} {}", req.method, req.path)
        } else {
            format!("{} {}?{}", req.method, req.path, req.query)
        };
        push_bounded(&shared.log, line);
        if gone() {
            return;
        }
        if shared.stall.load(Ordering::SeqCst) {
            while shared.stall.load(Ordering::SeqCst) && !shared.shutdown.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            return;
        }
        let client_cert = conn.stream.conn.peer_certificates().is_some();
        let (code, body) = handle(shared, &req, client_cert);
        push_bounded(&shared.codes, code);
        let close = req.wants_close();
        if conn.respond(code, body.as_bytes(), close).is_err() || close {
            return;
        }
    }
}

fn authorized(shared: &Shared, req: &HttpRequest, client_cert: bool) -> bool {
    if client_cert {
        return true;
    }
    req.header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .is_some_and(|t| t.trim() == shared.token)
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (util::percent_decode(k), util::percent_decode(v)),
            None => (util::percent_decode(p), String::new()),
        })
        .collect()
}

/// Route, authenticate and execute one request; returns (HTTP code, JSON body).
fn handle(shared: &Shared, req: &HttpRequest, client_cert: bool) -> (u16, String) {
    let reply = |code: u16, v: Value| (code, v.to_string());
    if matches!(req.path.as_str(), "/healthz" | "/readyz" | "/livez") {
        return (200, "ok".into());
    }
    if !authorized(shared, req, client_cert) {
        let e = status::unauthorized();
        return reply(e.code, e.body);
    }
    if req.path == "/version" {
        return reply(
            200,
            json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-test-apiserver",
                   "platform": "linux/amd64"}),
        );
    }
    let uninstalled = lock(&shared.uninstalled).clone();
    if let Some(v) = discovery::answer(&req.method, &req.path, &uninstalled) {
        return reply(200, v);
    }
    let target = match parse_path(&req.path) {
        Ok(t) if !uninstalled.iter().any(|g| g == t.resource.group) => t,
        _ => {
            let e = status::no_route(&req.path);
            return reply(e.code, e.body);
        }
    };
    let r = Request {
        method: req.method.as_str(),
        target,
        query: parse_query(&req.query),
        content_type: req.header("content-type").unwrap_or(""),
        body: &req.body,
    };
    // Serialise after the store's lock is released, so one large reply does not hold up
    // every other connection.
    let result = lock(&shared.store).handle(&r);
    match result {
        Ok((code, v)) => reply(code, v),
        Err(e) => reply(e.code, e.body),
    }
}

#[cfg(test)]
mod log_tests {
    use super::*;

    #[test]
    fn the_request_log_keeps_the_last_entries_only() {
        let log = Mutex::new(VecDeque::new());
        for i in 0..LOG_LIMIT + 5 {
            push_bounded(&log, i);
        }
        let log = lock(&log);
        assert_eq!(log.len(), LOG_LIMIT);
        assert_eq!(log.front(), Some(&5), "the oldest five dropped");
        assert_eq!(log.back(), Some(&(LOG_LIMIT + 4)));
    }
}
