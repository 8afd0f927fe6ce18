//! IP masquerade for bridge and ptp (`ipMasq`), with the reference's chain names and
//! comments so either implementation removes the other's rules. Both backends are
//! cleaned on DEL, and cleaning needs no container addresses: the iptables chain is
//! keyed by (network, container id) and nft rules by a comment hash, so masquerading
//! is removed even when the netns is already gone (the reference leaks it, plugins#810).

use ipnetwork::IpNetwork;

use crate::exec::observe::{self, Observer};
use crate::names;
use crate::plan::firewall::{BaseChain, Family, FirewallOp, IptLine, IptRule, IptTarget, NftOp, NftRule, NftTable};
use crate::plan::{Netns, Op, Plan, Tolerate};
use crate::spec::{Attachment, CniError, code};

pub const NFT_TABLE_NAME: &str = "cni_plugins_masquerade";
pub const NFT_CHAIN: &str = "masq_checks";
const NFT_POSTROUTING: &str = "postrouting";

fn nft_table() -> NftTable {
    NftTable::inet(NFT_TABLE_NAME)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Iptables,
    Nftables,
}

/// `ipMasqBackend`: explicit, or the reference's rule: iptables unless it is unusable
/// and nftables is usable.
pub fn choose_backend(configured: Option<&str>, obs: &mut dyn Observer) -> Result<Backend, CniError> {
    match configured {
        Some("iptables") => Ok(Backend::Iptables),
        Some("nftables") => Ok(Backend::Nftables),
        Some(other) => Err(CniError::config(format!(
            "config: \"ipMasqBackend\" must be \"iptables\" or \"nftables\", not {other:?}"
        ))),
        None => {
            if !observe::backend_usable(obs, false) && observe::backend_usable(obs, true) {
                Ok(Backend::Nftables)
            } else {
                Ok(Backend::Iptables)
            }
        }
    }
}

fn ipt_comment(network: &str, container_id: &str) -> String {
    format!("name: \"{network}\" id: \"{container_id}\"")
}

fn iptables_setup(family: Family, chain: &str, comment: &str, addrs: &[IpNetwork]) -> FirewallOp {
    let mut lines = vec![IptLine::DeclareChain { chain: chain.to_string() }];
    for a in addrs {
        lines.push(IptLine::Append {
            chain: chain.to_string(),
            rule: IptRule {
                src: None,
                dst: Some(*a),
                dst_negated: false,
                comment: Some(comment.to_string()),
                target: IptTarget::Accept,
                ..IptRule::default()
            },
        });
    }
    lines.push(IptLine::Append {
        chain: chain.to_string(),
        rule: IptRule {
            src: None,
            dst: Some(family.multicast()),
            dst_negated: true,
            comment: Some(comment.to_string()),
            target: IptTarget::Masquerade,
            ..IptRule::default()
        },
    });
    for a in addrs {
        let host = IpNetwork::new(a.ip(), if a.is_ipv4() { 32 } else { 128 }).expect("host prefix");
        lines.push(IptLine::Append {
            chain: "POSTROUTING".into(),
            rule: IptRule {
                src: Some(host),
                dst: None,
                dst_negated: false,
                comment: Some(comment.to_string()),
                target: IptTarget::Jump(chain.to_string()),
                ..IptRule::default()
            },
        });
    }
    FirewallOp::Iptables { family, table: "nat".into(), lines }
}

fn iptables_teardown(family: Family, chain: &str, jumps: Vec<IptRule>) -> FirewallOp {
    let mut lines: Vec<IptLine> =
        jumps.into_iter().map(|rule| IptLine::Delete { chain: "POSTROUTING".into(), rule }).collect();
    lines.push(IptLine::Flush { chain: chain.to_string() });
    lines.push(IptLine::DeleteChain { chain: chain.to_string() });
    FirewallOp::Iptables { family, table: "nat".into(), lines }
}

