//! CNI spec versions and version negotiation.

use std::fmt;

use crate::spec::error::CniError;

/// A CNI specification version this implementation speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    V010,
    V020,
    V030,
    V031,
    V040,
    V100,
    V110,
}

impl Version {
    pub const ALL: [Version; 7] =
        [Version::V010, Version::V020, Version::V030, Version::V031, Version::V040, Version::V100, Version::V110];

    /// The newest version, the one VERSION reports as its own.
    pub const LATEST: Version = Version::V110;

    pub fn as_str(self) -> &'static str {
        match self {
            Version::V010 => "0.1.0",
            Version::V020 => "0.2.0",
            Version::V030 => "0.3.0",
            Version::V031 => "0.3.1",
            Version::V040 => "0.4.0",
            Version::V100 => "1.0.0",
            Version::V110 => "1.1.0",
        }
    }

    /// Exact string match, as the reference skel does: "0.3" is not "0.3.0".
    pub fn parse(s: &str) -> Option<Version> {
        Version::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Like [`Version::parse`], but an unsupported version is CNI error 1.
    pub fn negotiate(s: &str) -> Result<Version, CniError> {
        Version::parse(s).ok_or_else(|| {
            CniError::incompatible_version(format!(
                "config cniVersion {s:?} is not supported (supported: {})",
                Version::ALL.map(Version::as_str).join(", ")
            ))
        })
    }

    /// 0.1.0 and 0.2.0 results carry ip4/ip6 instead of interfaces and ips.
    pub fn is_legacy_result(self) -> bool {
        self <= Version::V020
    }

    /// 0.3.x and 0.4.0 results carry `"version"` on each ips entry.
    pub fn ips_carry_version(self) -> bool {
        (Version::V030..=Version::V040).contains(&self)
    }

    pub fn allows_check(self) -> bool {
        self >= Version::V040
    }

    pub fn allows_status_and_gc(self) -> bool {
        self >= Version::V110
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_is_exact() {
        assert_eq!(Version::parse("0.3.1"), Some(Version::V031));
        assert_eq!(Version::parse("0.3"), None);
        assert_eq!(Version::parse("1.1.0 "), None);
        assert_eq!(Version::negotiate("2.0.0").unwrap_err().code, 1);
    }

    #[test]
    fn feature_gates_follow_the_spec() {
        assert!(Version::V020.is_legacy_result());
        assert!(!Version::V030.is_legacy_result());
        assert!(Version::V040.ips_carry_version());
        assert!(!Version::V100.ips_carry_version());
        assert!(!Version::V031.allows_check());
        assert!(Version::V040.allows_check());
        assert!(!Version::V100.allows_status_and_gc());
        assert!(Version::V110.allows_status_and_gc());
    }
}
