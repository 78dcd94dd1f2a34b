//! Calico's `readiness_gates`: before an ADD allocates anything, every configured URL must answer
//! a GET with a status from 200 to 399. Each gate is polled every 5 s, each request may take up
//! to 5 s, and a gate not ready within 30 s fails the ADD (Calico's `pollEndpointReadiness`).
//!
//! The client is a minimal HTTP/1.1 GET over `std::net` (plus rustls for `https`, which the etcd
//! client already links into this binary): a status line and the redirect headers are all a gate
//! needs, so no HTTP library is pulled in for it.

use cni::{CniError, ErrorCode};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Calico's poll interval, which is also the time one request may take.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Calico's limit for one gate.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(30);
/// Redirects followed per request, as Go's http.Client.
const MAX_REDIRECTS: usize = 10;
/// Bound on the response head we read (status line and headers).
const MAX_HEAD: usize = 16 * 1024;

/// A parsed `http`/`https` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    tls: bool,
    host: String,
    port: u16,
    /// Path and query, as sent in the request line.
    target: String,
}

/// Why one probe of a gate did not find it ready (logged, and named in the final error).
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    /// The gate answered with a status outside 200–399.
    #[error("endpoint is not ready, response code returned:{code}")]
    Status { code: u16 },
    #[error("stopped after {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
    /// A `Location` that is not a usable URL (the message is the config error's).
    #[error("{}", .0.msg)]
    BadRedirect(#[source] CniError),
    /// The probe's time budget ran out.
    #[error("request timed out (context deadline exceeded)")]
    Timeout,
    #[error("dial tcp {target}: {source}")]
    Dial {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("dial tcp {target}: no address")]
    NoAddress { target: String },
    #[error("setting the socket timeout: {0}")]
    SocketTimeout(#[source] std::io::Error),
    #[error("sending the request: {0}")]
    Send(#[source] std::io::Error),
    #[error("reading the response: {0}")]
    Receive(#[source] std::io::Error),
    #[error("malformed HTTP response {status_line:?}")]
    Malformed { status_line: String },
    #[error("TLS server name {host:?}: {source}")]
    TlsServerName {
        host: String,
        #[source]
        source: rustls::pki_types::InvalidDnsNameError,
    },
    #[error("TLS: {0}")]
    Tls(#[source] rustls::Error),
}

fn invalid(url: &str, why: &str) -> CniError {
    CniError::new(
        ErrorCode::InvalidConfig,
        format!("invalid readiness_gates: invalid URL set for ReadinessGates:{url} Error:{why}"),
    )
}

impl Gate {
    /// Parses an absolute `http://` or `https://` URL; anything else is a config error (code 7)
    /// naming the key.
    pub fn parse(url: &str) -> Result<Gate, CniError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid(url, "not an absolute URL"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => return Err(invalid(url, "the scheme must be http or https")),
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        if authority.contains('@') {
            return Err(invalid(url, "user information is not supported"));
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| invalid(url, "bad host"))?;
        let target = match target {
            "" => "/".to_string(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_string(),
        };
        if target.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(url, "the path contains white space"));
        }
        Ok(Gate {
            tls,
            host,
            port: port.unwrap_or(if tls { 443 } else { 80 }),
            target,
        })
    }

    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The gate a `Location` header points to (absolute, or a path on the same server).
    fn follow(&self, location: &str) -> Result<Gate, ProbeError> {
        if location.contains("://") {
            return Gate::parse(location).map_err(ProbeError::BadRedirect);
        }
        let target = if location.starts_with('/') {
            location.to_string()
        } else {
            // Relative to the current path's directory.
            let dir = self.target.rsplit_once('/').map_or("", |(d, _)| d);
            format!("{dir}/{location}")
        };
        Ok(Gate {
            target,
            ..self.clone()
        })
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn split_host_port(authority: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        None | Some("") => None,
        Some(p) => Some(p.parse::<u16>().ok()?),
    };
    Some((host.to_string(), port))
}

/// Waits for every gate in turn; the first one not ready in time fails the ADD with code 11
/// (the runtime retries the ADD later).
pub fn wait(gates: &[String]) -> Result<(), CniError> {
    for url in gates {
        let gate = Gate::parse(url)?;
        wait_one(url, &gate, POLL_INTERVAL, POLL_TIMEOUT)?;
    }
    Ok(())
}

/// Polls one gate. Unlike Calico, the first probe is immediate (Calico waits one interval
/// first, delaying every pod by 5 s even when the gate is ready).
fn wait_one(url: &str, gate: &Gate, interval: Duration, timeout: Duration) -> Result<(), CniError> {
    let deadline = Instant::now() + timeout;
    loop {
        let started = Instant::now();
        let budget = interval.min(deadline.saturating_duration_since(started));
        let last = match probe(gate, budget) {
            Ok(()) => {
                log::info!("readiness gate {url} is ready");
                return Ok(());
            }
            Err(e) => e,
        };
        log::error!("Endpoint may not be ready:{last}");
        let next = (started + interval).min(deadline);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        if Instant::now() >= deadline {
            return Err(CniError::new(
                ErrorCode::TryAgainLater,
                format!(
                    "readiness gate {url} not ready within {}s (context deadline exceeded): {last}",
                    timeout.as_secs()
                ),
            ));
        }
    }
}

/// One GET (following redirects) within `budget`: Ok when the final status is 200–399.
fn probe(gate: &Gate, budget: Duration) -> Result<(), ProbeError> {
    let deadline = Instant::now() + budget;
    let mut gate = gate.clone();
    for _ in 0..=MAX_REDIRECTS {
        let (status, location) = get(&gate, deadline)?;
        match (status, location) {
            (301 | 302 | 303 | 307 | 308, Some(loc)) => gate = gate.follow(&loc)?,
            (200..=399, _) => return Ok(()),
            (code, _) => return Err(ProbeError::Status { code }),
        }
    }
    Err(ProbeError::TooManyRedirects)
}

fn remaining(deadline: Instant) -> Result<Duration, ProbeError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(ProbeError::Timeout)
    } else {
        Ok(left)
    }
}

fn connect(gate: &Gate, deadline: Instant) -> Result<TcpStream, ProbeError> {
    let addrs: Vec<SocketAddr> = (gate.host.as_str(), gate.port)
        .to_socket_addrs()
        .map_err(|source| ProbeError::Dial {
            target: gate.host_header(),
            source,
        })?
        .collect();
    let mut last = ProbeError::NoAddress {
        target: gate.host_header(),
    };
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, remaining(deadline)?) {
            Ok(s) => return Ok(s),
            Err(source) => {
                last = ProbeError::Dial {
                    target: addr.to_string(),
                    source,
                }
            }
        }
    }
    Err(last)
}

