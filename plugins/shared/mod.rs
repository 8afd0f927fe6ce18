//! Planning pieces shared by several plugins.

pub mod iface;
pub mod masq;
pub mod sublink;
