//! The plan: an ordered list of semantic steps, each knowing the namespace it runs in
//! and how to undo itself. Rendering is deterministic: the same plan always gives the
//! same argv, batch lines and scripts.

pub mod firewall;
mod render;

use std::net::IpAddr;
use std::path::PathBuf;

use ipnetwork::IpNetwork;
use serde::Serialize;

pub use firewall::{Family, FirewallOp, IptLine, IptRule, IptTarget, NftOp};
pub use render::{Rendered, Tool, shell_quote};

/// Where a step runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Netns {
    /// The namespace the plugin was started in.
    Host,
    /// A container namespace, by path (CNI_NETNS).
    Container(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LinkAdd {
    Bridge {
        name: String,
        mtu: Option<u32>,
        mac: Option<String>,
        vlan_filtering: bool,
    },
    /// A veth pair made from the host side; the peer is created directly in `peer_netns`.
    Veth {
        name: String,
        mtu: Option<u32>,
        mac: Option<String>,
        peer: String,
        peer_mac: Option<String>,
        peer_netns: Option<PathBuf>,
    },
}

impl LinkAdd {
    pub fn name(&self) -> &str {
        match self {
            LinkAdd::Bridge { name, .. } | LinkAdd::Veth { name, .. } => name,
        }
    }
}

/// `ip link set DEV …`: only the fields that are Some are changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LinkSet {
    pub dev: String,
    pub up: Option<bool>,
    pub master: Option<String>,
    pub mtu: Option<u32>,
    pub mac: Option<String>,
    pub promisc: Option<bool>,
}

impl LinkSet {
    pub fn dev(dev: &str) -> LinkSet {
        LinkSet { dev: dev.to_string(), ..LinkSet::default() }
    }
    pub fn up(dev: &str) -> LinkSet {
        LinkSet { up: Some(true), ..LinkSet::dev(dev) }
    }
}

/// Bridge port flags, `ip link set DEV type bridge_slave …`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BridgePort {
    pub dev: String,
    pub hairpin: bool,
    pub isolated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteMode {
    Add,
    /// Netlink CREATE without EXCL: what the reference plugins use for container routes.
    Prepend,
    Replace,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteSpec {
    pub dst: IpNetwork,
    pub via: Option<IpAddr>,
    pub dev: String,
    pub src: Option<IpAddr>,
    pub scope: Option<RouteScope>,
    pub metric: Option<u32>,
    pub table: Option<u32>,
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
}

impl RouteSpec {
    pub fn new(dst: IpNetwork, dev: &str) -> RouteSpec {
        RouteSpec {
            dst,
            via: None,
            dev: dev.to_string(),
            src: None,
            scope: None,
            metric: None,
            table: None,
            mtu: None,
            advmss: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteScope {
    Global,
    Link,
    Host,
    /// Any other numeric scope from a result's `scope`.
    Other(u8),
}

impl RouteScope {
    pub fn from_number(n: u32) -> Option<RouteScope> {
        Some(match n {
            0 => RouteScope::Global,
            253 => RouteScope::Link,
            254 => RouteScope::Host,
            n => RouteScope::Other(u8::try_from(n).ok()?),
        })
    }
}

/// A sysctl under /proc/sys, kept as path components so interface names with dots work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sysctl {
    pub path: Vec<String>,
    pub value: String,
}

impl Sysctl {
    pub fn new(path: &[&str], value: &str) -> Sysctl {
        Sysctl { path: path.iter().map(|s| s.to_string()).collect(), value: value.to_string() }
    }
    /// `net/ipv4/conf/<dev>/<key>` and friends.
    pub fn iface(family: &str, dev: &str, key: &str, value: &str) -> Sysctl {
        Sysctl::new(&["net", family, "conf", dev, key], value)
    }
    pub fn proc_path(&self) -> PathBuf {
        let mut p = PathBuf::from("/proc/sys");
        p.extend(&self.path);
        p
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    LinkAdd(LinkAdd),
    LinkSet(LinkSet),
    LinkDel {
        dev: String,
    },
    BridgePort(BridgePort),
    BridgeVlanAdd {
        dev: String,
        vid: u16,
        pvid: bool,
        untagged: bool,
    },
    BridgeVlanDel {
        dev: String,
        vid: u16,
    },
    AddrAdd {
        dev: String,
        addr: IpNetwork,
    },
    AddrDel {
        dev: String,
        addr: IpNetwork,
    },
    RouteAdd {
        mode: RouteMode,
        route: RouteSpec,
    },
    RouteDel {
        route: RouteSpec,
    },
    Sysctl(Sysctl),
    Firewall(FirewallOp),
    /// Wait until the link reports operstate UP (bounded; the reference's bridge port wait).
    WaitOperUp {
        dev: String,
    },
    /// Wait until no IPv6 address on the link is tentative (bounded; for enabledad).
    WaitDad {
        dev: String,
    },
}

/// Which failures of a step are not failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tolerate {
    #[default]
    Nothing,
    /// The object is already there (EEXIST).
    Exists,
    /// The object (link, address, route, rule, netns) is already gone.
    Missing,
    /// Any failure: best-effort steps such as accept_ra sysctls.
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub ns: Netns,
    pub op: Op,
    #[serde(skip_serializing_if = "is_default")]
    pub tolerate: Tolerate,
    /// What undoes this step if a later step fails (run best-effort, newest first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undo: Option<Op>,
}

fn is_default(t: &Tolerate) -> bool {
    *t == Tolerate::Nothing
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn new() -> Plan {
        Plan::default()
    }

    pub fn push(&mut self, ns: &Netns, op: Op) -> &mut Step {
        self.steps.push(Step { ns: ns.clone(), op, tolerate: Tolerate::Nothing, undo: None });
        self.steps.last_mut().expect("just pushed")
    }

    pub fn extend(&mut self, other: Plan) {
        self.steps.extend(other.steps);
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The plan as paste-able shell lines, one per step, with a header per namespace run.
    pub fn to_shell(&self) -> String {
        let mut out = String::new();
        for step in &self.steps {
            let note = match step.tolerate {
                Tolerate::Nothing => "",
                Tolerate::Exists => "  # may already exist",
                Tolerate::Missing => "  # may already be gone",
                Tolerate::Any => "  # best effort",
            };
            out.push_str(&render::render(&step.ns, &step.op).to_shell_noted(note));
            out.push('\n');
        }
        out
    }

    /// The plan as JSON: each step with its semantic form and its rendered command.
    pub fn to_json(&self) -> serde_json::Value {
        let steps: Vec<serde_json::Value> = self
            .steps
            .iter()
            .map(|s| {
                let mut v = serde_json::to_value(s).expect("plan serializes");
                let r = render::render(&s.ns, &s.op);
                v["argv"] = r.argv().into();
                if let Some(stdin) = r.stdin {
                    v["stdin"] = stdin.into();
                }
                v
            })
            .collect();
        serde_json::Value::Array(steps)
    }
}

impl Step {
    pub fn tolerate(&mut self, t: Tolerate) -> &mut Step {
        self.tolerate = t;
        self
    }
    pub fn undo(&mut self, op: Op) -> &mut Step {
        self.undo = Some(op);
        self
    }
    pub fn rendered(&self) -> Rendered {
        render::render(&self.ns, &self.op)
    }
}

pub use render::render;
