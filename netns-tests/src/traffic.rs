//! Traffic between namespaces: TCP/UDP echo, a tiny HTTP server, ping.
//!
//! Sockets are created inside the target namespace (on a scoped thread) and keep that namespace
//! afterwards, so servers run on ordinary threads. Servers stop when their handle is dropped.
//! Use only addresses the test configured inside its own namespaces.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{HarnessError, Result};
use crate::netns::Netns;

const POLL: Duration = Duration::from_millis(10);
const SERVER_IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A background server; dropping it stops the thread and closes the socket.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// The bound address (useful when binding port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn bind_tcp(ns: &Netns, addr: SocketAddr) -> Result<TcpListener> {
    let listener = ns
        .run(|| TcpListener::bind(addr))?
        .map_err(|e| HarnessError::io(format!("binding TCP {addr} in {}", ns.name()), e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| HarnessError::io("set_nonblocking", e))?;
    Ok(listener)
}

/// Accept loop shared by the TCP servers: each connection is handled inline by `serve`.
fn tcp_server(
    listener: TcpListener,
    mut serve: impl FnMut(TcpStream) + Send + 'static,
) -> Result<Server> {
    let addr = listener
        .local_addr()
        .map_err(|e| HarnessError::io("local_addr", e))?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        while !flag.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(SERVER_IO_TIMEOUT));
                    let _ = stream.set_write_timeout(Some(SERVER_IO_TIMEOUT));
                    serve(stream);
                }
                Err(_) => std::thread::sleep(POLL),
            }
        }
    });
    Ok(Server {
        addr,
        stop,
        thread: Some(thread),
    })
}

/// TCP server in `ns` echoing each connection's bytes until the client shuts down writing.
pub fn tcp_echo_server(ns: &Netns, addr: SocketAddr) -> Result<Server> {
    tcp_server(bind_tcp(ns, addr)?, |mut s| {
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    })
}

fn connect(ns: &Netns, addr: SocketAddr, timeout: Duration) -> Result<TcpStream> {
    let stream = ns
        .run(|| TcpStream::connect_timeout(&addr, timeout))?
        .map_err(|e| {
            HarnessError::Traffic(format!("TCP connect from {} to {addr}: {e}", ns.name()))
        })?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    Ok(stream)
}

/// Connects from `ns` to `addr`, sends `payload`, half-closes and returns everything read back.
pub fn tcp_echo(
    ns: &Netns,
    addr: SocketAddr,
    payload: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>> {
    let mut s = connect(ns, addr, timeout)?;
    let io = |e: std::io::Error| HarnessError::Traffic(format!("TCP echo via {addr}: {e}"));
    s.write_all(payload).map_err(io)?;
    s.shutdown(std::net::Shutdown::Write).map_err(io)?;
    let mut back = Vec::new();
    s.read_to_end(&mut back).map_err(io)?;
    Ok(back)
}

/// Only checks that a TCP connection from `ns` to `addr` is accepted.
pub fn tcp_connect(ns: &Netns, addr: SocketAddr, timeout: Duration) -> Result<()> {
    connect(ns, addr, timeout).map(drop)
}

/// UDP server in `ns` answering every datagram with what `reply` makes of it and its sender.
fn udp_server(
    ns: &Netns,
    addr: SocketAddr,
    mut reply: impl FnMut(&[u8], SocketAddr) -> Vec<u8> + Send + 'static,
) -> Result<Server> {
    let sock = ns
        .run(|| UdpSocket::bind(addr))?
        .map_err(|e| HarnessError::io(format!("binding UDP {addr} in {}", ns.name()), e))?;
    let bound = sock
        .local_addr()
        .map_err(|e| HarnessError::io("local_addr", e))?;
    sock.set_read_timeout(Some(POLL * 5))
        .map_err(|e| HarnessError::io("set_read_timeout", e))?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while !flag.load(Ordering::SeqCst) {
            if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(&reply(&buf[..n], peer), peer);
            }
        }
    });
    Ok(Server {
        addr: bound,
        stop,
        thread: Some(thread),
    })
}

/// UDP server in `ns` sending every datagram back to its sender.
pub fn udp_echo_server(ns: &Netns, addr: SocketAddr) -> Result<Server> {
    udp_server(ns, addr, |data, _| data.to_vec())
}

/// UDP server in `ns` answering `text` to every datagram (e.g. to tell a host process from a pod).
pub fn udp_text_server(ns: &Netns, addr: SocketAddr, text: &'static str) -> Result<Server> {
    udp_server(ns, addr, move |_, _| text.as_bytes().to_vec())
}

/// An IPv4-mapped IPv6 peer (a dual-stack socket's view of an IPv4 client) as plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// TCP server in `ns` answering each connection with `tcp <peer address>` and closing it: the
/// reply shows whether the connection was masqueraded on its way (read it with [`tcp_get`]).
pub fn tcp_peer_server(ns: &Netns, addr: SocketAddr) -> Result<Server> {
    tcp_server(bind_tcp(ns, addr)?, |mut s| {
        if let Ok(peer) = s.peer_addr() {
            let _ = writeln!(s, "tcp {}", canonical(peer.ip()));
        }
    })
}

