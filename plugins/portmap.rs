//! portmap (meta, chained): forwards host ports to the container (DNAT) for traffic from
//! outside and from the host itself, with hairpin and localhost masquerading, in the
//! reference's iptables layout (so either implementation cleans up after the other) or
//! its nftables layout. Prints prevResult on unchanged.
//!
//! Every change is one transaction: one `iptables-restore --noflush` per family, or one
//! `nft -f -` for both families. DEL needs neither runtimeConfig nor prevResult: the
//! iptables chain is derived from (network, container id) and found with its references
//! by observation, nft rules by their comment (the bare container id, as the reference);
//! both backends are cleaned. GC removes the iptables chains of this network's
//! attachments that are not in `cni.dev/valid-attachments` (nft rules name no network,
//! so GC leaves them). A mapping may carry podman's `range` (consecutive ports).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use ipnetwork::IpNetwork;
use serde::Deserialize;

use crate::exec::apply;
use crate::exec::observe::{self, IptTable, NftRuleInfo, Observer};
use crate::names;
use crate::plan::firewall::{
    AddrType, BaseChain, Family, FirewallOp, IptLine, IptRule, IptTarget, L4Proto, Mark, NftOp, NftRule, NftTable,
    PortRange,
};
use crate::plan::{Netns, Op, Plan, Sysctl, Tolerate};
use crate::skel::{Cx, Plugin};
use crate::spec::{CniError, CniResult, code};
use crate::validate;

pub struct Portmap;

pub const DNAT_CHAIN: &str = "CNI-HOSTPORT-DNAT";
pub const SETMARK_CHAIN: &str = "CNI-HOSTPORT-SETMARK";
pub const MASQ_CHAIN: &str = "CNI-HOSTPORT-MASQ";
const SETMARK_COMMENT: &str = "CNI portfwd masquerade mark";
const MASQ_JUMP_COMMENT: &str = "CNI portfwd requiring masquerade";
pub const NFT_TABLE: &str = "cni_hostport";
const NFT_HOSTPORTS: &str = "hostports";
/// Kept (empty) for upgrades, as the reference does.
const NFT_HOSTIP_HOSTPORTS: &str = "hostip_hostports";
const NFT_HOSTPORTS_ALL: &str = "hostports_all";
const NFT_MASQ: &str = "masquerading";
/// The chains holding per-attachment nft rules.
const NFT_RULE_CHAINS: [&str; 3] = [NFT_HOSTPORTS, NFT_HOSTIP_HOSTPORTS, NFT_MASQ];
/// Kubernetes uses bits 14 and 15, Calico 20-31.
const DEFAULT_MARK_BIT: i64 = 13;
/// `-m multiport` takes at most 15 ports.
const MULTIPORT_MAX: usize = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Iptables,
    Nftables,
}

