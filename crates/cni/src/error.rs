//! CNI errors: the `{"cniVersion","code","msg","details"}` document and its well-known codes.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Error codes with the meanings the spec gives them (0–99 reserved by the spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 1: the config's cniVersion is not supported.
    IncompatibleVersion,
    /// 2: a field or value is not supported; the message names it.
    UnsupportedField,
    /// 3: the container is unknown or gone; the runtime need not clean up.
    UnknownContainer,
    /// 4: missing or invalid environment variables; the message names them.
    InvalidEnvironment,
    /// 5: I/O failure, e.g. reading stdin or a file.
    Io,
    /// 6: decoding failure: bad JSON, bad version string.
    Decode,
    /// 7: invalid network configuration.
    InvalidConfig,
    /// 8 (library): CNI_NETNS is the plugin's own namespace.
    InvalidNetns,
    /// 11: transient; try again later.
    TryAgainLater,
    /// 50: STATUS: the plugin cannot serve ADD now.
    PluginNotAvailable,
    /// 51: STATUS: not available and existing containers may have limited connectivity.
    LimitedConnectivity,
    /// Any other code, e.g. plugin-specific 100+ or 999 for untyped failures.
    Other(u32),
}

impl ErrorCode {
    pub fn as_u32(self) -> u32 {
        match self {
            ErrorCode::IncompatibleVersion => 1,
            ErrorCode::UnsupportedField => 2,
            ErrorCode::UnknownContainer => 3,
            ErrorCode::InvalidEnvironment => 4,
            ErrorCode::Io => 5,
            ErrorCode::Decode => 6,
            ErrorCode::InvalidConfig => 7,
            ErrorCode::InvalidNetns => 8,
            ErrorCode::TryAgainLater => 11,
            ErrorCode::PluginNotAvailable => 50,
            ErrorCode::LimitedConnectivity => 51,
            ErrorCode::Other(n) => n,
        }
    }

    pub fn from_u32(n: u32) -> Self {
        match n {
            1 => ErrorCode::IncompatibleVersion,
            2 => ErrorCode::UnsupportedField,
            3 => ErrorCode::UnknownContainer,
            4 => ErrorCode::InvalidEnvironment,
            5 => ErrorCode::Io,
            6 => ErrorCode::Decode,
            7 => ErrorCode::InvalidConfig,
            8 => ErrorCode::InvalidNetns,
            11 => ErrorCode::TryAgainLater,
            50 => ErrorCode::PluginNotAvailable,
            51 => ErrorCode::LimitedConnectivity,
            n => ErrorCode::Other(n),
        }
    }
}

/// Code used for failures that have no better-typed code (Go's skel uses the same).
pub const GENERIC: ErrorCode = ErrorCode::Other(999);

/// A CNI error as printed on stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: ErrorCode,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: ErrorCode, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// An error with the generic code 999.
    pub fn generic(msg: impl Into<String>) -> Self {
        CniError::new(GENERIC, msg)
    }

    /// Prefixes the message with what was being done (`context: message`).
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.msg = format!("{context}: {}", self.msg);
        self
    }

    pub fn details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The JSON document for stdout, labelled with the config's version.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        let doc = ErrorDoc {
            cni_version: cni_version.to_string(),
            code: self.code.as_u32(),
            msg: self.msg.clone(),
            details: self.details.clone(),
        };
        serde_json::to_value(doc).expect("error document serialises")
    }

    /// Reads an error document printed by another plugin.
    pub fn from_json(bytes: &[u8]) -> Option<CniError> {
        let doc: ErrorDoc = serde_json::from_slice(bytes).ok()?;
        Some(CniError {
            code: ErrorCode::from_u32(doc.code),
            msg: doc.msg,
            details: doc.details,
        })
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.details.is_empty() {
            write!(f, "{}", self.msg)
        } else {
            write!(f, "{}: {}", self.msg, self.details)
        }
    }
}

impl std::error::Error for CniError {}

/// The one place an error type says which CNI code it carries.
///
/// Every library error enum that can reach a runtime implements this once; the blanket
/// `From` below then turns it into a [`CniError`] whose message is the error's `Display` text,
/// so `?` works in plugin code with no per-call-site mapping. `CniError` itself does not
/// implement the trait (that is what keeps the blanket impl coherent).
pub trait CniCode: std::error::Error {
    /// The code a runtime acts on (spec codes where one fits: 4, 7, 11, ...; else 999).
    fn cni_code(&self) -> ErrorCode;
}

/// `result.context("what was being done")` for any error that converts into a [`CniError`]:
/// the code stays the error's own, the message gains the context.
pub trait Context<T> {
    fn context(self, context: impl fmt::Display) -> Result<T, CniError>;
}

impl<T, E: Into<CniError>> Context<T> for Result<T, E> {
    fn context(self, context: impl fmt::Display) -> Result<T, CniError> {
        self.map_err(|e| e.into().context(context))
    }
}

impl<E: CniCode> From<E> for CniError {
    fn from(e: E) -> Self {
        CniError::new(e.cni_code(), e.to_string())
    }
}

#[derive(Serialize, Deserialize)]
struct ErrorDoc {
    #[serde(rename = "cniVersion", default)]
    cni_version: String,
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    details: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for n in [1, 2, 3, 4, 5, 6, 7, 8, 11, 50, 51, 100, 999] {
            assert_eq!(ErrorCode::from_u32(n).as_u32(), n);
        }
        assert_eq!(ErrorCode::TryAgainLater.as_u32(), 11);
        assert_eq!(ErrorCode::PluginNotAvailable.as_u32(), 50);
    }

    #[derive(Debug, thiserror::Error)]
    enum Sample {
        #[error("field {0:?} is invalid")]
        Bad(&'static str),
        #[error("store busy")]
        Busy,
    }

    impl CniCode for Sample {
        fn cni_code(&self) -> ErrorCode {
            match self {
                Sample::Bad(_) => ErrorCode::InvalidConfig,
                Sample::Busy => ErrorCode::TryAgainLater,
            }
        }
    }

    #[test]
    fn cni_code_drives_the_conversion() {
        let e: CniError = Sample::Bad("mtu").into();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (ErrorCode::InvalidConfig, "field \"mtu\" is invalid")
        );
        let busy = || -> Result<(), CniError> { Err(Sample::Busy)? };
        assert_eq!(busy().unwrap_err().code, ErrorCode::TryAgainLater);
        let e = Err::<(), _>(Sample::Busy)
            .context("reading the pool")
            .unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (ErrorCode::TryAgainLater, "reading the pool: store busy")
        );
    }

    #[test]
    fn json_shape() {
        let e = CniError::new(ErrorCode::InvalidConfig, "bad name").details("name \"a b\"");
        let v = e.to_json("1.0.0");
        assert_eq!(
            v,
            serde_json::json!({"cniVersion":"1.0.0","code":7,"msg":"bad name","details":"name \"a b\""})
        );
        let plain = CniError::new(ErrorCode::Io, "x").to_json("0.3.1");
        assert!(plain.get("details").is_none());
        let back = CniError::from_json(v.to_string().as_bytes()).unwrap();
        assert_eq!(back, e);
    }
}
