//! ipcni: CNI plugins that plan iproute2 steps and hand them to an executor.
//! See ARCHITECTURE.md for the map.

pub mod cli;
pub mod delegate;
pub mod exec;
pub mod ipam;
pub mod names;
pub mod plan;
#[path = "../plugins/mod.rs"]
pub mod plugins;
pub mod runtime;
pub mod skel;
pub mod spec;
pub mod validate;