impl Backend {
    fn as_str(self) -> &'static str {
        match self {
            Backend::Iptables => "iptables",
            Backend::Nftables => "nftables",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawConf {
    backend: Option<String>,
    snat: Option<bool>,
    conditions_v4: Option<Vec<String>>,
    conditions_v6: Option<Vec<String>>,
    masq_all: bool,
    mark_masq_bit: Option<i64>,
    external_set_mark_chain: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawMapping {
    #[serde(default, rename = "hostPort")]
    host_port: i64,
    #[serde(default, rename = "containerPort")]
    container_port: i64,
    #[serde(default)]
    protocol: String,
    #[serde(default, rename = "hostIP", alias = "hostIp")]
    host_ip: String,
    /// A port range (podman's `range`): hostPort..hostPort+range-1 map to
    /// containerPort..containerPort+range-1. Not in the CNI conventions; the reference
    /// ignores it (runtimes expand ranges into one entry per port for it).
    #[serde(default)]
    range: Option<i64>,
}

/// The largest `range` accepted: each port costs three iptables rules.
const MAX_RANGE: i64 = 4096;

/// One entry of `runtimeConfig.portMappings`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: L4Proto,
    /// Only traffic to this host address is forwarded; None (or unspecified) for any.
    pub host_ip: Option<IpAddr>,
}

impl PortMapping {
    /// Whether the mapping applies to a container address of `family`: a host IP of the
    /// other family skips it.
    fn applies_to(&self, family: Family) -> bool {
        self.host_ip.is_none_or(|h| Family::of(&h) == family)
    }
    /// The host address to match, unless it is unspecified (0.0.0.0 / ::).
    fn dst(&self) -> Option<IpAddr> {
        self.host_ip.filter(|h| !h.is_unspecified())
    }
}

/// The validated portmap configuration (without the backend, which may need probing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortmapConf {
    /// `backend`, or the one the other options imply.
    pub backend: Option<Backend>,
    pub snat: bool,
    pub masq_all: bool,
    pub mark_bit: u32,
    pub external_set_mark_chain: Option<String>,
    pub conditions_v4: Vec<String>,
    pub conditions_v6: Vec<String>,
    pub mappings: Vec<PortMapping>,
}

/// The reference's rule: a first token starting with `-` or `!` is iptables syntax.
fn conditions_backend(c: &[String]) -> Option<Backend> {
    let first = c.first().filter(|f| !f.is_empty())?;
    Some(if first.starts_with('-') || first.starts_with('!') { Backend::Iptables } else { Backend::Nftables })
}

impl PortmapConf {
    pub fn from_cx(cx: &Cx) -> Result<PortmapConf, CniError> {
        let raw: RawConf = cx.conf.plugin()?;
        let err = |m: String| CniError::config(format!("portmap: {m}"));
        if raw.mark_masq_bit.is_some() && raw.external_set_mark_chain.is_some() {
            return Err(err("cannot specify both \"externalSetMarkChain\" and \"markMasqBit\"".into()));
        }
        let bit = raw.mark_masq_bit.unwrap_or(DEFAULT_MARK_BIT);
        if !(0..=31).contains(&bit) {
            return Err(err(format!("\"markMasqBit\" must be between 0 and 31, not {bit}")));
        }
        if let Some(c) = &raw.external_set_mark_chain {
            validate::iptables_chain(c).map_err(|e| err(format!("\"externalSetMarkChain\": {e}")))?;
        }
        let conditions_v4 = raw.conditions_v4.unwrap_or_default();
        let conditions_v6 = raw.conditions_v6.unwrap_or_default();
        for (key, list) in [("conditionsV4", &conditions_v4), ("conditionsV6", &conditions_v6)] {
            for t in list {
                validate::rule_token(t).map_err(|e| err(format!("{key:?}: {e}")))?;
            }
        }

        // Options that belong to one backend; with the other one they are an error.
        let mut implied: Vec<(Backend, &str)> = Vec::new();
        if raw.external_set_mark_chain.is_some() {
            implied.push((Backend::Iptables, "externalSetMarkChain"));
        }
        for (key, list) in [("conditionsV4", &conditions_v4), ("conditionsV6", &conditions_v6)] {
            if let Some(b) = conditions_backend(list) {
                implied.push((b, key));
            }
        }
        let backend = match raw.backend.as_deref() {
            Some("iptables") => Some(Backend::Iptables),
            Some("nftables") => Some(Backend::Nftables),
            Some(other) => {
                return Err(err(format!("\"backend\" must be \"iptables\" or \"nftables\", not {other:?}")));
            }
            None => implied.first().map(|(b, _)| *b),
        };
        if let Some(b) = backend {
            let wrong: Vec<&str> = implied.iter().filter(|(ib, _)| *ib != b).map(|(_, k)| *k).collect();
            if !wrong.is_empty() {
                return Err(err(format!(
                    "{} backend was requested but the configuration has options of the other backend: {}",
                    b.as_str(),
                    wrong.join(", ")
                )));
            }
        }

        let mappings = match cx.conf.runtime_config.get("portMappings") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(v) => {
                let raw: Vec<RawMapping> =
                    serde_json::from_value(v.clone()).map_err(|e| err(format!("runtimeConfig.portMappings: {e}")))?;
                let per_entry: Vec<Vec<PortMapping>> =
                    raw.iter().enumerate().map(|(i, m)| mapping(i, m)).collect::<Result<_, _>>()?;
                per_entry.into_iter().flatten().collect()
            }
        };
        Ok(PortmapConf {
            backend,
            snat: raw.snat.unwrap_or(true),
            masq_all: raw.masq_all,
            mark_bit: bit as u32,
            external_set_mark_chain: raw.external_set_mark_chain,
            conditions_v4,
            conditions_v6,
            mappings,
        })
    }

    fn conditions(&self, family: Family) -> &[String] {
        if family == Family::V4 { &self.conditions_v4 } else { &self.conditions_v6 }
    }

    fn mark(&self) -> Mark {
        let v = 1u32 << self.mark_bit;
        Mark { value: v, mask: v }
    }

    fn setmark_chain(&self) -> String {
        self.external_set_mark_chain.clone().unwrap_or_else(|| SETMARK_CHAIN.to_string())
    }

    /// The backend: configured or implied, else iptables unless only nft is usable.
    pub fn resolve_backend(&self, obs: &mut dyn Observer) -> Backend {
        self.backend.unwrap_or_else(|| {
            if !observe::backend_usable(obs, false) && observe::backend_usable(obs, true) {
                Backend::Nftables
            } else {
                Backend::Iptables
            }
        })
    }
}

/// The validated mappings of one entry: one per port of its range.
fn mapping(i: usize, m: &RawMapping) -> Result<Vec<PortMapping>, CniError> {
    let err = |msg: String| CniError::config(format!("portmap: runtimeConfig.portMappings[{i}]: {msg}"));
    let port = |p: i64, key: &str| -> Result<u16, CniError> {
        u16::try_from(p).ok().filter(|p| *p > 0).ok_or_else(|| err(format!("{key} {p} is not a port number (1-65535)")))
    };
    let protocol = if m.protocol.is_empty() {
        L4Proto::Tcp
    } else {
        L4Proto::parse(&m.protocol).ok_or_else(|| err(format!("protocol {:?} is not tcp, udp or sctp", m.protocol)))?
    };
    let host_ip = match m.host_ip.as_str() {
        "" => None,
        s => Some(s.parse::<IpAddr>().map_err(|_| err(format!("hostIP {s:?} is not an IP address")))?),
    };
    let host_port = port(m.host_port, "hostPort")?;
    let container_port = port(m.container_port, "containerPort")?;
    let range = m.range.unwrap_or(1);
    if !(1..=MAX_RANGE).contains(&range) {
        return Err(err(format!("range {range} is not between 1 and {MAX_RANGE}")));
    }
    let last = |first: u16, what: &str| -> Result<(), CniError> {
        if i64::from(first) + range - 1 > 65535 {
            return Err(err(format!("range {range} from {what} port {first} goes past 65535")));
        }
        Ok(())
    };
    last(host_port, "host")?;
    last(container_port, "container")?;
    Ok((0..range as u16)
        .map(|k| PortMapping { host_port: host_port + k, container_port: container_port + k, protocol, host_ip })
        .collect())
}

