//! `etcd_discovery_srv`: endpoints from DNS SRV records, as etcd's Go `srv.GetClient` does.
//!
//! `_etcd-client-ssl._tcp.<domain>` gives `https://target:port` endpoints and
//! `_etcd-client._tcp.<domain>` gives `http://target:port`; discovery fails only when both
//! lookups fail. Target names are not resolved here (the connection does that).
//!
//! The SRV query is a minimal stub resolver of our own (one UDP question to the
//! `nameserver`s of /etc/resolv.conf, TCP retry on truncation): std's resolver cannot ask for
//! SRV records and a full DNS crate would add more code to every plugin binary than this
//! module is. Search domains and `options` in resolv.conf are ignored, like an absolute name.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use crate::error::EtcdError;

const RESOLV_CONF: &str = "/etc/resolv.conf";
const TYPE_SRV: u16 = 33;
const CLASS_IN: u16 = 1;
const RCODE_NXDOMAIN: u8 = 3;

/// One SRV answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// Target host name without the trailing dot.
    pub target: String,
}

/// Endpoints advertised under `domain`, https ones first, using the system's name servers.
pub fn discover_endpoints(domain: &str, timeout: Duration) -> Result<Vec<String>, EtcdError> {
    let conf = std::fs::read_to_string(RESOLV_CONF).unwrap_or_default();
    let mut servers = nameservers(&conf);
    if servers.is_empty() {
        // glibc's default when resolv.conf names no server.
        servers.push(SocketAddr::from(([127, 0, 0, 1], 53)));
    }
    discover_endpoints_via(domain, &servers, timeout)
}

/// Like [`discover_endpoints`], asking the given name servers.
pub fn discover_endpoints_via(
    domain: &str,
    servers: &[SocketAddr],
    timeout: Duration,
) -> Result<Vec<String>, EtcdError> {
    let domain = domain.trim().trim_end_matches('.');
    let mut endpoints = Vec::new();
    let mut errors = Vec::new();
    for (service, scheme) in [("_etcd-client-ssl", "https"), ("_etcd-client", "http")] {
        let name = format!("{service}._tcp.{domain}");
        match lookup_srv(&name, servers, timeout) {
            Ok(records) => endpoints.extend(records.into_iter().map(|r| endpoint(scheme, &r))),
            Err(e) => errors.push((name, e)),
        }
    }
    if errors.len() == 2 {
        let text = errors
            .iter()
            .map(|(name, e)| format!("{name}: {e}"))
            .collect::<Vec<_>>()
            .join("; ");
        let msg = format!("SRV discovery of etcd endpoints under {domain:?} failed: {text}");
        // Timeouts and socket errors may clear up; "no such name" will not.
        return Err(if errors.iter().any(|(_, e)| e.transient) {
            EtcdError::Unavailable(msg)
        } else {
            EtcdError::Config(msg)
        });
    }
    Ok(endpoints)
}

fn endpoint(scheme: &str, r: &SrvRecord) -> String {
    // IPv6 literals need brackets in a URL; names and IPv4 do not.
    if r.target.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("{scheme}://[{}]:{}", r.target, r.port)
    } else {
        format!("{scheme}://{}:{}", r.target, r.port)
    }
}

/// `nameserver` lines of a resolv.conf (port 53).
pub fn nameservers(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            // Drop an IPv6 zone ("fe80::1%eth0"): std cannot parse it.
            let addr = words.next()?.split('%').next()?;
            addr.parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .collect()
}