/// UDP server in `ns` answering each datagram with `udp <peer address>` (see [`udp_get`]).
pub fn udp_peer_server(ns: &Netns, addr: SocketAddr) -> Result<Server> {
    udp_server(ns, addr, |_, peer| {
        format!("udp {}\n", canonical(peer.ip())).into_bytes()
    })
}

/// Connects from `ns` to `addr` (2 s limits) and returns the server's reply, trimmed. The error
/// says what failed; tests compare replies, so both sides are plain strings.
pub fn tcp_get(ns: &Netns, addr: &str) -> std::result::Result<String, String> {
    let addr: SocketAddr = addr.parse().map_err(|e| format!("address {addr:?}: {e}"))?;
    ns.run(|| {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out)
            .map_err(|e| format!("read {addr}: {e}"))?;
        Ok(out.trim().to_string())
    })
    .map_err(|e| e.to_string())?
}

/// Sends a datagram from `ns` to `addr` (up to 3 tries, 700 ms each) and returns the reply.
pub fn udp_get(ns: &Netns, addr: &str) -> std::result::Result<String, String> {
    let bind = if addr.starts_with('[') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    udp_get_from(ns, bind, addr)
}

/// [`udp_get`] from a fixed local address and port (to reuse a conntrack entry).
pub fn udp_get_from(ns: &Netns, bind: &str, addr: &str) -> std::result::Result<String, String> {
    let addr: SocketAddr = addr.parse().map_err(|e| format!("address {addr:?}: {e}"))?;
    ns.run(|| {
        let s = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_millis(700)))
            .map_err(|e| e.to_string())?;
        s.connect(addr).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 128];
        let mut last = String::new();
        for _ in 0..3 {
            s.send(b"ping").map_err(|e| e.to_string())?;
            match s.recv(&mut buf) {
                Ok(n) => return Ok(String::from_utf8_lossy(&buf[..n]).trim().to_string()),
                Err(e) => last = format!("recv from {addr}: {e}"),
            }
        }
        Err(last)
    })
    .map_err(|e| e.to_string())?
}

/// Sends `payload` from `ns` to `addr` over UDP and returns the reply datagram.
pub fn udp_echo(
    ns: &Netns,
    addr: SocketAddr,
    payload: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>> {
    let any: SocketAddr = match addr.ip() {
        IpAddr::V4(_) => "0.0.0.0:0",
        IpAddr::V6(_) => "[::]:0",
    }
    .parse()
    .map_err(|e| HarnessError::parse("wildcard address", e))?;
    let sock = ns
        .run(|| UdpSocket::bind(any))?
        .map_err(|e| HarnessError::io(format!("binding UDP client in {}", ns.name()), e))?;
    let io = |e: std::io::Error| HarnessError::Traffic(format!("UDP echo via {addr}: {e}"));
    sock.set_read_timeout(Some(timeout)).map_err(io)?;
    sock.send_to(payload, addr).map_err(io)?;
    let mut buf = vec![0u8; 65536];
    let (n, _) = sock.recv_from(&mut buf).map_err(io)?;
    buf.truncate(n);
    Ok(buf)
}

/// Minimal HTTP/1.0 server in `ns` answering every request with 200 and `body`.
pub fn http_server(ns: &Netns, addr: SocketAddr, body: &str) -> Result<Server> {
    let body = body.to_string();
    tcp_server(bind_tcp(ns, addr)?, move |mut s| {
        if read_request_head(&mut s).is_ok() {
            let _ = write!(
                s,
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    })
}

fn read_request_head(s: &mut TcpStream) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    Ok(())
}

/// `GET path` from `ns` to `addr`; returns (status code, body).
pub fn http_get(
    ns: &Netns,
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String)> {
    let mut s = connect(ns, addr, timeout)?;
    let io = |e: std::io::Error| HarnessError::Traffic(format!("HTTP GET {addr}{path}: {e}"));
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(io)?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(io)?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| HarnessError::Traffic(format!("malformed HTTP response {text:?}")))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| HarnessError::Traffic(format!("no status in {head:?}")))?;
    Ok((status, body.to_string()))
}

/// One `ping -c1 -W1` from `ns` to `ip`; true when a reply came back.
pub fn ping(ns: &Netns, ip: IpAddr) -> Result<bool> {
    Ok(ns
        .output("ping", &["-n", "-c1", "-W1", &ip.to_string()])?
        .success())
}

/// Up to `attempts` single pings; true at the first reply. Right after a veth comes up the
/// kernel may drop the first packets until it activates the device (link watch runs up to a
/// second later), so a fresh path is not judged by one packet.
pub fn ping_eventually(ns: &Netns, ip: IpAddr, attempts: u32) -> Result<bool> {
    for _ in 0..attempts {
        if ping(ns, ip)? {
            return Ok(true);
        }
    }
    Ok(false)
}