/// The container addresses port mappings go to: the first IPv4 and the first IPv6 address
/// of prevResult on the sandboxed interface CNI_IFNAME (an address without an interface
/// index, as in results converted from 0.2.0, is taken as the container's).
pub fn container_addrs(prev: &CniResult, ifname: &str) -> (Option<IpNetwork>, Option<IpNetwork>) {
    let mut v4 = None;
    let mut v6 = None;
    for ip in &prev.ips {
        if let Some(idx) = ip.interface {
            match prev.interfaces.get(idx) {
                Some(i) if i.name == ifname && !i.sandbox.is_empty() => {}
                _ => continue,
            }
        }
        let slot = if ip.address.is_ipv4() { &mut v4 } else { &mut v6 };
        if slot.is_none() {
            *slot = Some(ip.address);
        }
    }
    (v4, v6)
}

// ---------------------------------------------------------------- names

/// The reference's per-container chain: `CNI-DN-` + hex(sha512(network + id)), 28 chars.
pub fn dn_chain(network: &str, container_id: &str) -> String {
    names::hash_with_prefix(28, "CNI-DN-", &format!("{network}{container_id}"))
}

/// The per-container chain of older reference versions (jumped to from
/// CNI-HOSTPORT-SNAT), removed on DEL in case the plugin changed between ADD and DEL.
fn sn_chain(network: &str, container_id: &str) -> String {
    names::hash_with_prefix(28, "CNI-SN-", &format!("{network}{container_id}"))
}

/// The iptables comment is limited to 255 bytes (the reference cuts to 256, which
/// iptables refuses).
fn trim_comment(mut c: String) -> String {
    if c.len() > 255 {
        c.truncate(252);
        c.push_str("...");
    }
    c
}

fn dnat_comment(network: &str, container_id: &str) -> String {
    trim_comment(format!("dnat name: \"{network}\" id: \"{container_id}\""))
}

/// An nft rule of this container. The comment is the bare container id, as the
/// reference writes and deletes it, so either implementation removes the other's rules.
/// It names neither network nor interface: like the reference, a DEL removes the
/// container's port forwarding of every network, and GC cannot tell networks apart.
fn nft_is_ours(comment: &str, container_id: &str) -> bool {
    comment == container_id
}

// ---------------------------------------------------------------- iptables rules

fn host_net(ip: IpAddr) -> IpNetwork {
    IpNetwork::new(ip, if ip.is_ipv4() { 32 } else { 128 }).expect("host prefix")
}

/// A network in the form iptables prints it (host bits cleared); /0 is no match at all.
fn canonical(n: IpNetwork) -> Option<IpNetwork> {
    (n.prefix() != 0).then(|| IpNetwork::new(n.network(), n.prefix()).expect("same prefix"))
}

fn setmark_rule(mark: Mark) -> IptRule {
    IptRule { comment: Some(SETMARK_COMMENT.into()), target: IptTarget::SetXmark(mark), ..IptRule::default() }
}

fn masq_mark_rule(mark: Mark) -> IptRule {
    IptRule { mark: Some(mark), target: IptTarget::Masquerade, ..IptRule::default() }
}

fn masq_jump_rule() -> IptRule {
    IptRule {
        comment: Some(MASQ_JUMP_COMMENT.into()),
        target: IptTarget::Jump(MASQ_CHAIN.into()),
        ..IptRule::default()
    }
}

fn toplevel_jump_rule() -> IptRule {
    IptRule { addrtype_dst: Some(AddrType::Local), target: IptTarget::Jump(DNAT_CHAIN.into()), ..IptRule::default() }
}

/// The rules in CNI-HOSTPORT-DNAT that send this container's ports to its chain: one per
/// protocol per 15 ports, with the family's conditions. As the reference, every mapping's
/// port is listed (a wrong-family hostIP mapping has no rule in the chain).
fn entry_rules(conf: &PortmapConf, family: Family, network: &str, container_id: &str) -> Vec<IptRule> {
    let chain = dn_chain(network, container_id);
    let comment = dnat_comment(network, container_id);
    let mut by_proto: BTreeMap<&'static str, (L4Proto, Vec<u16>)> = BTreeMap::new();
    for m in &conf.mappings {
        by_proto.entry(m.protocol.as_str()).or_insert((m.protocol, Vec::new())).1.push(m.host_port);
    }
    let conditions = conf.conditions(family);
    let mut out = Vec::new();
    for (proto, ports) in by_proto.values() {
        for chunk in ports.chunks(MULTIPORT_MAX) {
            out.push(IptRule {
                protocol: Some(*proto),
                comment: Some(comment.clone()),
                multiport_dports: Some(chunk.to_vec()),
                extra: (!conditions.is_empty()).then(|| conditions.to_vec()),
                target: IptTarget::Jump(chain.clone()),
                ..IptRule::default()
            });
        }
    }
    out
}

