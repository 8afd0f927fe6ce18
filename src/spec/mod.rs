//! CNI protocol types: versions, errors, environment, configuration and results.

pub mod config;
pub mod env;
pub mod error;
pub mod result;
pub mod version;

pub use config::{Attachment, NetConf};
pub use env::{CniArgs, CniEnv, Command};
pub use error::{CniError, code};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use version::Version;