#[derive(Debug)]
struct LookupError {
    msg: String,
    transient: bool,
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl LookupError {
    fn transient(msg: impl Into<String>) -> Self {
        LookupError {
            msg: msg.into(),
            transient: true,
        }
    }
    fn permanent(msg: impl Into<String>) -> Self {
        LookupError {
            msg: msg.into(),
            transient: false,
        }
    }
}

/// SRV records for `name`, sorted by priority then descending weight. Each server is tried
/// in turn within the overall `timeout`; an authoritative "no such name" ends the search.
fn lookup_srv(
    name: &str,
    servers: &[SocketAddr],
    timeout: Duration,
) -> Result<Vec<SrvRecord>, LookupError> {
    let id = query_id();
    let query = build_query(id, name).map_err(LookupError::permanent)?;
    let deadline = Instant::now() + timeout;
    let mut last = LookupError::transient("no name server configured");
    for server in servers {
        let answer = match exchange_udp(*server, &query, deadline) {
            Ok(reply) if truncated(&reply) => exchange_tcp(*server, &query, deadline),
            other => other,
        };
        match answer.and_then(|reply| parse_response(id, &reply)) {
            Ok(mut records) => {
                records.sort_by(|a, b| a.priority.cmp(&b.priority).then(b.weight.cmp(&a.weight)));
                return Ok(records);
            }
            Err(e) if !e.transient => return Err(e),
            Err(e) => last = LookupError::transient(format!("{server}: {e}")),
        }
    }
    Err(last)
}

fn query_id() -> u16 {
    // Not security relevant (we only talk to the configured resolver); just avoid reusing ids.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ std::process::id()) as u16
}

fn remaining(deadline: Instant) -> Result<Duration, LookupError> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| LookupError::transient("timed out"))
}

fn io_err(e: std::io::Error) -> LookupError {
    LookupError::transient(e.to_string())
}

fn exchange_udp(
    server: SocketAddr,
    query: &[u8],
    deadline: Instant,
) -> Result<Vec<u8>, LookupError> {
    let local: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let sock = UdpSocket::bind(local).map_err(io_err)?;
    sock.connect(server).map_err(io_err)?;
    sock.send(query).map_err(io_err)?;
    let mut buf = vec![0u8; 4096];
    loop {
        sock.set_read_timeout(Some(remaining(deadline)?))
            .map_err(io_err)?;
        let n = sock.recv(&mut buf).map_err(io_err)?;
        // Ignore stray datagrams that do not answer our question id.
        if n >= 2 && buf[..2] == query[..2] {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

fn exchange_tcp(
    server: SocketAddr,
    query: &[u8],
    deadline: Instant,
) -> Result<Vec<u8>, LookupError> {
    let mut stream = TcpStream::connect_timeout(&server, remaining(deadline)?).map_err(io_err)?;
    stream
        .set_read_timeout(Some(remaining(deadline)?))
        .map_err(io_err)?;
    let len = u16::try_from(query.len()).map_err(|_| LookupError::permanent("query too long"))?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed).map_err(io_err)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).map_err(io_err)?;
    let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut reply).map_err(io_err)?;
    Ok(reply)
}

fn truncated(reply: &[u8]) -> bool {
    reply.len() >= 3 && reply[2] & 0x02 != 0
}

/// A standard recursive query for one SRV question.
fn build_query(id: u16, name: &str) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(name.len() + 18);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00]); // RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // 1 question
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("invalid DNS name {name:?}"));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    if q.len() - 12 > 255 {
        return Err(format!("DNS name too long: {name:?}"));
    }
    q.extend_from_slice(&TYPE_SRV.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(q)
}

/// Bounds-checked big-endian reader over a DNS message.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], LookupError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| LookupError::transient("truncated DNS reply"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, LookupError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn skip(&mut self, n: usize) -> Result<(), LookupError> {
        self.bytes(n).map(|_| ())
    }
    /// A possibly compressed name; leaves `pos` after the name's in-place encoding.
    fn name(&mut self) -> Result<String, LookupError> {
        let bad = || LookupError::transient("malformed name in DNS reply");
        let mut labels: Vec<String> = Vec::new();
        let mut pos = self.pos;
        let mut end_of_name = None;
        // Each pointer must go strictly backwards, which rules out loops.
        let mut limit = pos;
        loop {
            let len = *self.buf.get(pos).ok_or_else(bad)? as usize;
            match len & 0xC0 {
                0x00 if len == 0 => {
                    self.pos = end_of_name.unwrap_or(pos + 1);
                    return Ok(labels.join("."));
                }
                0x00 => {
                    let label = self.buf.get(pos + 1..pos + 1 + len).ok_or_else(bad)?;
                    labels.push(String::from_utf8_lossy(label).into_owned());
                    pos += 1 + len;
                }
                0xC0 => {
                    let low = *self.buf.get(pos + 1).ok_or_else(bad)? as usize;
                    let target = ((len & 0x3F) << 8) | low;
                    end_of_name.get_or_insert(pos + 2);
                    if target >= limit {
                        return Err(bad());
                    }
                    limit = target;
                    pos = target;
                }
                _ => return Err(bad()),
            }
        }
    }
}

