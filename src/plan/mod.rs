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
pub use render::{HOST_NETNS_ARG, HOST_NETNS_FD, Rendered, Tool, shell_quote};

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
    /// A macvlan on `master` (looked up in the namespace the step runs in), created
    /// directly in `netns` when set.
    Macvlan {
        name: String,
        master: String,
        mode: MacvlanMode,
        mtu: Option<u32>,
        mac: Option<String>,
        bcqueuelen: Option<u32>,
        netns: Option<PathBuf>,
    },
    /// An ipvlan on `master`, created directly in `netns` when set (no MAC of its own).
    Ipvlan {
        name: String,
        master: String,
        mode: IpvlanMode,
        mtu: Option<u32>,
        netns: Option<PathBuf>,
    },
    /// An 802.1Q VLAN device on `master`, created directly in `netns` when set.
    Vlan {
        name: String,
        master: String,
        vlan_id: u16,
        mtu: Option<u32>,
        netns: Option<PathBuf>,
    },
    Dummy {
        name: String,
        mtu: Option<u32>,
        mac: Option<String>,
    },
    /// A persistent tap (`ip tuntap add mode tap`), made in the namespace the step runs
    /// in. With `selinux_context` the `ip` process runs under that SELinux exec context
    /// (`runcon`), as the reference does, so the tap is labelled for whoever opens it.
    Tuntap {
        name: String,
        multi_queue: bool,
        vnet_hdr: bool,
        owner: Option<u32>,
        group: Option<u32>,
        selinux_context: Option<String>,
    },
    /// A VXLAN device (`type vxlan id VNI`), encapsulating over `dev` when set.
    Vxlan {
        name: String,
        vni: u32,
        mtu: Option<u32>,
        mac: Option<String>,
        local: Option<IpAddr>,
        group: Option<IpAddr>,
        dev: Option<String>,
        dstport: u16,
        learning: bool,
    },
    /// An ifb device (`type ifb`): where bandwidth redirects a veth's ingress to shape it.
    Ifb {
        name: String,
        mtu: Option<u32>,
        mac: Option<String>,
        txqlen: Option<u32>,
    },
    /// A VRF device bound to routing table `table`.
    Vrf {
        name: String,
        table: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MacvlanMode {
    Bridge,
    Private,
    Vepa,
    Passthru,
}

impl MacvlanMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MacvlanMode::Bridge => "bridge",
            MacvlanMode::Private => "private",
            MacvlanMode::Vepa => "vepa",
            MacvlanMode::Passthru => "passthru",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IpvlanMode {
    L2,
    L3,
    L3s,
}

impl IpvlanMode {
    pub fn as_str(self) -> &'static str {
        match self {
            IpvlanMode::L2 => "l2",
            IpvlanMode::L3 => "l3",
            IpvlanMode::L3s => "l3s",
        }
    }
}

impl LinkAdd {
    pub fn name(&self) -> &str {
        match self {
            LinkAdd::Bridge { name, .. } | LinkAdd::Veth { name, .. } => name,
            LinkAdd::Macvlan { name, .. }
            | LinkAdd::Ipvlan { name, .. }
            | LinkAdd::Vlan { name, .. }
            | LinkAdd::Dummy { name, .. } => name,
            LinkAdd::Tuntap { name, .. } | LinkAdd::Vxlan { name, .. } => name,
            LinkAdd::Ifb { name, .. } | LinkAdd::Vrf { name, .. } => name,
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
    /// Renames the link (`name NEW`).
    pub name: Option<String>,
    /// Moves the link to another namespace (`netns PATH`). With `name` in the same step
    /// the kernel moves and renames under one lock, and uses the new name directly when
    /// the old one is taken in the target. `Netns::Host` is the plugin's own namespace.
    pub netns: Option<Netns>,
    /// Sets the link's alias (`alias TEXT`).
    pub alias: Option<String>,
    /// `allmulticast on|off`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allmulti: Option<bool>,
    /// `txqueuelen N`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub txqlen: Option<u32>,
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
    /// `bridge fdb append MAC dev DEV dst IP`: a forwarding entry of a VXLAN device (the
    /// all-zero MAC is the flood list: where broadcast and unknown unicast go).
    FdbAppend {
        dev: String,
        mac: String,
        dst: IpAddr,
    },
    FdbDel {
        dev: String,
        mac: String,
        dst: IpAddr,
    },
    /// Records ipcni's own per-attachment host state (`exec::state`): written atomically
    /// by the executor itself. Shown as `install`, which does the same when pasted.
    StateWrite {
        path: PathBuf,
        contents: String,
    },
    /// Removes a state file (`rm`); a missing file is "missing".
    StateRemove {
        path: PathBuf,
    },
    /// `conntrack -D -f ipv4|ipv6 -p PROTO --dport PORT`: forgets connections to a port
    /// (portmap's stale UDP entries). Planned best-effort: conntrack-tools may be absent,
    /// and it fails when nothing matched.
    ConntrackDelete {
        family: firewall::Family,
        protocol: firewall::L4Proto,
        dport: u16,
    },
    /// `ip link set dev DEV nomaster`.
    LinkNoMaster {
        dev: String,
    },
    /// `ip rule add …` (IPv6 rules as `ip -6 rule`: a batch line cannot choose the family).
    RuleAdd {
        rule: RuleSpec,
    },
    RuleDel {
        rule: RuleSpec,
    },
    /// `tc qdisc add dev DEV …`.
    QdiscAdd {
        dev: String,
        qdisc: Qdisc,
    },
    /// `tc qdisc del dev DEV root|ingress`.
    QdiscDel {
        dev: String,
        parent: QdiscParent,
    },
    /// `tc filter add dev DEV …`.
    FilterAdd {
        dev: String,
        filter: TcFilter,
    },
}

/// A policy routing rule, `ip rule add from SRC table T [priority P]`. Without a priority
/// the kernel places it just above the first rule with a priority (as netlink does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleSpec {
    pub src: IpNetwork,
    pub table: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
}

/// A queueing discipline as bandwidth installs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Qdisc {
    /// `root handle 1: tbf rate R burst B limit L`, all in bytes (the rate in bytes/s,
    /// rendered as bit/s).
    Tbf { rate: u64, burst: u32, limit: u32 },
    /// `handle ffff: ingress`.
    Ingress,
}

/// Which qdisc of a device a `tc qdisc del` removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QdiscParent {
    Root,
    Ingress,
}

/// A tc filter as bandwidth installs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TcFilter {
    /// On the ingress qdisc (`parent ffff:`): every packet (`u32 match u32 0 0`) is
    /// redirected to the egress of `to` (`action mirred egress redirect dev TO`).
    RedirectAll { to: String },
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
    /// Where `undo` runs when that is not `ns`: the inverse of moving a link into another
    /// namespace runs in that other namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undo_ns: Option<Netns>,
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
        self.steps.push(Step { ns: ns.clone(), op, tolerate: Tolerate::Nothing, undo: None, undo_ns: None });
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
    /// An undo that runs in `ns` rather than in the step's own namespace.
    pub fn undo_in(&mut self, ns: &Netns, op: Op) -> &mut Step {
        self.undo = Some(op);
        self.undo_ns = Some(ns.clone());
        self
    }
    pub fn rendered(&self) -> Rendered {
        render::render(&self.ns, &self.op)
    }
}

pub use render::render;
