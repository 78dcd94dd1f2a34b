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

/// UDP server in `ns` sending every datagram back to its sender.
pub fn udp_echo_server(ns: &Netns, addr: SocketAddr) -> Result<Server> {
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
                let _ = sock.send_to(&buf[..n], peer);
            }
        }
    });
    Ok(Server {
        addr: bound,
        stop,
        thread: Some(thread),
    })
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
