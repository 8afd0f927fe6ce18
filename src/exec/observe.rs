//! Reading kernel state: `ip -j` JSON (never text scraping), `iptables -S` rule specs and
//! `nft -j` JSON. An [`Observer`] answers queries by argv, so tests can replay recorded
//! outputs of the same commands (a fixture) and the parsing below is always exercised.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::real::run_process;
use super::{FailureKind, ProcessError};
use crate::plan::firewall::{Family, IptRule, IptTarget, NftFamily, NftTable};
use crate::plan::{Netns, shell_quote};
use crate::spec::{CniError, code};

/// A read-only query, rendered to the argv that answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub ns: Netns,
    pub argv: Vec<String>,
}

impl Query {
    fn new(ns: &Netns, args: &[&str]) -> Query {
        Query { ns: ns.clone(), argv: args.iter().map(|s| s.to_string()).collect() }
    }

    /// The full command line; also the key under which a fixture stores the answer.
    pub fn key(&self) -> String {
        let mut v = Vec::new();
        if let Netns::Container(p) = &self.ns {
            v.push("nsenter".to_string());
            v.push(format!("--net={}", p.display()));
        }
        v.extend(self.argv.iter().cloned());
        v.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ")
    }
}

pub trait Observer {
    /// Runs the query. Ok(None) means the object is absent (the tool said so).
    fn query(&mut self, q: &Query) -> Result<Option<String>, CniError>;
}

#[derive(Debug, Default)]
pub struct RealObserver {
    pub processes: usize,
}

impl Observer for RealObserver {
    fn query(&mut self, q: &Query) -> Result<Option<String>, CniError> {
        let mut argv = Vec::new();
        if let Netns::Container(p) = &q.ns {
            argv.push("nsenter".to_string());
            argv.push(format!("--net={}", p.display()));
        }
        argv.extend(q.argv.iter().cloned());
        self.processes += 1;
        match run_process(&argv, None) {
            Ok(out) => Ok(Some(out)),
            Err(e) if FailureKind::classify(&e.stderr) == FailureKind::Missing => Ok(None),
            Err(e) => Err(observe_error(e)),
        }
    }
}

fn observe_error(e: ProcessError) -> CniError {
    CniError::new(code::COMMAND_FAILED, e.to_string())
}

/// Answers from recorded outputs keyed by command line; an unknown query is an error so
/// a golden case names every command its plan depended on.
#[derive(Debug, Default, Clone)]
pub struct FixtureObserver {
    pub answers: BTreeMap<String, Option<String>>,
    pub asked: Vec<String>,
}

impl FixtureObserver {
    /// `{"<command line>": <JSON output or null for absent>, …}`; string values are
    /// taken as raw text output (iptables -S).
    pub fn from_json(v: &serde_json::Value) -> Result<FixtureObserver, String> {
        let obj = v.as_object().ok_or("observed state must be a JSON object")?;
        let answers = obj
            .iter()
            .map(|(k, v)| {
                let out = match v {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                };
                (k.clone(), out)
            })
            .collect();
        Ok(FixtureObserver { answers, asked: Vec::new() })
    }
}