/// The container's chain: per mapping, the hairpin and localhost mark rules (with snat),
/// then the DNAT.
fn dn_rules(conf: &PortmapConf, family: Family, ctr: IpNetwork) -> Vec<IptRule> {
    let mark_chain = conf.setmark_chain();
    let mut out = Vec::new();
    for m in conf.mappings.iter().filter(|m| m.applies_to(family)) {
        let base = IptRule {
            dst: m.dst().map(host_net),
            protocol: Some(m.protocol),
            dport: Some(PortRange::single(m.host_port)),
            ..IptRule::default()
        };
        if conf.snat {
            let src = if conf.masq_all { None } else { canonical(ctr) };
            out.push(IptRule { src, target: IptTarget::Jump(mark_chain.clone()), ..base.clone() });
            if family == Family::V4 && !conf.masq_all {
                out.push(IptRule {
                    src: Some(host_net(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))),
                    target: IptTarget::Jump(mark_chain.clone()),
                    ..base.clone()
                });
            }
        }
        out.push(IptRule { target: IptTarget::Dnat(SocketAddr::new(ctr.ip(), m.container_port)), ..base });
    }
    out
}

/// The chain a rule spec jumps (or goes) to, read from the observed text.
fn spec_field(spec: &str, flag: &str) -> Option<String> {
    let w = observe::ipt_words(spec)?;
    let i = w.iter().position(|x| x == flag)?;
    w.get(i + 1).cloned()
}

fn spec_target(spec: &str) -> Option<String> {
    spec_field(spec, "-j").or_else(|| spec_field(spec, "-g"))
}

/// Removes `chain` and every rule that refers to it, from what `table` shows.
fn teardown_lines(table: &IptTable, chain: &str) -> Vec<IptLine> {
    let mut lines = Vec::new();
    for (from, spec) in &table.raw {
        if spec_target(spec).as_deref() != Some(chain) {
            continue;
        }
        if spec.chars().any(char::is_control) {
            crate::exec::log(&format!("portmap: not deleting a rule of {from} with control characters: {spec:?}"));
            continue;
        }
        lines.push(IptLine::DeleteObserved { chain: from.clone(), spec: spec.clone() });
    }
    if table.has_chain(chain) {
        lines.push(IptLine::Flush { chain: chain.to_string() });
        lines.push(IptLine::DeleteChain { chain: chain.to_string() });
    }
    lines
}

/// Lines that make sure `chain` exists and holds `rule` (appended), without flushing a
/// chain that is already there.
fn ensure_rule(lines: &mut Vec<IptLine>, table: &IptTable, chain: &str, rule: IptRule) {
    if !table.has_chain(chain) {
        lines.push(IptLine::DeclareChain { chain: chain.to_string() });
    } else if table.rules_of(chain).any(|r| *r == rule) {
        return;
    }
    lines.push(IptLine::Append { chain: chain.to_string(), rule });
}

/// The ADD transaction for one family, and the one undoing it.
fn iptables_add(
    conf: &PortmapConf,
    table: &IptTable,
    family: Family,
    network: &str,
    container_id: &str,
    ctr: IpNetwork,
) -> (FirewallOp, FirewallOp) {
    let mut lines = Vec::new();
    if conf.snat && conf.external_set_mark_chain.is_none() {
        ensure_rule(&mut lines, table, SETMARK_CHAIN, setmark_rule(conf.mark()));
        ensure_rule(&mut lines, table, MASQ_CHAIN, masq_mark_rule(conf.mark()));
        if !table.rules_of("POSTROUTING").any(|r| *r == masq_jump_rule()) {
            // First, so the bridge/ptp masquerade chains do not catch these packets.
            lines.push(IptLine::Insert { chain: "POSTROUTING".into(), rule: masq_jump_rule() });
        }
    }
    if !table.has_chain(DNAT_CHAIN) {
        lines.push(IptLine::DeclareChain { chain: DNAT_CHAIN.into() });
    }
    for from in ["PREROUTING", "OUTPUT"] {
        if !table.rules_of(from).any(|r| *r == toplevel_jump_rule()) {
            lines.push(IptLine::Append { chain: from.into(), rule: toplevel_jump_rule() });
        }
    }
    // A chain left by an earlier ADD (or a stale one, plugins#683) is replaced.
    let chain = dn_chain(network, container_id);
    lines.extend(teardown_lines(table, &chain).into_iter().filter(|l| matches!(l, IptLine::DeleteObserved { .. })));
    lines.push(IptLine::DeclareChain { chain: chain.clone() });
    for rule in dn_rules(conf, family, ctr) {
        lines.push(IptLine::Append { chain: chain.clone(), rule });
    }
    let entries = entry_rules(conf, family, network, container_id);
    for rule in &entries {
        lines.push(IptLine::Append { chain: DNAT_CHAIN.into(), rule: rule.clone() });
    }
    let mut undo: Vec<IptLine> =
        entries.into_iter().map(|rule| IptLine::Delete { chain: DNAT_CHAIN.into(), rule }).collect();
    undo.push(IptLine::Flush { chain: chain.clone() });
    undo.push(IptLine::DeleteChain { chain });
    (
        FirewallOp::Iptables { family, table: "nat".into(), lines },
        FirewallOp::Iptables { family, table: "nat".into(), lines: undo },
    )
}

