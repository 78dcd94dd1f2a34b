//! `resolvConf`: a resolv.conf file turned into the result's `dns` section.

use std::path::Path;

use crate::error::{Error, Result};

/// The parts of resolv.conf a CNI result carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dns {
    pub nameservers: Vec<String>,
    pub domain: Option<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

/// Reads `path` (a regular file of bounded size: a FIFO or `/dev/zero` is refused, not waited
/// on); comments (`#`, `;`) and lines with fewer than two fields are skipped.
pub fn parse_resolv_conf(path: &Path) -> Result<Dns> {
    use cni::file::FileError;
    let text = cni::file::read_small_string(path, "resolvConf").map_err(|e| match e {
        FileError::Io { source, .. } => Error::io("open", path, source),
        FileError::NotFound { .. } => Error::io(
            "open",
            path,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ),
        other => Error::BadConfig(other.to_string()),
    })?;
    Ok(parse(&text))
}

fn parse(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [key, first, rest @ ..] = fields.as_slice() else {
            continue;
        };
        match *key {
            "nameserver" => dns.nameservers.push(first.to_string()),
            "domain" => dns.domain = Some(first.to_string()),
            "search" => dns
                .search
                .extend(std::iter::once(first).chain(rest).map(|s| s.to_string())),
            "options" => dns
                .options
                .extend(std::iter::once(first).chain(rest).map(|s| s.to_string())),
            _ => {}
        }
    }
    dns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_keys() {
        let d = parse("# c\n; c\nnameserver 192.0.2.53\nnameserver 2001:db8::53\ndomain example.com\nsearch a.example b.example\noptions ndots:5 edns0\nbogus\n");
        assert_eq!(d.nameservers, ["192.0.2.53", "2001:db8::53"]);
        assert_eq!(d.domain.as_deref(), Some("example.com"));
        assert_eq!(d.search, ["a.example", "b.example"]);
        assert_eq!(d.options, ["ndots:5", "edns0"]);
    }

    #[test]
    fn missing_file_is_an_error() {
        assert!(parse_resolv_conf(Path::new("/nonexistent/resolv.conf")).is_err());
    }

    #[test]
    fn special_files_are_refused_by_field() {
        for p in ["/dev/zero", "/dev/null", "/"] {
            let e = parse_resolv_conf(Path::new(p)).unwrap_err();
            assert!(e.to_string().contains("resolvConf"), "{p}: {e}");
        }
    }
}