impl Observer for FixtureObserver {
    fn query(&mut self, q: &Query) -> Result<Option<String>, CniError> {
        let key = q.key();
        self.asked.push(key.clone());
        self.answers.get(&key).cloned().ok_or_else(|| CniError::internal(format!("fixture has no answer for `{key}`")))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AddrInfo {
    pub family: String,
    pub local: String,
    pub prefixlen: u8,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub tentative: bool,
    #[serde(default)]
    pub dadfailed: bool,
}

impl AddrInfo {
    pub fn network(&self) -> Option<ipnetwork::IpNetwork> {
        ipnetwork::IpNetwork::new(self.local.parse().ok()?, self.prefixlen).ok()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct LinkKind {
    #[serde(default)]
    pub info_kind: String,
    #[serde(default)]
    pub info_slave_kind: String,
    #[serde(default)]
    pub info_data: serde_json::Value,
    #[serde(default)]
    pub info_slave_data: serde_json::Value,
}

/// One link of `ip -j -d addr show`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Link {
    pub ifindex: u32,
    pub ifname: String,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub mtu: u32,
    #[serde(default)]
    pub operstate: String,
    #[serde(default)]
    pub master: Option<String>,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub link_index: Option<u32>,
    #[serde(default)]
    pub promiscuity: u32,
    #[serde(default)]
    pub linkinfo: Option<LinkKind>,
    #[serde(default)]
    pub addr_info: Vec<AddrInfo>,
}

impl Link {
    pub fn kind(&self) -> &str {
        self.linkinfo.as_ref().map_or("", |k| k.info_kind.as_str())
    }
    pub fn is_up(&self) -> bool {
        self.flags.iter().any(|f| f == "UP")
    }
    pub fn bridge_port_flag(&self, key: &str) -> Option<bool> {
        self.linkinfo.as_ref()?.info_slave_data.get(key)?.as_bool()
    }
}

fn parse_links(out: &str, what: &str) -> Result<Vec<Link>, CniError> {
    serde_json::from_str(out)
        .map_err(|e| CniError::new(code::COMMAND_FAILED, format!("{what}: unexpected `ip -j` output: {e}")))
}

/// `ip -j -d addr show dev DEV`: the link with its addresses, or None if absent.
pub fn link_addrs(obs: &mut dyn Observer, ns: &Netns, dev: &str) -> Result<Option<Link>, CniError> {
    let q = Query::new(ns, &["ip", "-j", "-d", "addr", "show", "dev", dev]);
    let Some(out) = obs.query(&q)? else { return Ok(None) };
    Ok(parse_links(&out, &q.key())?.into_iter().next())
}

/// `ip -j -d link show master BR`: the ports of a bridge.
pub fn bridge_ports(obs: &mut dyn Observer, ns: &Netns, bridge: &str) -> Result<Vec<Link>, CniError> {
    let q = Query::new(ns, &["ip", "-j", "-d", "link", "show", "master", bridge]);
    let Some(out) = obs.query(&q)? else { return Ok(Vec::new()) };
    parse_links(&out, &q.key())
}

/// `ip -j route show dev DEV` in one family, as (dst, gateway) pairs.
pub fn routes(
    obs: &mut dyn Observer,
    ns: &Netns,
    dev: &str,
    v6: bool,
) -> Result<Vec<(String, Option<String>)>, CniError> {
    #[derive(Deserialize)]
    struct R {
        dst: String,
        #[serde(default)]
        gateway: Option<String>,
    }
    let fam = if v6 { "-6" } else { "-4" };
    let q = Query::new(ns, &["ip", "-j", fam, "route", "show", "dev", dev]);
    let Some(out) = obs.query(&q)? else { return Ok(Vec::new()) };
    let rs: Vec<R> =
        serde_json::from_str(&out).map_err(|e| CniError::new(code::COMMAND_FAILED, format!("{}: {e}", q.key())))?;
    Ok(rs.into_iter().map(|r| (r.dst, r.gateway)).collect())
}

/// A link's operstate. On the host side sysfs answers without a process (the wait polls
/// it), but only when the mounted /sys belongs to this network namespace (a caller that
/// entered the netns without remounting /sys sees another one), so a missing entry falls
/// back to `ip -j`.
pub fn operstate(ns: &Netns, dev: &str) -> Result<String, CniError> {
    if *ns == Netns::Host
        && let Ok(s) = std::fs::read_to_string(format!("/sys/class/net/{dev}/operstate"))
    {
        return Ok(s.trim().to_string());
    }
    let link =
        link_addrs(&mut RealObserver::default(), ns, dev)?.ok_or_else(|| CniError::io(format!("{dev} is gone")))?;
    Ok(link.operstate.to_lowercase())
}

/// One table of `iptables -S`: its user chains and its rules, parsed into the rules
/// ipcni writes. A rule with options ipcni never writes is a None entry, so callers
/// never delete a rule they did not understand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IptTable {
    pub chains: Vec<String>,
    pub rules: Vec<(String, Option<IptRule>)>,
}

impl IptTable {
    pub fn has_chain(&self, chain: &str) -> bool {
        self.chains.iter().any(|c| c == chain)
    }
    pub fn rules_of<'a>(&'a self, chain: &'a str) -> impl Iterator<Item = &'a IptRule> + 'a {
        self.rules.iter().filter(move |(c, _)| c == chain).filter_map(|(_, r)| r.as_ref())
    }
}

/// `iptables -w -t TABLE -S` (one process for the whole table).
pub fn iptables_table(obs: &mut dyn Observer, family: Family, table: &str) -> Result<Option<IptTable>, CniError> {
    let prog = if family == Family::V4 { "iptables" } else { "ip6tables" };
    let q = Query::new(&Netns::Host, &[prog, "-w", "-t", table, "-S"]);
    let Some(out) = obs.query(&q)? else { return Ok(None) };
    let mut t = IptTable::default();
    for line in out.lines() {
        if let Some(chain) = line.strip_prefix("-N ") {
            t.chains.push(chain.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("-A ") {
            let (chain, spec) = rest.split_once(' ').unwrap_or((rest, ""));
            t.rules.push((chain.to_string(), parse_ipt_rule(spec)));
        }
    }
    Ok(Some(t))
}

/// Splits an `iptables -S` line into words, honouring its double quotes and escapes.
fn ipt_words(s: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let Some(&c) = chars.peek() else { break };
        let mut w = String::new();
        if c == '"' {
            chars.next();
            loop {
                match chars.next()? {
                    '\\' => w.push(chars.next()?),
                    '"' => break,
                    ch => w.push(ch),
                }
            }
        } else {
            while let Some(&ch) = chars.peek() {
                if ch == ' ' {
                    break;
                }
                w.push(ch);
                chars.next();
            }
        }
        words.push(w);
    }
    Some(words)
}

pub fn parse_ipt_rule(spec: &str) -> Option<IptRule> {
    let words = ipt_words(spec)?;
    let mut rule = IptRule { src: None, dst: None, dst_negated: false, comment: None, target: IptTarget::Accept };
    let mut target = None;
    let mut i = 0;
    let mut negate = false;
    while i < words.len() {
        match words[i].as_str() {
            "!" => {
                negate = true;
                i += 1;
                continue;
            }
            "-s" if !negate => rule.src = Some(words.get(i + 1)?.parse().ok()?),
            "-d" => {
                rule.dst = Some(words.get(i + 1)?.parse().ok()?);
                rule.dst_negated = negate;
            }
            "-m" if words.get(i + 1)? == "comment" => {}
            "--comment" => rule.comment = Some(words.get(i + 1)?.clone()),
            "-j" => {
                target = Some(match words.get(i + 1)?.as_str() {
                    "ACCEPT" => IptTarget::Accept,
                    "RETURN" => IptTarget::Return,
                    "MASQUERADE" => IptTarget::Masquerade,
                    c => IptTarget::Jump(c.to_string()),
                })
            }
            _ => return None,
        }
        negate = false;
        i += 2;
    }
    rule.target = target?;
    Some(rule)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftRuleInfo {
    pub chain: String,
    pub handle: u64,
    pub comment: String,
}

/// `nft -j list table FAMILY T`: the rules with their handles and comments.
pub fn nft_table_rules(obs: &mut dyn Observer, table: &NftTable) -> Result<Option<Vec<NftRuleInfo>>, CniError> {
    let fam = match table.family {
        NftFamily::Inet => "inet",
        NftFamily::Bridge => "bridge",
    };
    let q = Query::new(&Netns::Host, &["nft", "-j", "list", "table", fam, &table.name]);
    let Some(out) = obs.query(&q)? else { return Ok(None) };
    let v: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| CniError::new(code::COMMAND_FAILED, format!("{}: {e}", q.key())))?;
    let items = v.get("nftables").and_then(|n| n.as_array()).cloned().unwrap_or_default();
    Ok(Some(
        items
            .iter()
            .filter_map(|i| i.get("rule"))
            .filter_map(|r| {
                Some(NftRuleInfo {
                    chain: r.get("chain")?.as_str()?.to_string(),
                    handle: r.get("handle")?.as_u64()?,
                    comment: r.get("comment").and_then(|c| c.as_str()).unwrap_or("").to_string(),
                })
            })
            .collect(),
    ))
}

/// Whether a backend answers at all: `iptables -w -t filter -S INPUT` / `nft list tables`.
pub fn backend_usable(obs: &mut dyn Observer, nft: bool) -> bool {
    let q = if nft {
        Query::new(&Netns::Host, &["nft", "list", "tables"])
    } else {
        Query::new(&Netns::Host, &["iptables", "-w", "-t", "filter", "-S", "INPUT"])
    };
    matches!(obs.query(&q), Ok(Some(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iptables_spec_round_trips_through_parse() {
        let line = r#"-s 10.1.0.5/32 -m comment --comment "name: \"net\" id: \"c1\"" -j CNI-abc"#;
        let r = parse_ipt_rule(line).unwrap();
        assert_eq!(r.comment.as_deref(), Some(r#"name: "net" id: "c1""#));
        assert_eq!(r.target, IptTarget::Jump("CNI-abc".into()));
        assert_eq!(r.spec().trim(), line);
        let neg = parse_ipt_rule(r#"! -d 224.0.0.0/4 -j MASQUERADE"#).unwrap();
        assert!(neg.dst_negated);
        assert!(parse_ipt_rule("-p tcp --dport 80 -j ACCEPT").is_none());
    }

    #[test]
    fn fixture_answers_by_command_line_and_refuses_unknown_queries() {
        let mut f = FixtureObserver::from_json(&serde_json::json!({
            "ip -j -d addr show dev cni0": null,
            "nsenter --net=/run/netns/c ip -j -d addr show dev eth0": [{"ifindex": 3, "ifname": "eth0"}]
        }))
        .unwrap();
        assert_eq!(link_addrs(&mut f, &Netns::Host, "cni0").unwrap(), None);
        let l = link_addrs(&mut f, &Netns::Container("/run/netns/c".into()), "eth0").unwrap().unwrap();
        assert_eq!(l.ifindex, 3);
        assert!(link_addrs(&mut f, &Netns::Host, "other").is_err());
    }
}
