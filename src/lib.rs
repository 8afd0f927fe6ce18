//! ipcni: CNI plugins that plan iproute2 steps and hand them to an executor.
//! See ARCHITECTURE.md for the map.

pub mod spec;
pub mod validate;
pub mod exec;
pub mod plan;
