//! Logging for plugins: every line to stderr and, when configured, to a log file rotated with
//! Calico's (lumberjack's) rules: by size, keeping at most N backups no older than D days.
//! Each line carries the verb, container id and pod so one node's log can be grepped per pod.
//!
//! Owns: the `log` facade's sink for a plugin process.
//! Must not: write to stdout (it carries the CNI result), or fail a plugin because logging failed.

mod rotate;
mod time;

pub use rotate::{RotatingFile, Rotation};

use cni::Invocation;
use log::{LevelFilter, Log, Metadata, Record};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Where Calico's installer points `log_file_path`.
pub const CALICO_LOG_FILE: &str = "/var/log/calico/cni/cni.log";

struct Logger {
    level: LevelFilter,
    tag: String,
    file: Option<Mutex<RotatingFile>>,
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= self.level
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let line = format!(
            "{} [{}][{}] {} {}\n",
            time::now_utc(),
            r.level(),
            std::process::id(),
            self.tag,
            r.args()
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
        if let Some(f) = &self.file {
            if let Ok(mut f) = f.lock() {
                f.write_line(line.as_bytes());
            }
        }
    }

    fn flush(&self) {}
}

/// Calico's level names: `debug`, `info`, `error` (any case); anything else means info.
/// `warning`/`warn` are accepted as well.
pub fn parse_level(s: &str) -> LevelFilter {
    match s.to_ascii_lowercase().as_str() {
        "debug" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        "error" => LevelFilter::Error,
        "warn" | "warning" => LevelFilter::Warn,
        _ => LevelFilter::Info,
    }
}

/// The tag on every line: verb, container id and (Kubernetes) pod.
fn tag(inv: &Invocation) -> String {
    let mut t = format!("{} ContainerID={:.12}", inv.command, inv.container_id);
    if let (Some(ns), Some(pod)) = (inv.args.k8s_pod_namespace(), inv.args.k8s_pod_name()) {
        t.push_str(&format!(" Pod={ns}/{pod}"));
    }
    t
}

/// Installs the logger for this process from the plugin config's `log_level`,
/// `log_file_path` and `log_file_max_size/age/count`; `default_file` is used when the config
/// names no file. Safe to call more than once (later calls are ignored).
pub fn setup(inv: &Invocation, default_file: Option<&str>) {
    let raw = &inv.config.raw;
    let level = raw
        .get("log_level")
        .and_then(Value::as_str)
        .map_or(LevelFilter::Info, parse_level);
    let path: Option<PathBuf> = raw
        .get("log_file_path")
        .and_then(Value::as_str)
        .or(default_file)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    let num = |k: &str, d: u64| raw.get(k).and_then(Value::as_u64).unwrap_or(d);
    let rotation = Rotation {
        max_size_bytes: num("log_file_max_size", 100) * 1024 * 1024,
        max_age_days: num("log_file_max_age", 30),
        max_backups: num("log_file_max_count", 10),
    };
    install(level, tag(inv), path.as_deref(), rotation);
}

/// Installs a logger with explicit settings (for tools that have no Invocation).
pub fn install(level: LevelFilter, tag: String, file: Option<&Path>, rotation: Rotation) {
    let file = file.and_then(|p| match RotatingFile::open(p, rotation) {
        Ok(f) => Some(Mutex::new(f)),
        Err(e) => {
            eprintln!(
                "cannot open log file {}: {e}; logging to stderr only",
                p.display()
            );
            None
        }
    });
    let logger = Logger { level, tag, file };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_calico() {
        assert_eq!(parse_level("DEBUG"), LevelFilter::Debug);
        assert_eq!(parse_level("info"), LevelFilter::Info);
        assert_eq!(parse_level("error"), LevelFilter::Error);
        assert_eq!(parse_level("verbose"), LevelFilter::Info);
        assert_eq!(parse_level("warning"), LevelFilter::Warn);
    }
}