/// Adds masquerading for `addrs` (container addresses with their prefixes).
pub fn plan_setup(
    plan: &mut Plan,
    backend: Backend,
    network: &str,
    container_id: &str,
    ifname: &str,
    addrs: &[IpNetwork],
) {
    match backend {
        Backend::Iptables => {
            let chain = names::masq_chain(network, container_id);
            let comment = ipt_comment(network, container_id);
            for family in [Family::V4, Family::V6] {
                let fam: Vec<IpNetwork> = addrs.iter().copied().filter(|a| Family::of(&a.ip()) == family).collect();
                if fam.is_empty() {
                    continue;
                }
                let jumps = fam
                    .iter()
                    .map(|a| IptRule {
                        src: Some(IpNetwork::new(a.ip(), if a.is_ipv4() { 32 } else { 128 }).expect("host")),
                        dst: None,
                        dst_negated: false,
                        comment: Some(comment.clone()),
                        target: IptTarget::Jump(chain.clone()),
                        ..IptRule::default()
                    })
                    .collect();
                plan.push(&Netns::Host, Op::Firewall(iptables_setup(family, &chain, &comment, &fam)))
                    .undo(Op::Firewall(iptables_teardown(family, &chain, jumps)));
            }
        }
        Backend::Nftables => {
            let t = nft_table();
            let mut setup = vec![
                NftOp::AddTable { table: t.clone() },
                NftOp::AddChain { table: t.clone(), chain: NFT_CHAIN.into(), base: None },
                NftOp::AddChain {
                    table: t.clone(),
                    chain: NFT_POSTROUTING.into(),
                    base: Some(BaseChain::NatPostrouting),
                },
                NftOp::FlushChain { table: t.clone(), chain: NFT_POSTROUTING.into() },
            ];
            for fam in [Family::V4, Family::V6] {
                setup.push(NftOp::AddRule {
                    table: t.clone(),
                    chain: NFT_POSTROUTING.into(),
                    rule: NftRule::DaddrReturn { daddr: fam.multicast() },
                    comment: None,
                });
            }
            setup.push(NftOp::AddRule {
                table: t.clone(),
                chain: NFT_POSTROUTING.into(),
                rule: NftRule::Goto { chain: NFT_CHAIN.into() },
                comment: None,
            });
            let comment = names::nft_instance_comment(network, ifname, container_id);
            let ops = addrs
                .iter()
                .map(|a| NftOp::AddRule {
                    table: t.clone(),
                    chain: NFT_CHAIN.into(),
                    rule: NftRule::Masquerade { saddr: a.ip(), daddr_not: *a },
                    comment: Some(comment.clone()),
                })
                .collect();
            let add = FirewallOp::Nft { ops, setup };
            plan.push(&Netns::Host, Op::Firewall(add)).undo(Op::Firewall(FirewallOp::nft(vec![
                NftOp::DeleteRulesByComment {
                    table: t,
                    chain: NFT_CHAIN.into(),
                    prefix: names::nft_instance_hash(network, ifname, container_id),
                },
            ])));
        }
    }
}

/// A listing that fails (tool missing, table absent) means there is nothing to remove.
fn lenient<T>(r: Result<Option<T>, CniError>, what: &str) -> Option<T> {
    r.unwrap_or_else(|e| {
        crate::exec::log(&format!("{what}: {e}; assuming nothing to clean"));
        None
    })
}

/// Removes the attachment's masquerading from both backends, from what is there now.
pub fn plan_teardown(plan: &mut Plan, obs: &mut dyn Observer, network: &str, container_id: &str, ifname: &str) {
    let chain = names::masq_chain(network, container_id);
    for family in [Family::V4, Family::V6] {
        let Some(table) = lenient(observe::iptables_table(obs, family, "nat"), "iptables") else { continue };
        let jumps: Vec<IptRule> =
            table.rules_of("POSTROUTING").filter(|r| r.target == IptTarget::Jump(chain.clone())).cloned().collect();
        let chain_exists = table.has_chain(&chain);
        if jumps.is_empty() && !chain_exists {
            continue;
        }
        let mut op = iptables_teardown(family, &chain, jumps);
        if !chain_exists && let FirewallOp::Iptables { lines, .. } = &mut op {
            lines.retain(|l| matches!(l, IptLine::Delete { .. }));
        }
        plan.push(&Netns::Host, Op::Firewall(op)).tolerate(Tolerate::Missing);
    }
    nft_delete_matching(plan, obs, &names::nft_instance_hash(network, ifname, container_id), |_| true);
}

