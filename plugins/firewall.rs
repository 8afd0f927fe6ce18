//! firewall (meta, chained): lets forwarded traffic of the container's addresses through
//! a host firewall whose default is to drop, and optionally isolates its bridge from the
//! other bridges (`ingressPolicy`). Prints prevResult on unchanged.
//!
//! iptables backend (the default), table `filter`, the reference's layout:
//!   FORWARD     -> [CNI-ISOLATION-STAGE-1], CNI-FORWARD (inserted first)
//!   CNI-FORWARD -> CNI-ADMIN (first; `iptablesAdminChainName`), then per address
//!                  `-d IP -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`, `-s IP -j ACCEPT`
//! The per-address rules also carry a comment naming the attachment, so DEL and GC find
//! them without prevResult (rules made by the reference, without comment, are removed
//! when prevResult names their addresses).
//!
//! nftables backend (the reference has none): table `inet cni_firewall`, base chain
//! `forward` (hook forward, priority filter) jumping to `isolation_stage_1`, `admin` and
//! `containers`, which holds the per-attachment rules tagged by comment. An nft accept
//! only ends the chains of its own table, so a drop policy meant to be overridden by
//! this plugin belongs on this `forward` chain (the plugin never changes its policy).
//!
//! Every change is one transaction: one `iptables-restore --noflush` per family or one
//! `nft -f -`. The per-bridge isolation rules are never removed (other containers may
//! use the bridge), as in the reference.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::Deserialize;

use crate::exec::apply;
use crate::exec::observe::{self, IptTable, NftRuleInfo, Observer};
use crate::names;
use crate::plan::firewall::{
    BaseChain, CtState, Family, FirewallOp, IfaceMatch, IptLine, IptRule, IptTarget, NftOp, NftRule, NftTable,
};
use crate::plan::{Netns, Op, Plan, Tolerate};
use crate::skel::{Cx, Plugin};
use crate::spec::{CniError, CniResult, Version, code};
use crate::validate;

pub struct Firewall;

pub const FORWARD_CHAIN: &str = "CNI-FORWARD";
pub const DEFAULT_ADMIN_CHAIN: &str = "CNI-ADMIN";
pub const STAGE1_CHAIN: &str = "CNI-ISOLATION-STAGE-1";
pub const STAGE2_CHAIN: &str = "CNI-ISOLATION-STAGE-2";
const FORWARD_COMMENT: &str = "CNI firewall plugin rules";
const ADMIN_COMMENT: &str = "CNI firewall plugin admin overrides";
const ISOLATION_COMMENT: &str = "CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)";
pub const NFT_TABLE: &str = "cni_firewall";
const NFT_FORWARD: &str = "forward";
const NFT_ADMIN: &str = "admin";
const NFT_CONTAINERS: &str = "containers";
const NFT_STAGE1: &str = "isolation_stage_1";
const NFT_STAGE2: &str = "isolation_stage_2";

static VERSIONS: [Version; 3] = [Version::V040, Version::V100, Version::V110];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Iptables,
    Nftables,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngressPolicy {
    Open,
    SameBridge,
    Isolated,
}