/// Sends the GET and returns the status code and `Location` header.
fn get(gate: &Gate, deadline: Instant) -> Result<(u16, Option<String>), ProbeError> {
    let tcp = connect(gate, deadline)?;
    let left = remaining(deadline)?;
    tcp.set_read_timeout(Some(left))
        .and_then(|()| tcp.set_write_timeout(Some(left)))
        .map_err(ProbeError::SocketTimeout)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: calico-cni-rs\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        gate.target,
        gate.host_header()
    );
    let head = if gate.tls {
        let mut stream = tls_stream(&gate.host, tcp)?;
        exchange(&mut stream, request.as_bytes())?
    } else {
        let mut stream = tcp;
        exchange(&mut stream, request.as_bytes())?
    };
    parse_head(&head)
}

fn exchange(stream: &mut impl ReadWrite, request: &[u8]) -> Result<String, ProbeError> {
    stream
        .write_all(request)
        .and_then(|()| stream.flush())
        .map_err(ProbeError::Send)?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(ProbeError::Receive(e)),
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn parse_head(head: &str) -> Result<(u16, Option<String>), ProbeError> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/")
        .and_then(|s| s.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| ProbeError::Malformed {
            status_line: status_line.to_string(),
        })?;
    let location = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("location"))
        .map(|(_, v)| v.trim().to_string());
    Ok((status, location))
}

/// TLS with the system's trust store (`SSL_CERT_FILE`/`SSL_CERT_DIR` honoured), as Go's client.
fn tls_stream(
    host: &str,
    tcp: TcpStream,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, ProbeError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A certificate the store cannot use is skipped, as Go's x509 pool skips it.
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ProbeError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|source| {
        ProbeError::TlsServerName {
            host: host.to_string(),
            source,
        }
    })?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(ProbeError::Tls)?;
    Ok(rustls::StreamOwned::new(conn, tcp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn urls() {
        let g = Gate::parse("http://127.0.0.1:9099/readiness?x=1#frag").unwrap();
        assert_eq!(
            g,
            Gate {
                tls: false,
                host: "127.0.0.1".into(),
                port: 9099,
                target: "/readiness?x=1".into()
            }
        );
        let g = Gate::parse("HTTPS://[fd00::1]").unwrap();
        assert!(g.tls);
        assert_eq!((g.host.as_str(), g.port), ("fd00::1", 443));
        assert_eq!(g.target, "/");
        assert_eq!(g.host_header(), "[fd00::1]");
        for bad in [
            "localhost:9099",
            "ftp://x/",
            "http://",
            "http://h:99999/",
            "/ready",
        ] {
            let e = Gate::parse(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidConfig, "{bad}");
            assert!(e.msg.contains("readiness_gates"), "{}", e.msg);
        }
    }

    #[test]
    fn redirects_resolve_like_a_browser() {
        let g = Gate::parse("http://h:1/a/b").unwrap();
        assert_eq!(g.follow("/c").unwrap().target, "/c");
        assert_eq!(g.follow("c").unwrap().target, "/a/c");
        assert_eq!(g.follow("http://o/").unwrap().host, "o");
    }

    #[test]
    fn heads() {
        assert_eq!(
            parse_head("HTTP/1.1 204 No Content\r\n\r\n").unwrap(),
            (204, None)
        );
        assert_eq!(
            parse_head("HTTP/1.0 302 Found\r\nLOCATION: /x\r\n\r\n").unwrap(),
            (302, Some("/x".into()))
        );
        assert!(parse_head("garbage").is_err());
    }

    /// A server answering each connection with the next canned response.
    fn serve(responses: Vec<&'static str>) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for r in responses {
                let (mut s, _) = l.accept().unwrap();
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(r.as_bytes());
            }
        });
        format!("http://{addr}/ready")
    }

    #[test]
    fn probe_statuses_and_redirects() {
        let url = serve(vec![
            "HTTP/1.1 503 Service Unavailable\r\n\r\n",
            "HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ]);
        let gate = Gate::parse(&url).unwrap();
        let e = probe(&gate, Duration::from_secs(2)).unwrap_err();
        assert!(e.to_string().contains("response code returned:503"), "{e}");
        probe(&gate, Duration::from_secs(2)).unwrap();
    }

    #[test]
    fn a_gate_never_ready_is_try_again_later() {
        let url = serve(vec!["HTTP/1.1 500 x\r\n\r\n"; 8]);
        let gate = Gate::parse(&url).unwrap();
        let t = Instant::now();
        let e = wait_one(
            &url,
            &gate,
            Duration::from_millis(100),
            Duration::from_millis(450),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::TryAgainLater);
        assert!(e.msg.contains("response code returned:500"), "{}", e.msg);
        assert!(t.elapsed() >= Duration::from_millis(450));
    }
}