// ---------------------------------------------------------------- nftables rules

fn nft_table(family: Family) -> NftTable {
    NftTable::of_family(family, NFT_TABLE)
}

/// The ADD ops for one family. `existing` are the handles of this attachment's rules
/// found in the table (removed first, so a repeated ADD does not duplicate them).
fn nft_add_ops(
    conf: &PortmapConf,
    family: Family,
    ctr: IpNetwork,
    comment: &str,
    existing: &[(String, u64)],
) -> Vec<NftOp> {
    let t = nft_table(family);
    let chain = |name: &str, base: Option<BaseChain>| NftOp::AddChain { table: t.clone(), chain: name.into(), base };
    let rule = |chain: &str, rule: NftRule, comment: Option<&str>| NftOp::AddRule {
        table: t.clone(),
        chain: chain.into(),
        rule,
        comment: comment.map(str::to_string),
    };
    let flush = |name: &str| NftOp::FlushChain { table: t.clone(), chain: name.into() };
    let conditions = conf.conditions(family).to_vec();
    let mut ops = vec![
        NftOp::AddTable { table: t.clone() },
        chain(NFT_HOSTPORTS, None),
        chain(NFT_HOSTIP_HOSTPORTS, None),
        chain(NFT_HOSTPORTS_ALL, None),
        flush(NFT_HOSTPORTS_ALL),
        rule(NFT_HOSTPORTS_ALL, NftRule::Jump { chain: NFT_HOSTIP_HOSTPORTS.into() }, None),
        rule(NFT_HOSTPORTS_ALL, NftRule::Jump { chain: NFT_HOSTPORTS.into() }, None),
        chain("prerouting", Some(BaseChain::NatPrerouting)),
        flush("prerouting"),
        rule(
            "prerouting",
            NftRule::FibDaddrLocalJump { conditions: conditions.clone(), chain: NFT_HOSTPORTS_ALL.into() },
            None,
        ),
        chain("output", Some(BaseChain::NatOutput)),
        flush("output"),
        rule("output", NftRule::FibDaddrLocalJump { conditions, chain: NFT_HOSTPORTS_ALL.into() }, None),
    ];
    if conf.snat {
        ops.push(chain(NFT_MASQ, Some(BaseChain::NatPostrouting)));
    }
    for (c, handle) in existing {
        ops.push(NftOp::DeleteRule { table: t.clone(), chain: c.clone(), handle: *handle });
    }
    for m in conf.mappings.iter().filter(|m| m.applies_to(family)) {
        let dnat = NftRule::Dnat {
            daddr: m.dst(),
            protocol: m.protocol,
            dport: m.host_port,
            to: SocketAddr::new(ctr.ip(), m.container_port),
        };
        ops.push(rule(NFT_HOSTPORTS, dnat, Some(comment)));
    }
    if conf.snat {
        let any: IpNetwork = if family == Family::V4 { "0.0.0.0/0" } else { "::/0" }.parse().expect("valid");
        let saddr = if conf.masq_all { any } else { host_net(ctr.ip()) };
        ops.push(rule(NFT_MASQ, NftRule::MasqueradeFromTo { saddr, daddr: ctr.ip() }, Some(comment)));
        if family == Family::V4 && !conf.masq_all {
            let lo = host_net(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
            ops.push(rule(NFT_MASQ, NftRule::MasqueradeFromTo { saddr: lo, daddr: ctr.ip() }, Some(comment)));
        }
    }
    ops
}

/// Handles of this attachment's nft rules in one family's table (none if it is absent).
fn nft_rules_of(
    obs: &mut dyn Observer,
    family: Family,
    keep: impl Fn(&NftRuleInfo) -> bool,
) -> Result<Vec<(String, u64)>, CniError> {
    let rules = observe::nft_table_rules(obs, &nft_table(family))?.unwrap_or_default();
    Ok(rules
        .into_iter()
        .filter(|r| NFT_RULE_CHAINS.contains(&r.chain.as_str()) && keep(r))
        .map(|r| (r.chain, r.handle))
        .collect())
}

/// A listing that fails (tool missing, table absent) means there is nothing to remove.
fn lenient<T>(r: Result<Option<T>, CniError>, what: &str) -> Option<T> {
    r.unwrap_or_else(|e| {
        crate::exec::log(&format!("portmap: {what}: {e}; assuming nothing to clean"));
        None
    })
}

// ---------------------------------------------------------------- plans

/// The ADD plan: the rules for each container address, stale UDP conntrack entries, and
/// route_localnet on the interface routing to the container's IPv4 address (so 127.0.0.1
/// can be DNATed to it), as the reference does for both backends.
#[allow(clippy::too_many_arguments)]
pub fn plan_add(
    conf: &PortmapConf,
    backend: Backend,
    obs: &mut dyn Observer,
    network: &str,
    container_id: &str,
    addrs: (Option<IpNetwork>, Option<IpNetwork>),
) -> Result<Plan, CniError> {
    let mut plan = Plan::new();
    let families: Vec<(Family, IpNetwork)> =
        [(Family::V4, addrs.0), (Family::V6, addrs.1)].into_iter().filter_map(|(f, a)| Some((f, a?))).collect();
    match backend {
        Backend::Iptables => {
            for (family, ctr) in &families {
                let table = observe::iptables_table(obs, *family, "nat")?.ok_or_else(|| {
                    CniError::new(
                        code::COMMAND_FAILED,
                        format!("portmap: the {} nat table is not usable", family.iptables()),
                    )
                })?;
                let (op, undo) = iptables_add(conf, &table, *family, network, container_id, *ctr);
                plan.push(&Netns::Host, Op::Firewall(op)).undo(Op::Firewall(undo));
            }
        }
        Backend::Nftables => {
            let mut ops = Vec::new();
            let mut undo = Vec::new();
            for (family, ctr) in &families {
                // A repeated ADD replaces the container's rules of this address rather than
                // adding them twice (rules of its other networks DNAT elsewhere).
                let existing = nft_rules_of(obs, *family, |r| {
                    nft_is_ours(&r.comment, container_id) && r.mentions(&ctr.ip().to_string())
                })?;
                ops.extend(nft_add_ops(conf, *family, *ctr, container_id, &existing));
                for chain in [NFT_HOSTPORTS, NFT_MASQ] {
                    undo.push(NftOp::DeleteRulesWithComment {
                        table: nft_table(*family),
                        chain: chain.into(),
                        comment: container_id.to_string(),
                    });
                }
            }
            if !ops.is_empty() {
                plan.push(&Netns::Host, Op::Firewall(FirewallOp::nft(ops))).undo(Op::Firewall(FirewallOp::nft(undo)));
            }
        }
    }
    // Stale UDP conntrack entries would keep sending the port elsewhere.
    for (family, _) in &families {
        let mut ports: Vec<u16> =
            conf.mappings.iter().filter(|m| m.protocol == L4Proto::Udp).map(|m| m.host_port).collect();
        ports.sort_unstable();
        ports.dedup();
        for dport in ports {
            plan.push(&Netns::Host, Op::ConntrackDelete { family: *family, protocol: L4Proto::Udp, dport })
                .tolerate(Tolerate::Any);
        }
    }
    if let (true, Some(v4)) = (conf.snat, addrs.0) {
        match observe::route_get_dev(obs, &Netns::Host, v4.ip()) {
            Ok(Some(dev)) if validate::ifname(&dev).is_ok() => {
                plan.push(&Netns::Host, Op::Sysctl(Sysctl::iface("ipv4", &dev, "route_localnet", "1")));
            }
            Ok(other) => crate::exec::log(&format!("portmap: no usable route to {} ({other:?})", v4.ip())),
            Err(e) => crate::exec::log(&format!("portmap: no route to {}: {e}", v4.ip())),
        }
    }
    Ok(plan)
}

/// Removes one attachment's port forwarding from both backends, from what is there now.
pub fn plan_teardown(plan: &mut Plan, obs: &mut dyn Observer, network: &str, container_id: &str) {
    let chains = [dn_chain(network, container_id), sn_chain(network, container_id)];
    for family in [Family::V4, Family::V6] {
        let Some(table) = lenient(observe::iptables_table(obs, family, "nat"), "iptables") else { continue };
        let lines: Vec<IptLine> = chains.iter().flat_map(|c| teardown_lines(&table, c)).collect();
        if !lines.is_empty() {
            plan.push(&Netns::Host, Op::Firewall(FirewallOp::Iptables { family, table: "nat".into(), lines }))
                .tolerate(Tolerate::Missing);
        }
    }
    nft_delete(plan, obs, |r| nft_is_ours(&r.comment, container_id));
}

fn nft_delete(plan: &mut Plan, obs: &mut dyn Observer, matches: impl Fn(&NftRuleInfo) -> bool) {
    let mut ops = Vec::new();
    for family in [Family::V4, Family::V6] {
        let found = lenient(nft_rules_of(obs, family, &matches).map(Some), "nft").unwrap_or_default();
        ops.extend(found.into_iter().map(|(chain, handle)| NftOp::DeleteRule {
            table: nft_table(family),
            chain,
            handle,
        }));
    }
    if !ops.is_empty() {
        plan.push(&Netns::Host, Op::Firewall(FirewallOp::nft(ops))).tolerate(Tolerate::Missing);
    }
}

/// GC: removes the port forwarding of every attachment of `network` not in `valid`.
pub fn plan_gc(plan: &mut Plan, obs: &mut dyn Observer, network: &str, valid: &[crate::spec::Attachment]) {
    let valid_chains: Vec<String> = valid.iter().map(|a| dn_chain(network, &a.container_id)).collect();
    let prefix = format!("dnat name: \"{network}\" id: ");
    for family in [Family::V4, Family::V6] {
        let Some(table) = lenient(observe::iptables_table(obs, family, "nat"), "iptables") else { continue };
        let mut stale: Vec<String> = Vec::new();
        for (from, spec) in &table.raw {
            if from != DNAT_CHAIN || !spec_field(spec, "--comment").is_some_and(|c| c.starts_with(&prefix)) {
                continue;
            }
            if let Some(t) = spec_target(spec).filter(|t| t.starts_with("CNI-DN-") && !valid_chains.contains(t))
                && !stale.contains(&t)
            {
                stale.push(t);
            }
        }
        let lines: Vec<IptLine> = stale.iter().flat_map(|c| teardown_lines(&table, c)).collect();
        if !lines.is_empty() {
            plan.push(&Netns::Host, Op::Firewall(FirewallOp::Iptables { family, table: "nat".into(), lines }))
                .tolerate(Tolerate::Missing);
        }
    }
    // The nft rules carry only the container id (the reference's comment), not the
    // network: removing those of ids missing here could remove another network's port
    // forwarding, so GC leaves them to DEL.
}

/// CHECK of one family's iptables rules.
fn check_iptables(
    conf: &PortmapConf,
    table: &IptTable,
    family: Family,
    network: &str,
    container_id: &str,
    ctr: IpNetwork,
) -> Result<(), CniError> {
    let fam = if family == Family::V4 { "iptables" } else { "ip6tables" };
    let chain = dn_chain(network, container_id);
    if !table.has_chain(&chain) {
        return Err(CniError::check(format!("portmap: {fam} chain {chain} is missing")));
    }
    for rule in dn_rules(conf, family, ctr) {
        if !table.rules_of(&chain).any(|r| *r == rule) {
            return Err(CniError::check(format!("portmap: {fam} rule `-A {chain}{}` is missing", rule.spec())));
        }
    }
    for rule in entry_rules(conf, family, network, container_id) {
        // Conditions are the user's own syntax and iptables prints them its way: compare
        // what portmap itself puts in the rule.
        let ports: Vec<String> = rule.multiport_dports.iter().flatten().map(u16::to_string).collect();
        let proto = rule.protocol.map(L4Proto::as_str);
        let found = table.raw.iter().filter(|(c, _)| c == DNAT_CHAIN).any(|(_, spec)| {
            spec_field(spec, "-p").as_deref() == proto
                && spec_field(spec, "--dports") == Some(ports.join(","))
                && spec_field(spec, "--comment") == rule.comment
                && spec_target(spec).as_deref() == Some(chain.as_str())
        });
        if !found {
            return Err(CniError::check(format!("portmap: {fam} rule `-A {DNAT_CHAIN}{}` is missing", rule.spec())));
        }
    }
    for from in ["PREROUTING", "OUTPUT"] {
        if !table.rules_of(from).any(|r| *r == toplevel_jump_rule()) {
            return Err(CniError::check(format!("portmap: {fam} {from} does not jump to {DNAT_CHAIN}")));
        }
    }
    if conf.snat && conf.external_set_mark_chain.is_none() {
        let wanted = [
            (SETMARK_CHAIN, setmark_rule(conf.mark())),
            (MASQ_CHAIN, masq_mark_rule(conf.mark())),
            ("POSTROUTING", masq_jump_rule()),
        ];
        for (c, rule) in wanted {
            if !table.rules_of(c).any(|r| *r == rule) {
                return Err(CniError::check(format!("portmap: {fam} rule `-A {c}{}` is missing", rule.spec())));
            }
        }
    }
    Ok(())
}

fn prev_result(cx: &Cx) -> Result<CniResult, CniError> {
    cx.conf
        .prev_result
        .clone()
        .ok_or_else(|| CniError::config("portmap: must be called as a chained plugin (no prevResult)"))
}

impl Plugin for Portmap {
    fn name(&self) -> &'static str {
        "portmap"
    }
    fn about(&self) -> &'static str {
        "CNI portmap plugin (ipcni)"
    }

    fn add(&self, cx: &mut Cx) -> Result<CniResult, CniError> {
        let conf = PortmapConf::from_cx(cx)?;
        let prev = prev_result(cx)?;
        if conf.mappings.is_empty() {
            return Ok(prev);
        }
        let network = cx.conf.require_name()?.to_string();
        let addrs = container_addrs(&prev, &cx.env.ifname);
        if addrs == (None, None) {
            return Ok(prev);
        }
        let backend = conf.resolve_backend(cx.obs);
        // The shared chains are observed and then changed: not interleaved with another ADD.
        let _lock = cx.lock("portmap")?;
        let plan = plan_add(&conf, backend, cx.obs, &network, &cx.env.container_id, addrs)?;
        apply(cx.exec, &plan)?;
        Ok(prev)
    }

    fn del(&self, cx: &mut Cx) -> Result<(), CniError> {
        // Nothing of the config but the network name is needed: DEL works without
        // runtimeConfig or prevResult, and with options a newer config no longer accepts.
        let network = cx.conf.require_name()?.to_string();
        let _lock = cx.lock("portmap")?;
        let mut plan = Plan::new();
        plan_teardown(&mut plan, cx.obs, &network, &cx.env.container_id);
        apply(cx.exec, &plan)
    }

    fn check(&self, cx: &mut Cx) -> Result<(), CniError> {
        let conf = PortmapConf::from_cx(cx)?;
        let prev = prev_result(cx)?;
        if conf.mappings.is_empty() {
            return Ok(());
        }
        let network = cx.conf.require_name()?.to_string();
        let id = cx.env.container_id.clone();
        let (v4, v6) = container_addrs(&prev, &cx.env.ifname);
        // Only the families the container has an address in (the reference also looked
        // for IPv6 rules of an IPv4-only container, plugins#819).
        let families: Vec<(Family, IpNetwork)> =
            [(Family::V4, v4), (Family::V6, v6)].into_iter().filter_map(|(f, a)| Some((f, a?))).collect();
        match conf.resolve_backend(cx.obs) {
            Backend::Iptables => {
                for (family, ctr) in families {
                    let table = observe::iptables_table(cx.obs, family, "nat")?.ok_or_else(|| {
                        CniError::check(format!("portmap: the {} nat table is missing", family.iptables()))
                    })?;
                    check_iptables(&conf, &table, family, &network, &id, ctr)?;
                }
            }
            Backend::Nftables => {
                for (family, _) in families {
                    let rules = observe::nft_table_rules(cx.obs, &nft_table(family))?.ok_or_else(|| {
                        CniError::check(format!("portmap: nft table {} is missing", nft_table(family)))
                    })?;
                    let count =
                        |chain: &str| rules.iter().filter(|r| r.chain == chain && nft_is_ours(&r.comment, &id)).count();
                    let dnats = conf.mappings.iter().filter(|m| m.applies_to(family)).count();
                    let masqs = match (conf.snat, family == Family::V4 && !conf.masq_all) {
                        (false, _) => 0,
                        (true, true) => 2,
                        (true, false) => 1,
                    };
                    for (chain, want) in [(NFT_HOSTPORTS, dnats), (NFT_MASQ, masqs)] {
                        if count(chain) < want {
                            return Err(CniError::check(format!(
                                "portmap: chain {chain} of nft table {} has {} of {want} rules for this attachment",
                                nft_table(family),
                                count(chain)
                            )));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn status(&self, cx: &mut Cx) -> Result<(), CniError> {
        let conf = PortmapConf::from_cx(cx)?;
        let backend = conf.resolve_backend(cx.obs);
        if !observe::backend_usable(cx.obs, backend == Backend::Nftables) {
            return Err(CniError::new(
                code::PLUGIN_NOT_AVAILABLE,
                format!("portmap: the {} backend is not usable", backend.as_str()),
            ));
        }
        Ok(())
    }

    fn gc(&self, cx: &mut Cx) -> Result<(), CniError> {
        let network = cx.conf.require_name()?.to_string();
        let Some(valid) = cx.conf.valid_attachments.clone() else { return Ok(()) };
        let _lock = cx.lock("portmap")?;
        let mut plan = Plan::new();
        plan_gc(&mut plan, cx.obs, &network, &valid);
        apply(cx.exec, &plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Interface, IpConfig};

    fn conf() -> PortmapConf {
        PortmapConf {
            backend: None,
            snat: true,
            masq_all: false,
            mark_bit: 13,
            external_set_mark_chain: None,
            conditions_v4: Vec::new(),
            conditions_v6: Vec::new(),
            mappings: (0..17)
                .map(|i| PortMapping {
                    host_port: 8000 + i,
                    container_port: 80,
                    protocol: if i == 16 { L4Proto::Udp } else { L4Proto::Tcp },
                    host_ip: None,
                })
                .collect(),
        }
    }

    #[test]
    fn entry_rules_split_at_15_ports_per_protocol_in_name_order() {
        let rules = entry_rules(&conf(), Family::V4, "net", "c1");
        let specs: Vec<(Option<L4Proto>, usize)> =
            rules.iter().map(|r| (r.protocol, r.multiport_dports.as_ref().unwrap().len())).collect();
        assert_eq!(specs, vec![(Some(L4Proto::Tcp), 15), (Some(L4Proto::Tcp), 1), (Some(L4Proto::Udp), 1)]);
        assert_eq!(dn_chain("net", "c1").len(), 28);
        assert!(dn_chain("net", "c1").starts_with("CNI-DN-"));
    }

    #[test]
    fn only_sandbox_addresses_of_ifname_are_mapped() {
        let prev = CniResult {
            interfaces: vec![
                Interface { name: "cni0".into(), ..Interface::default() },
                Interface { name: "eth0".into(), sandbox: "/run/netns/c".into(), ..Interface::default() },
            ],
            ips: vec![
                IpConfig { address: "10.0.0.1/24".parse().unwrap(), gateway: None, interface: Some(0) },
                IpConfig { address: "10.0.0.2/24".parse().unwrap(), gateway: None, interface: Some(1) },
                IpConfig { address: "10.0.0.3/24".parse().unwrap(), gateway: None, interface: Some(1) },
                IpConfig { address: "fd00::2/64".parse().unwrap(), gateway: None, interface: None },
            ],
            ..CniResult::default()
        };
        let (v4, v6) = container_addrs(&prev, "eth0");
        assert_eq!(v4, Some("10.0.0.2/24".parse().unwrap()));
        assert_eq!(v6, Some("fd00::2/64".parse().unwrap()));
        assert_eq!(container_addrs(&prev, "eth1").0, None);
    }

    #[test]
    fn masq_all_hairpin_matches_any_source_and_drops_the_localhost_rule() {
        let mut c = conf();
        c.mappings.truncate(1);
        c.masq_all = true;
        let rules = dn_rules(&c, Family::V4, "10.0.0.2/24".parse().unwrap());
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].spec(), " -p tcp -m tcp --dport 8000 -j CNI-HOSTPORT-SETMARK");
    }
}
