//! The CNI error object and the well-known error codes.

use std::fmt;

use serde::Serialize;

/// Well-known CNI error codes (spec §"Error"), plus ipcni's own 100+ codes.
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODE_FAILURE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const INVALID_NETNS: u32 = 8;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const PLUGIN_NOT_AVAILABLE: u32 = 50;
    pub const PLUGIN_NOT_AVAILABLE_LIMITED: u32 = 51;
    /// A command of the plan (ip, nsenter, iptables, nft, …) failed.
    pub const COMMAND_FAILED: u32 = 100;
    /// CHECK found the kernel state differs from what ADD made.
    pub const CHECK_MISMATCH: u32 = 101;
    /// An IPAM pool has no free address.
    pub const POOL_EXHAUSTED: u32 = 102;
    /// A delegated plugin failed without a usable error object.
    pub const DELEGATE_FAILED: u32 = 103;
    /// A panic or a broken invariant: always a bug.
    pub const INTERNAL: u32 = 999;
}

/// A CNI error: what a plugin prints on stdout when it fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError { code, msg: msg.into(), details: String::new() }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> CniError {
        self.details = details.into();
        self
    }

    pub fn incompatible_version(msg: impl Into<String>) -> CniError {
        CniError::new(code::INCOMPATIBLE_VERSION, msg)
    }
    pub fn invalid_env(msg: impl Into<String>) -> CniError {
        CniError::new(code::INVALID_ENV, msg)
    }
    pub fn io(msg: impl Into<String>) -> CniError {
        CniError::new(code::IO_FAILURE, msg)
    }
    pub fn decode(msg: impl Into<String>) -> CniError {
        CniError::new(code::DECODE_FAILURE, msg)
    }
    pub fn config(msg: impl Into<String>) -> CniError {
        CniError::new(code::INVALID_CONFIG, msg)
    }
    pub fn try_again(msg: impl Into<String>) -> CniError {
        CniError::new(code::TRY_AGAIN_LATER, msg)
    }
    pub fn check(msg: impl Into<String>) -> CniError {
        CniError::new(code::CHECK_MISMATCH, msg)
    }
    pub fn internal(msg: impl Into<String>) -> CniError {
        CniError::new(code::INTERNAL, msg)
    }

    /// The error object as printed on stdout. The spec lists `cniVersion`; the Go
    /// reference leaves it out; runtimes accept both, so it is included when known.
    pub fn to_json(&self, version: Option<&str>) -> String {
        let mut v = serde_json::to_value(self).expect("error serializes");
        if let (Some(ver), Some(obj)) = (version, v.as_object_mut()) {
            obj.insert("cniVersion".into(), ver.into());
        }
        serde_json::to_string(&v).expect("error serializes")
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.msg)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_omits_empty_details_and_carries_version() {
        let e = CniError::config("bridge: \"mtu\" must be at least 68");
        assert_eq!(
            e.to_json(Some("1.1.0")),
            r#"{"cniVersion":"1.1.0","code":7,"msg":"bridge: \"mtu\" must be at least 68"}"#
        );
        let e = e.with_details("got 12");
        assert!(e.to_json(None).contains(r#""details":"got 12""#));
    }
}