fn parse_response(id: u16, reply: &[u8]) -> Result<Vec<SrvRecord>, LookupError> {
    let mut r = Reader { buf: reply, pos: 0 };
    if r.u16()? != id {
        return Err(LookupError::transient("DNS reply id mismatch"));
    }
    let flags = r.u16()?;
    if flags & 0x8000 == 0 {
        return Err(LookupError::transient("DNS reply is not a response"));
    }
    match (flags & 0x000F) as u8 {
        0 => {}
        RCODE_NXDOMAIN => return Err(LookupError::permanent("no such name (NXDOMAIN)")),
        rcode => return Err(LookupError::transient(format!("DNS error rcode {rcode}"))),
    }
    let questions = r.u16()?;
    let answers = r.u16()?;
    r.skip(4)?; // authority + additional counts: not needed
    for _ in 0..questions {
        r.name()?;
        r.skip(4)?;
    }
    let mut records = Vec::new();
    for _ in 0..answers {
        r.name()?;
        let rtype = r.u16()?;
        let class = r.u16()?;
        r.skip(4)?; // TTL
        let rdlen = r.u16()? as usize;
        let rdata_end = r.pos + rdlen;
        if rtype == TYPE_SRV && class == CLASS_IN {
            let priority = r.u16()?;
            let weight = r.u16()?;
            let port = r.u16()?;
            let target = r.name()?;
            records.push(SrvRecord {
                priority,
                weight,
                port,
                target,
            });
        }
        // Skip to the end of this record whatever we parsed (CNAMEs, unknown types).
        r.pos = rdata_end;
    }
    if records.is_empty() {
        return Err(LookupError::permanent("no SRV records"));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Encodes an answer to `query` with the given SRV records. The first record's target
    /// is written in full, the others point back into it (exercises name compression).
    fn answer(query: &[u8], records: &[(u16, u16, u16, &str)], flags: u16) -> Vec<u8> {
        let mut m = query[..2].to_vec();
        m.extend_from_slice(&flags.to_be_bytes());
        m.extend_from_slice(&[0, 1]);
        m.extend_from_slice(&(records.len() as u16).to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0]);
        m.extend_from_slice(&query[12..]); // question section
        let mut first_target_at = None;
        for (prio, weight, port, target) in records {
            m.extend_from_slice(&[0xC0, 12]); // owner name = question name
            m.extend_from_slice(&TYPE_SRV.to_be_bytes());
            m.extend_from_slice(&CLASS_IN.to_be_bytes());
            m.extend_from_slice(&60u32.to_be_bytes());
            let mut rdata = Vec::new();
            rdata.extend_from_slice(&prio.to_be_bytes());
            rdata.extend_from_slice(&weight.to_be_bytes());
            rdata.extend_from_slice(&port.to_be_bytes());
            let (host, rest) = target.split_once('.').unwrap();
            match first_target_at {
                None => {
                    first_target_at = Some(m.len() + 2 + 6 + 1 + host.len());
                    for label in target.split('.') {
                        rdata.push(label.len() as u8);
                        rdata.extend_from_slice(label.as_bytes());
                    }
                    rdata.push(0);
                }
                Some(at) => {
                    // "<host>" + pointer to the first target's domain part (same domain).
                    assert!(first_target_at.is_some() && !rest.is_empty());
                    rdata.push(host.len() as u8);
                    rdata.extend_from_slice(host.as_bytes());
                    rdata.extend_from_slice(&[0xC0 | (at >> 8) as u8, at as u8]);
                }
            }
            m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            m.extend_from_slice(&rdata);
        }
        m
    }

    /// A one-thread fake DNS server on 127.0.0.1: answers `_etcd-client-ssl` with two records
    /// and `_etcd-client` with NXDOMAIN, `queries` times.
    fn fake_server(queries: usize) -> (SocketAddr, std::thread::JoinHandle<Vec<String>>) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut buf = [0u8; 512];
            for _ in 0..queries {
                let (n, peer) = sock.recv_from(&mut buf).unwrap();
                let q = &buf[..n];
                let name = Reader { buf: q, pos: 12 }.name().unwrap();
                let reply = if name.starts_with("_etcd-client-ssl.") {
                    answer(
                        q,
                        &[
                            (10, 5, 2379, "etcd-b.example.test"),
                            (0, 5, 2379, "etcd-a.example.test"),
                        ],
                        0x8180,
                    )
                } else {
                    answer(q, &[], 0x8183)
                };
                seen.push(name);
                sock.send_to(&reply, peer).unwrap();
            }
            seen
        });
        (addr, handle)
    }

    #[test]
    fn srv_discovery_builds_urls_sorted_by_priority() {
        let (addr, server) = fake_server(2);
        let eps = discover_endpoints_via("example.test.", &[addr], Duration::from_secs(5)).unwrap();
        assert_eq!(
            eps,
            vec![
                "https://etcd-a.example.test:2379",
                "https://etcd-b.example.test:2379"
            ]
        );
        assert_eq!(
            server.join().unwrap(),
            vec![
                "_etcd-client-ssl._tcp.example.test",
                "_etcd-client._tcp.example.test"
            ]
        );
    }

    #[test]
    fn srv_discovery_fails_when_both_lookups_fail() {
        // A bound socket that never answers: both lookups time out.
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let start = Instant::now();
        let err = discover_endpoints_via(
            "example.test",
            &[silent.local_addr().unwrap()],
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(err.is_unavailable(), "{err}");
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn truncated_udp_reply_is_retried_over_tcp() {
        // Bind UDP and TCP on the same port so the resolver's TCP retry reaches us.
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
            if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()) {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let (n, peer) = udp.recv_from(&mut buf).unwrap();
            // Header only, TC bit set.
            let mut tc = buf[..2].to_vec();
            tc.extend_from_slice(&[0x83, 0x80, 0, 0, 0, 0, 0, 0, 0, 0]);
            udp.send_to(&tc, peer).unwrap();
            let query = buf[..n].to_vec();
            let (mut conn, _) = tcp.accept().unwrap();
            let mut len = [0u8; 2];
            conn.read_exact(&mut len).unwrap();
            let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
            conn.read_exact(&mut q).unwrap();
            assert_eq!(q, query);
            let reply = answer(&q, &[(0, 0, 2380, "etcd.example.test")], 0x8180);
            conn.write_all(&(reply.len() as u16).to_be_bytes()).unwrap();
            conn.write_all(&reply).unwrap();
        });
        let records = lookup_srv(
            "_etcd-client._tcp.example.test",
            &[addr],
            Duration::from_secs(5),
        )
        .unwrap();
        server.join().unwrap();
        assert_eq!(
            records,
            vec![SrvRecord {
                priority: 0,
                weight: 0,
                port: 2380,
                target: "etcd.example.test".into()
            }]
        );
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        let q = build_query(7, "_etcd-client._tcp.example.test").unwrap();
        let good = answer(&q, &[(0, 0, 1, "a.example.test")], 0x8180);
        // Every truncation of a valid reply must fail cleanly.
        for cut in 0..good.len() {
            assert!(parse_response(7, &good[..cut]).is_err(), "cut at {cut}");
        }
        assert!(parse_response(7, &good).is_ok());
        // A compression pointer to itself must not loop.
        let mut looped = good.clone();
        let at = looped.len() - 2;
        looped[at] = 0xC0;
        looped[at + 1] = at as u8;
        assert!(parse_response(7, &looped).is_err());
        assert!(parse_response(8, &good).is_err(), "wrong id accepted");
    }

    #[test]
    fn resolv_conf_nameservers() {
        let conf =
            "# c\nsearch x\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\nnameserver bogus\n";
        assert_eq!(
            nameservers(conf),
            vec![
                "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
    }

    #[test]
    fn query_rejects_bad_names() {
        assert!(build_query(1, "a..b").is_err());
        assert!(build_query(1, &"x".repeat(64)).is_err());
        let q = build_query(0x1234, "_etcd-client._tcp.example.test").unwrap();
        assert_eq!(&q[..2], &[0x12, 0x34]);
        assert_eq!(&q[q.len() - 4..], &[0, 33, 0, 1]);
    }
}
