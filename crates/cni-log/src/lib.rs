//! Logging for plugins: every line to stderr and, when configured, to a log file rotated with
//! Calico's (lumberjack's) rules: by size, keeping at most N backups no older than D days.
//! Each line carries the verb, container id and pod so one node's log can be grepped per pod.
//!
//! Owns: the `log` facade's sink for a plugin process.
//! Must not: write to stdout (it carries the CNI result), or fail a plugin because logging failed.

mod rotate;
mod time;

pub use rotate::{RotatingFile, Rotation};

use cni::config::bounded_u64;
use cni::{CniError, ErrorCode, Invocation};
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

/// Limits for the rotation numbers: far beyond any sane value, small enough that no size or
/// age computation overflows.
const MAX_SIZE_MIB: u64 = 1 << 20;
const MAX_AGE_DAYS: u64 = 36_500;
const MAX_COUNT: u64 = 100_000;

/// The rotation settings of a config: `log_file_max_size` (MiB), `log_file_max_age` (days),
/// `log_file_max_count`, range-checked (code 7 naming the field). A size of 0 means the
/// default, as in lumberjack.
pub fn rotation(raw: &Value) -> Result<Rotation, CniError> {
    let size = bounded_u64(raw, "log_file_max_size", 0..=MAX_SIZE_MIB)?
        .filter(|&n| n > 0)
        .unwrap_or(100);
    Ok(Rotation {
        max_size_bytes: size * 1024 * 1024,
        max_age_days: bounded_u64(raw, "log_file_max_age", 0..=MAX_AGE_DAYS)?.unwrap_or(30),
        max_backups: bounded_u64(raw, "log_file_max_count", 0..=MAX_COUNT)?.unwrap_or(10),
    })
}

/// `log_file_path`, refused when it names something other than a regular file (a FIFO would
/// block the first log line forever, a device would swallow or flood it).
fn log_path(raw: &Value, default_file: Option<&str>) -> Result<Option<PathBuf>, CniError> {
    let path: Option<PathBuf> = match raw.get("log_file_path") {
        None | Some(Value::Null) => default_file.map(PathBuf::from),
        Some(Value::String(s)) => Some(PathBuf::from(s)),
        Some(other) => {
            return Err(CniError::new(
                ErrorCode::InvalidConfig,
                format!("log_file_path must be a string, got {other}"),
            ))
        }
    };
    let Some(path) = path.filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(None);
    };
    cni::file::check_regular_or_absent(&path, "log_file_path")?;
    Ok(Some(path))
}

/// Installs the logger for this process from the plugin config's `log_level`,
/// `log_file_path` and `log_file_max_size/age/count`; `default_file` is used when the config
/// names no file. Safe to call more than once (later calls are ignored). A bad value is
/// returned as a code-7 error naming the field, after a stderr-only (or default-rotation)
/// logger was installed, so a DEL that goes on still logs.
pub fn setup(inv: &Invocation, default_file: Option<&str>) -> Result<(), CniError> {
    let raw = &inv.config.raw;
    let level = raw
        .get("log_level")
        .and_then(Value::as_str)
        .map_or(LevelFilter::Info, parse_level);
    let (path, rotation) = match (log_path(raw, default_file), rotation(raw)) {
        (Ok(p), Ok(r)) => (p, r),
        (Err(e), _) | (_, Err(e)) => {
            install(level, tag(inv), None, Rotation::default());
            return Err(e);
        }
    };
    install(level, tag(inv), path.as_deref(), rotation);
    Ok(())
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

    #[test]
    fn rotation_numbers_are_bounded() {
        use serde_json::json;
        let r = rotation(&json!({})).unwrap();
        assert_eq!(
            (r.max_size_bytes, r.max_age_days, r.max_backups),
            (100 << 20, 30, 10)
        );
        assert_eq!(
            rotation(&json!({"log_file_max_size": 0}))
                .unwrap()
                .max_size_bytes,
            100 << 20
        );
        for (field, v) in [
            ("log_file_max_size", json!(1u64 << 44)),
            ("log_file_max_size", json!(u64::MAX)),
            ("log_file_max_age", json!(u64::MAX)),
            ("log_file_max_count", json!(-1)),
            ("log_file_max_size", json!("100")),
        ] {
            let e = rotation(&json!({ field: v })).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidConfig);
            assert!(e.msg.contains(field), "{}", e.msg);
        }
    }

    #[test]
    fn special_log_paths_are_refused() {
        use serde_json::json;
        let e = log_path(&json!({"log_file_path": "/dev/null"}), None).unwrap_err();
        assert!(e.msg.contains("log_file_path"), "{}", e.msg);
        let e = log_path(&json!({"log_file_path": 5}), None).unwrap_err();
        assert!(e.msg.contains("log_file_path"), "{}", e.msg);
        assert_eq!(
            log_path(&json!({"log_file_path": ""}), Some("/x")).unwrap(),
            None
        );
        assert_eq!(log_path(&json!({}), None).unwrap(), None);
    }
}
