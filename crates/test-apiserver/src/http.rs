//! Minimal HTTP/1.1 framing: enough for kube-rs/hyper, curl and our own clients
//! (Content-Length or chunked bodies, keep-alive).

use std::io::{self, Read, Write};

/// One parsed request.
#[derive(Debug, Default)]
pub struct HttpRequest {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    pub query: String,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client asked to close the connection after this request.
    pub fn wants_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// Outcome of waiting for a request.
pub enum ReadOutcome {
    Request(HttpRequest),
    /// Clean EOF between requests.
    Closed,
    /// Read timed out before any byte of a request arrived (caller may poll flags and retry).
    Idle,
}

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Buffered reader over a stream with a read timeout.
pub struct Conn<S> {
    pub stream: S,
    buf: Vec<u8>,
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl<S: Read + Write> Conn<S> {
    pub fn new(stream: S) -> Self {
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Read more bytes; `Ok(false)` on EOF. Timeouts are retried once a request has started
    /// (mid-request stalls are the client's problem, bounded by `deadline_polls`).
    fn fill(&mut self, started: bool, polls: &mut u32) -> io::Result<bool> {
        let mut tmp = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) && started && *polls > 0 => *polls -= 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Wait for the next request.
    pub fn read_request(&mut self) -> io::Result<ReadOutcome> {
        // ~30 s of mid-request silence (at the caller's socket timeout of 200 ms) ends the conn.
        let mut polls = 150;
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(bad("request head too large"));
            }
            let started = !self.buf.is_empty();
            match self.fill(started, &mut polls) {
                Ok(true) => {}
                Ok(false) if self.buf.is_empty() => return Ok(ReadOutcome::Closed),
                Ok(false) => return Err(bad("eof inside request head")),
                Err(e) if is_timeout(&e) && !started => return Ok(ReadOutcome::Idle),
                Err(e) => return Err(e),
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let mut parts = lines.next().unwrap_or("").split(' ');
        let (method, target) = match (parts.next(), parts.next()) {
            (Some(m), Some(t)) if !m.is_empty() => (m.to_string(), t.to_string()),
            _ => return Err(bad("bad request line")),
        };
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (target, String::new()),
        };
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut req = HttpRequest {
            method,
            path,
            query,
            headers,
            body: Vec::new(),
        };
        let chunked = req
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            req.body = self.read_chunked(&mut polls)?;
        } else if let Some(len) = req.header("content-length") {
            let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
            if len > MAX_BODY {
                return Err(bad("body too large"));
            }
            self.read_exact_buf(len, &mut polls)?;
            req.body = self.buf.drain(..len).collect();
        }
        Ok(ReadOutcome::Request(req))
    }

    fn read_exact_buf(&mut self, n: usize, polls: &mut u32) -> io::Result<()> {
        while self.buf.len() < n {
            if !self.fill(true, polls)? {
                return Err(bad("eof inside body"));
            }
        }
        Ok(())
    }

    fn read_line(&mut self, polls: &mut u32) -> io::Result<String> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(bad("chunk line too long"));
            }
            if !self.fill(true, polls)? {
                return Err(bad("eof inside chunk"));
            }
        }
    }

    fn read_chunked(&mut self, polls: &mut u32) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line(polls)?;
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                // Trailers until the empty line.
                while !self.read_line(polls)?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > MAX_BODY {
                return Err(bad("body too large"));
            }
            self.read_exact_buf(size + 2, polls)?;
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }

    /// Write a JSON response.
    pub fn respond(&mut self, code: u16, body: &[u8], close: bool) -> io::Result<()> {
        let head = format!(
            "HTTP/1.1 {code} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nCache-Control: no-cache, private\r\n{}\r\n",
            reason(code),
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        self.stream.write_all(head.as_bytes())?;
        self.stream.write_all(body)?;
        self.stream.flush()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        _ => "Internal Server Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    struct Rw(Cursor<Vec<u8>>, Vec<u8>);
    impl Read for Rw {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.0.read(b)
        }
    }
    impl Write for Rw {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.1.write(b)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn parses_length_and_chunked() {
        let raw = b"PUT /a?x=1 HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{\"\r\n1\r\n}\r\n0\r\n\r\n";
        let mut c = Conn::new(Rw(Cursor::new(raw.to_vec()), Vec::new()));
        let ReadOutcome::Request(r) = c.read_request().unwrap() else {
            panic!("expected request")
        };
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.query.as_str()),
            ("PUT", "/a", "x=1")
        );
        assert_eq!(r.body, b"{}");
        let ReadOutcome::Request(r) = c.read_request().unwrap() else {
            panic!("expected request")
        };
        assert_eq!(r.body, b"{\"}");
        assert!(matches!(c.read_request().unwrap(), ReadOutcome::Closed));
    }
}