fn nft_delete_matching(plan: &mut Plan, obs: &mut dyn Observer, prefix: &str, keep: impl Fn(&str) -> bool) {
    let Some(rules) = lenient(observe::nft_table_rules(obs, &nft_table()), "nft") else { return };
    let ops: Vec<NftOp> = rules
        .into_iter()
        .filter(|r| r.chain == NFT_CHAIN && r.comment.starts_with(prefix) && keep(&r.comment))
        .map(|r| NftOp::DeleteRule { table: nft_table(), chain: NFT_CHAIN.into(), handle: r.handle })
        .collect();
    if !ops.is_empty() {
        plan.push(&Netns::Host, Op::Firewall(FirewallOp::nft(ops))).tolerate(Tolerate::Missing);
    }
}

/// GC: removes masquerading of every attachment of `network` not in `valid`.
pub fn plan_gc(plan: &mut Plan, obs: &mut dyn Observer, network: &str, valid: &[Attachment]) {
    let valid_chains: Vec<String> = valid.iter().map(|a| names::masq_chain(network, &a.container_id)).collect();
    let net_comment_prefix = format!("name: \"{network}\" id: ");
    for family in [Family::V4, Family::V6] {
        let Some(table) = lenient(observe::iptables_table(obs, family, "nat"), "iptables") else { continue };
        let mut stale: Vec<(String, Vec<IptRule>)> = Vec::new();
        for r in table.rules_of("POSTROUTING") {
            let (IptTarget::Jump(chain), Some(c)) = (&r.target, &r.comment) else { continue };
            if !c.starts_with(&net_comment_prefix) || valid_chains.contains(chain) {
                continue;
            }
            match stale.iter_mut().find(|(ch, _)| ch == chain) {
                Some((_, v)) => v.push(r.clone()),
                None => stale.push((chain.clone(), vec![r.clone()])),
            }
        }
        for (chain, jumps) in stale {
            plan.push(&Netns::Host, Op::Firewall(iptables_teardown(family, &chain, jumps))).tolerate(Tolerate::Missing);
        }
    }
    let valid_comments: Vec<String> =
        valid.iter().map(|a| names::nft_instance_comment(network, &a.ifname, &a.container_id)).collect();
    nft_delete_matching(plan, obs, &names::nft_network_hash(network), |c| !valid_comments.iter().any(|v| v == c));
}

/// CHECK: the attachment's masquerading is in place in the chosen backend.
pub fn check(
    obs: &mut dyn Observer,
    backend: Backend,
    network: &str,
    container_id: &str,
    ifname: &str,
) -> Result<(), CniError> {
    match backend {
        Backend::Iptables => {
            let chain = names::masq_chain(network, container_id);
            let has = |t: Option<observe::IptTable>| {
                t.is_some_and(|t| {
                    t.has_chain(&chain) && t.rules_of("POSTROUTING").any(|r| r.target == IptTarget::Jump(chain.clone()))
                })
            };
            let v4 = has(observe::iptables_table(obs, Family::V4, "nat")?);
            if !v4 && !has(observe::iptables_table(obs, Family::V6, "nat").unwrap_or(None)) {
                return Err(CniError::new(code::CHECK_MISMATCH, format!("ipMasq: iptables chain {chain} is missing")));
            }
        }
        Backend::Nftables => {
            let prefix = names::nft_instance_hash(network, ifname, container_id);
            let rules = observe::nft_table_rules(obs, &nft_table())?.unwrap_or_default();
            if !rules.iter().any(|r| r.comment.starts_with(&prefix)) {
                return Err(CniError::new(
                    code::CHECK_MISMATCH,
                    format!("ipMasq: no nft rule in {} for {prefix}", nft_table()),
                ));
            }
        }
    }
    Ok(())
}