impl IngressPolicy {
    fn as_str(self) -> &'static str {
        match self {
            IngressPolicy::Open => "open",
            IngressPolicy::SameBridge => "same-bridge",
            IngressPolicy::Isolated => "isolated",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawConf {
    backend: Option<String>,
    iptables_admin_chain_name: Option<String>,
    ingress_policy: Option<String>,
}

/// The validated firewall configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallConf {
    pub backend: Backend,
    pub admin_chain: String,
    pub ingress: IngressPolicy,
}

impl FirewallConf {
    pub fn from_cx(cx: &Cx) -> Result<FirewallConf, CniError> {
        let raw: RawConf = cx.conf.plugin()?;
        let err = |m: String| CniError::config(format!("firewall: {m}"));
        let backend = match raw.backend.as_deref() {
            None | Some("") | Some("iptables") => Backend::Iptables,
            Some("nftables") => Backend::Nftables,
            Some("firewalld") => {
                return Err(err(
                    "the firewalld backend is not supported (it needs D-Bus); use \"iptables\" or \"nftables\"".into(),
                ));
            }
            Some(other) => return Err(err(format!("\"backend\" must be \"iptables\" or \"nftables\", not {other:?}"))),
        };
        let admin_chain =
            raw.iptables_admin_chain_name.filter(|c| !c.is_empty()).unwrap_or_else(|| DEFAULT_ADMIN_CHAIN.into());
        validate::iptables_chain(&admin_chain).map_err(|e| err(format!("\"iptablesAdminChainName\": {e}")))?;
        if [FORWARD_CHAIN, STAGE1_CHAIN, STAGE2_CHAIN].contains(&admin_chain.as_str()) {
            return Err(err(format!("\"iptablesAdminChainName\" {admin_chain:?} is one of the plugin's own chains")));
        }
        let ingress = match raw.ingress_policy.as_deref() {
            None | Some("") | Some("open") => IngressPolicy::Open,
            Some("same-bridge") => IngressPolicy::SameBridge,
            Some("isolated") => IngressPolicy::Isolated,
            Some(other) => return Err(err(format!("unknown ingressPolicy {other:?}"))),
        };
        Ok(FirewallConf { backend, admin_chain, ingress })
    }
}

// ---------------------------------------------------------------- rules

fn host_net(ip: IpAddr) -> IpNetwork {
    IpNetwork::new(ip, if ip.is_ipv4() { 32 } else { 128 }).expect("host prefix")
}

/// The comment on an attachment's iptables rules.
fn ipt_comment(network: &str, container_id: &str, ifname: &str) -> String {
    let mut c = format!("CNI firewall name: \"{network}\" id: \"{container_id}\" if: \"{ifname}\"");
    c.truncate(255);
    c
}

/// The two rules of one address: replies in, everything out.
fn addr_rules(ip: IpAddr, comment: Option<&str>) -> [IptRule; 2] {
    [
        IptRule {
            dst: Some(host_net(ip)),
            comment: comment.map(str::to_string),
            ctstate: Some(vec![CtState::Related, CtState::Established]),
            target: IptTarget::Accept,
            ..IptRule::default()
        },
        IptRule { src: Some(host_net(ip)), comment: comment.map(str::to_string), ..IptRule::default() },
    ]
}

fn jump(comment: &str, chain: &str) -> IptRule {
    IptRule { comment: Some(comment.into()), target: IptTarget::Jump(chain.into()), ..IptRule::default() }
}

fn policy_comment(p: IngressPolicy) -> String {
    format!("CNI firewall plugin rules (ingressPolicy: {})", p.as_str())
}

fn iface(name: &str, negated: bool) -> Option<IfaceMatch> {
    Some(IfaceMatch { name: name.into(), negated })
}

/// Stage 1: traffic from the bridge to elsewhere goes to stage 2; with `isolated` also
/// traffic between the bridge's own ports is dropped. Stage 2 drops what enters a
/// bridge there.
fn stage1_rule(br: &str, policy: IngressPolicy) -> IptRule {
    IptRule {
        in_iface: iface(br, false),
        out_iface: iface(br, true),
        comment: Some(policy_comment(policy)),
        target: IptTarget::Jump(STAGE2_CHAIN.into()),
        ..IptRule::default()
    }
}

fn stage1_drop_rule(br: &str) -> IptRule {
    IptRule {
        in_iface: iface(br, false),
        out_iface: iface(br, false),
        comment: Some(policy_comment(IngressPolicy::Isolated)),
        target: IptTarget::Drop,
        ..IptRule::default()
    }
}

fn stage2_rule(br: &str) -> IptRule {
    IptRule {
        out_iface: iface(br, false),
        comment: Some(ISOLATION_COMMENT.into()),
        target: IptTarget::Drop,
        ..IptRule::default()
    }
}

fn return_rule() -> IptRule {
    IptRule { comment: Some(ISOLATION_COMMENT.into()), target: IptTarget::Return, ..IptRule::default() }
}

fn has(table: &IptTable, chain: &str, rule: &IptRule) -> bool {
    table.rules_of(chain).any(|r| r == rule)
}

/// The ADD transaction for one family, and the one undoing it (the address rules).
fn iptables_add(
    conf: &FirewallConf,
    table: &IptTable,
    family: Family,
    ips: &[IpAddr],
    comment: &str,
    bridge: Option<&str>,
) -> (FirewallOp, FirewallOp) {
    let mut lines = Vec::new();
    for chain in [FORWARD_CHAIN, conf.admin_chain.as_str()] {
        if !table.has_chain(chain) {
            lines.push(IptLine::DeclareChain { chain: chain.into() });
        }
    }
    let fwd_jump = jump(FORWARD_COMMENT, FORWARD_CHAIN);
    if !has(table, "FORWARD", &fwd_jump) {
        lines.push(IptLine::Insert { chain: "FORWARD".into(), rule: fwd_jump });
    }
    let admin_jump = jump(ADMIN_COMMENT, &conf.admin_chain);
    if !has(table, FORWARD_CHAIN, &admin_jump) {
        lines.push(IptLine::Insert { chain: FORWARD_CHAIN.into(), rule: admin_jump });
    }
    // A repeated ADD replaces this attachment's rules rather than adding them twice.
    for r in table.rules_of(FORWARD_CHAIN).filter(|r| r.comment.as_deref() == Some(comment)) {
        lines.push(IptLine::Delete { chain: FORWARD_CHAIN.into(), rule: r.clone() });
    }
    let mut undo = Vec::new();
    for ip in ips {
        for rule in addr_rules(*ip, Some(comment)) {
            lines.push(IptLine::Append { chain: FORWARD_CHAIN.into(), rule: rule.clone() });
            undo.push(IptLine::Delete { chain: FORWARD_CHAIN.into(), rule });
        }
    }
    if let (Some(br), true) = (bridge, conf.ingress != IngressPolicy::Open) {
        for chain in [STAGE1_CHAIN, STAGE2_CHAIN] {
            if !table.has_chain(chain) {
                lines.push(IptLine::DeclareChain { chain: chain.into() });
            }
        }
        // Before the CNI-FORWARD jump, which may accept the packet first.
        let to_stage1 = jump(ISOLATION_COMMENT, STAGE1_CHAIN);
        if !has(table, "FORWARD", &to_stage1) {
            lines.push(IptLine::Insert { chain: "FORWARD".into(), rule: to_stage1 });
        }
        let mut first = vec![stage1_rule(br, conf.ingress)];
        if conf.ingress == IngressPolicy::Isolated {
            first.push(stage1_drop_rule(br));
        }
        for rule in first {
            if !has(table, STAGE1_CHAIN, &rule) {
                lines.push(IptLine::Insert { chain: STAGE1_CHAIN.into(), rule });
            }
        }
        if !has(table, STAGE1_CHAIN, &return_rule()) {
            lines.push(IptLine::Append { chain: STAGE1_CHAIN.into(), rule: return_rule() });
        }
        if !has(table, STAGE2_CHAIN, &stage2_rule(br)) {
            lines.push(IptLine::Insert { chain: STAGE2_CHAIN.into(), rule: stage2_rule(br) });
        }
        if !has(table, STAGE2_CHAIN, &return_rule()) {
            lines.push(IptLine::Append { chain: STAGE2_CHAIN.into(), rule: return_rule() });
        }
    }
    (
        FirewallOp::Iptables { family, table: "filter".into(), lines },
        FirewallOp::Iptables { family, table: "filter".into(), lines: undo },
    )
}

fn nft_table() -> NftTable {
    NftTable::inet(NFT_TABLE)
}

fn nft_bridge_comment(what: &str, br: &str) -> String {
    format!("{what}: {br}")
}

/// The ADD ops of the nft backend. `existing` is the table as observed.
fn nft_add_ops(
    conf: &FirewallConf,
    existing: &[NftRuleInfo],
    ips: &[IpAddr],
    comment: &str,
    prefix: &str,
    bridge: Option<&str>,
) -> Vec<NftOp> {
    let t = nft_table();
    let has = |chain: &str, c: &str| existing.iter().any(|r| r.chain == chain && r.comment == c);
    let rule = |chain: &str, rule: NftRule, c: &str| NftOp::AddRule {
        table: t.clone(),
        chain: chain.into(),
        rule,
        comment: Some(c.to_string()),
    };
    let mut ops = vec![
        NftOp::AddTable { table: t.clone() },
        NftOp::AddChain { table: t.clone(), chain: NFT_FORWARD.into(), base: Some(BaseChain::FilterForward) },
    ];
    for c in [NFT_ADMIN, NFT_CONTAINERS, NFT_STAGE1, NFT_STAGE2] {
        ops.push(NftOp::AddChain { table: t.clone(), chain: c.into(), base: None });
    }
    for (target, c) in [(NFT_STAGE1, ISOLATION_COMMENT), (NFT_ADMIN, ADMIN_COMMENT), (NFT_CONTAINERS, FORWARD_COMMENT)]
    {
        if !has(NFT_FORWARD, c) {
            ops.push(rule(NFT_FORWARD, NftRule::Jump { chain: target.into() }, c));
        }
    }
    for r in existing.iter().filter(|r| r.chain == NFT_CONTAINERS && r.comment.starts_with(prefix)) {
        ops.push(NftOp::DeleteRule { table: t.clone(), chain: r.chain.clone(), handle: r.handle });
    }
    for ip in ips {
        ops.push(rule(NFT_CONTAINERS, NftRule::AcceptEstablishedTo { daddr: *ip }, comment));
        ops.push(rule(NFT_CONTAINERS, NftRule::AcceptFrom { saddr: *ip }, comment));
    }
    if let (Some(br), true) = (bridge, conf.ingress != IngressPolicy::Open) {
        let wanted = [
            (
                NFT_STAGE1,
                NftRule::IifnameNotOifnameJump { ifname: br.into(), chain: NFT_STAGE2.into() },
                nft_bridge_comment(ISOLATION_COMMENT, br),
            ),
            (NFT_STAGE2, NftRule::OifnameDrop { ifname: br.into() }, nft_bridge_comment(ISOLATION_COMMENT, br)),
        ];
        for (chain, r, c) in wanted {
            if !has(chain, &c) {
                ops.push(rule(chain, r, &c));
            }
        }
        let c = nft_bridge_comment(&policy_comment(IngressPolicy::Isolated), br);
        if conf.ingress == IngressPolicy::Isolated && !has(NFT_STAGE1, &c) {
            ops.push(rule(NFT_STAGE1, NftRule::IifnameOifnameDrop { ifname: br.into() }, &c));
        }
    }
    ops
}

/// A listing that fails (tool missing, table absent) means there is nothing to remove.
fn lenient<T>(r: Result<Option<T>, CniError>, what: &str) -> Option<T> {
    r.unwrap_or_else(|e| {
        crate::exec::log(&format!("firewall: {what}: {e}; assuming nothing to clean"));
        None
    })
}

fn ips_of(prev: &CniResult, family: Family) -> Vec<IpAddr> {
    prev.ips.iter().map(|i| i.address.ip()).filter(|ip| Family::of(ip) == family).collect()
}

/// The bridge of `same-bridge`/`isolated`: prevResult's first interface, as the reference.
fn bridge_of(conf: &FirewallConf, prev: &CniResult) -> Result<Option<String>, CniError> {
    if conf.ingress == IngressPolicy::Open {
        return Ok(None);
    }
    let name = prev.interfaces.first().map(|i| i.name.clone()).filter(|n| !n.is_empty()).ok_or_else(|| {
        CniError::config(format!(
            "firewall: ingressPolicy {:?} needs the bridge as prevResult.interfaces[0]; chain \"firewall\" after \"bridge\"",
            conf.ingress.as_str()
        ))
    })?;
    validate::ifname(&name).map_err(|e| CniError::config(format!("firewall: bridge name: {e}")))?;
    Ok(Some(name))
}

/// Removes the attachment's rules from both backends, from what is there now; rules the
/// reference made (no comment) go too when `prev` names their addresses.
pub fn plan_teardown(
    plan: &mut Plan,
    obs: &mut dyn Observer,
    network: &str,
    container_id: &str,
    ifname: &str,
    prev: Option<&CniResult>,
) {
    let comment = ipt_comment(network, container_id, ifname);
    for family in [Family::V4, Family::V6] {
        let Some(table) = lenient(observe::iptables_table(obs, family, "filter"), "iptables") else { continue };
        let reference: Vec<IptRule> = prev
            .map(|p| ips_of(p, family))
            .unwrap_or_default()
            .into_iter()
            .flat_map(|ip| addr_rules(ip, None))
            .collect();
        let lines: Vec<IptLine> = table
            .rules_of(FORWARD_CHAIN)
            .filter(|r| r.comment.as_deref() == Some(comment.as_str()) || reference.contains(r))
            .map(|r| IptLine::Delete { chain: FORWARD_CHAIN.into(), rule: r.clone() })
            .collect();
        if !lines.is_empty() {
            plan.push(&Netns::Host, Op::Firewall(FirewallOp::Iptables { family, table: "filter".into(), lines }))
                .tolerate(Tolerate::Missing);
        }
    }
    let prefix = names::nft_instance_hash(network, ifname, container_id);
    nft_delete(plan, obs, |c| c.starts_with(&prefix));
}

fn nft_delete(plan: &mut Plan, obs: &mut dyn Observer, matches: impl Fn(&str) -> bool) {
    let Some(rules) = lenient(observe::nft_table_rules(obs, &nft_table()), "nft") else { return };
    let ops: Vec<NftOp> = rules
        .into_iter()
        .filter(|r| r.chain == NFT_CONTAINERS && matches(&r.comment))
        .map(|r| NftOp::DeleteRule { table: nft_table(), chain: r.chain, handle: r.handle })
        .collect();
    if !ops.is_empty() {
        plan.push(&Netns::Host, Op::Firewall(FirewallOp::nft(ops))).tolerate(Tolerate::Missing);
    }
}

/// GC: removes the rules of every attachment of `network` not in `valid`.
pub fn plan_gc(plan: &mut Plan, obs: &mut dyn Observer, network: &str, valid: &[crate::spec::Attachment]) {
    let prefix = format!("CNI firewall name: \"{network}\" id: ");
    let valid_comments: Vec<String> = valid.iter().map(|a| ipt_comment(network, &a.container_id, &a.ifname)).collect();
    for family in [Family::V4, Family::V6] {
        let Some(table) = lenient(observe::iptables_table(obs, family, "filter"), "iptables") else { continue };
        let lines: Vec<IptLine> = table
            .rules_of(FORWARD_CHAIN)
            .filter(|r| r.comment.as_ref().is_some_and(|c| c.starts_with(&prefix) && !valid_comments.contains(c)))
            .map(|r| IptLine::Delete { chain: FORWARD_CHAIN.into(), rule: r.clone() })
            .collect();
        if !lines.is_empty() {
            plan.push(&Netns::Host, Op::Firewall(FirewallOp::Iptables { family, table: "filter".into(), lines }))
                .tolerate(Tolerate::Missing);
        }
    }
    let net_prefix = format!("{}-", names::nft_network_hash(network));
    let valid_prefixes: Vec<String> =
        valid.iter().map(|a| names::nft_instance_hash(network, &a.ifname, &a.container_id)).collect();
    nft_delete(plan, obs, |c| c.starts_with(&net_prefix) && !valid_prefixes.iter().any(|v| c.starts_with(v)));
}

fn check_iptables(
    conf: &FirewallConf,
    table: &IptTable,
    family: Family,
    ips: &[IpAddr],
    comment: &str,
    bridge: Option<&str>,
) -> Result<(), CniError> {
    let fam = if family == Family::V4 { "iptables" } else { "ip6tables" };
    let missing = |chain: &str, rule: &IptRule| {
        CniError::check(format!("firewall: {fam} rule `-A {chain}{}` is missing", rule.spec()))
    };
    for chain in [FORWARD_CHAIN, conf.admin_chain.as_str()] {
        if !table.has_chain(chain) {
            return Err(CniError::check(format!("firewall: {fam} chain {chain} is missing")));
        }
    }
    let fwd_jump = jump(FORWARD_COMMENT, FORWARD_CHAIN);
    if !has(table, "FORWARD", &fwd_jump) {
        return Err(missing("FORWARD", &fwd_jump));
    }
    let admin_jump = jump(ADMIN_COMMENT, &conf.admin_chain);
    if !has(table, FORWARD_CHAIN, &admin_jump) {
        return Err(missing(FORWARD_CHAIN, &admin_jump));
    }
    for ip in ips {
        let ours = addr_rules(*ip, Some(comment));
        let reference = addr_rules(*ip, None);
        for (a, b) in ours.iter().zip(reference.iter()) {
            if !has(table, FORWARD_CHAIN, a) && !has(table, FORWARD_CHAIN, b) {
                return Err(missing(FORWARD_CHAIN, a));
            }
        }
    }
    if let (Some(br), true) = (bridge, conf.ingress != IngressPolicy::Open) {
        let mut wanted = vec![
            ("FORWARD", jump(ISOLATION_COMMENT, STAGE1_CHAIN)),
            (STAGE1_CHAIN, stage1_rule(br, conf.ingress)),
            (STAGE2_CHAIN, stage2_rule(br)),
        ];
        if conf.ingress == IngressPolicy::Isolated {
            wanted.push((STAGE1_CHAIN, stage1_drop_rule(br)));
        }
        for (chain, rule) in wanted {
            if !has(table, chain, &rule) {
                return Err(missing(chain, &rule));
            }
        }
    }
    Ok(())
}

fn check_nft(
    conf: &FirewallConf,
    rules: &[NftRuleInfo],
    n_ips: usize,
    prefix: &str,
    bridge: Option<&str>,
) -> Result<(), CniError> {
    let has = |chain: &str, c: &str| rules.iter().any(|r| r.chain == chain && r.comment == c);
    for c in [ISOLATION_COMMENT, ADMIN_COMMENT, FORWARD_COMMENT] {
        if !has(NFT_FORWARD, c) {
            return Err(CniError::check(format!("firewall: nft chain {NFT_FORWARD} lacks the rule {c:?}")));
        }
    }
    let found = rules.iter().filter(|r| r.chain == NFT_CONTAINERS && r.comment.starts_with(prefix)).count();
    if found < 2 * n_ips {
        return Err(CniError::check(format!(
            "firewall: nft chain {NFT_CONTAINERS} has {found} of {} rules for this attachment",
            2 * n_ips
        )));
    }
    if let (Some(br), true) = (bridge, conf.ingress != IngressPolicy::Open) {
        let c = nft_bridge_comment(ISOLATION_COMMENT, br);
        if !has(NFT_STAGE1, &c) || !has(NFT_STAGE2, &c) {
            return Err(CniError::check(format!("firewall: nft isolation rules for bridge {br} are missing")));
        }
    }
    Ok(())
}

fn prev_result(cx: &Cx) -> Result<CniResult, CniError> {
    cx.conf.prev_result.clone().ok_or_else(|| {
        CniError::config("firewall: missing prevResult from an earlier plugin (chain \"firewall\" after one)")
    })
}

impl Plugin for Firewall {
    fn name(&self) -> &'static str {
        "firewall"
    }
    fn about(&self) -> &'static str {
        "CNI firewall plugin (ipcni)"
    }
    fn versions(&self) -> &'static [Version] {
        &VERSIONS
    }

    fn add(&self, cx: &mut Cx) -> Result<CniResult, CniError> {
        let conf = FirewallConf::from_cx(cx)?;
        let prev = prev_result(cx)?;
        let network = cx.conf.require_name()?.to_string();
        let (id, ifname) = (cx.env.container_id.clone(), cx.env.ifname.clone());
        let bridge = bridge_of(&conf, &prev)?;
        let _lock = cx.lock("firewall")?;
        let mut plan = Plan::new();
        match conf.backend {
            Backend::Iptables => {
                let comment = ipt_comment(&network, &id, &ifname);
                for family in [Family::V4, Family::V6] {
                    let ips = ips_of(&prev, family);
                    if ips.is_empty() {
                        continue;
                    }
                    let table = observe::iptables_table(cx.obs, family, "filter")?.ok_or_else(|| {
                        CniError::new(
                            code::COMMAND_FAILED,
                            format!("firewall: the {} filter table is not usable", family.iptables()),
                        )
                    })?;
                    let (op, undo) = iptables_add(&conf, &table, family, &ips, &comment, bridge.as_deref());
                    plan.push(&Netns::Host, Op::Firewall(op)).undo(Op::Firewall(undo));
                }
            }
            Backend::Nftables => {
                let ips: Vec<IpAddr> = prev.ips.iter().map(|i| i.address.ip()).collect();
                if !ips.is_empty() {
                    let existing = observe::nft_table_rules(cx.obs, &nft_table())?.unwrap_or_default();
                    let comment = names::nft_instance_comment(&network, &ifname, &id);
                    let prefix = names::nft_instance_hash(&network, &ifname, &id);
                    let ops = nft_add_ops(&conf, &existing, &ips, &comment, &prefix, bridge.as_deref());
                    let undo =
                        vec![NftOp::DeleteRulesByComment { table: nft_table(), chain: NFT_CONTAINERS.into(), prefix }];
                    plan.push(&Netns::Host, Op::Firewall(FirewallOp::nft(ops)))
                        .undo(Op::Firewall(FirewallOp::nft(undo)));
                }
            }
        }
        apply(cx.exec, &plan)?;
        Ok(prev)
    }

    fn del(&self, cx: &mut Cx) -> Result<(), CniError> {
        // Only the network name is needed: the rules are found by their comments.
        let network = cx.conf.require_name()?.to_string();
        let _lock = cx.lock("firewall")?;
        let mut plan = Plan::new();
        let prev = cx.conf.prev_result.clone();
        plan_teardown(&mut plan, cx.obs, &network, &cx.env.container_id, &cx.env.ifname, prev.as_ref());
        apply(cx.exec, &plan)
    }

    fn check(&self, cx: &mut Cx) -> Result<(), CniError> {
        let conf = FirewallConf::from_cx(cx)?;
        let prev = prev_result(cx)?;
        let network = cx.conf.require_name()?.to_string();
        let (id, ifname) = (cx.env.container_id.clone(), cx.env.ifname.clone());
        let bridge = bridge_of(&conf, &prev)?;
        match conf.backend {
            Backend::Iptables => {
                let comment = ipt_comment(&network, &id, &ifname);
                for family in [Family::V4, Family::V6] {
                    let ips = ips_of(&prev, family);
                    if ips.is_empty() {
                        continue;
                    }
                    let table = observe::iptables_table(cx.obs, family, "filter")?.ok_or_else(|| {
                        CniError::check(format!("firewall: the {} filter table is missing", family.iptables()))
                    })?;
                    check_iptables(&conf, &table, family, &ips, &comment, bridge.as_deref())?;
                }
            }
            Backend::Nftables => {
                if !prev.ips.is_empty() {
                    let rules = observe::nft_table_rules(cx.obs, &nft_table())?
                        .ok_or_else(|| CniError::check(format!("firewall: nft table {} is missing", nft_table())))?;
                    let prefix = names::nft_instance_hash(&network, &ifname, &id);
                    check_nft(&conf, &rules, prev.ips.len(), &prefix, bridge.as_deref())?;
                }
            }
        }
        Ok(())
    }

    fn status(&self, cx: &mut Cx) -> Result<(), CniError> {
        let conf = FirewallConf::from_cx(cx)?;
        if !observe::backend_usable(cx.obs, conf.backend == Backend::Nftables) {
            return Err(CniError::new(
                code::PLUGIN_NOT_AVAILABLE,
                format!(
                    "firewall: the {} backend is not usable",
                    if conf.backend == Backend::Nftables { "nftables" } else { "iptables" }
                ),
            ));
        }
        Ok(())
    }

    fn gc(&self, cx: &mut Cx) -> Result<(), CniError> {
        let network = cx.conf.require_name()?.to_string();
        let Some(valid) = cx.conf.valid_attachments.clone() else { return Ok(()) };
        let _lock = cx.lock("firewall")?;
        let mut plan = Plan::new();
        plan_gc(&mut plan, cx.obs, &network, &valid);
        apply(cx.exec, &plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_rules_render_as_iptables_prints_them() {
        let [a, b] = addr_rules("10.88.0.2".parse().unwrap(), None);
        assert_eq!(a.spec(), " -d 10.88.0.2/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT");
        assert_eq!(b.spec(), " -s 10.88.0.2/32 -j ACCEPT");
        assert_eq!(
            stage1_rule("cni0", IngressPolicy::SameBridge).spec(),
            " -i cni0 ! -o cni0 -m comment --comment \"CNI firewall plugin rules (ingressPolicy: same-bridge)\" -j CNI-ISOLATION-STAGE-2"
        );
    }

    #[test]
    fn firewall_speaks_040_and_later_only() {
        assert_eq!(Firewall.versions(), &[Version::V040, Version::V100, Version::V110]);
    }
}
