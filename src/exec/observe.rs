//! Reading kernel state: `ip -j` JSON (never text scraping), `iptables -S` rule specs and
//! `nft -j` JSON. An [`Observer`] answers queries by argv, so tests can replay recorded
//! outputs of the same commands (a fixture) and the parsing below is always exercised.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::real::run_process;
use super::{FailureKind, ProcessError};
use crate::plan::firewall::{
    AddrType, CtState, Family, IfaceMatch, IptRule, IptTarget, L4Proto, Mark, NftTable, PortRange,
};
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

    /// A hint that `ip` queries or steps in `ns` will come: the real observer starts that
    /// namespace's `ip` session now, so its start-up overlaps the plugin's own work
    /// (IPAM, planning) instead of preceding the first query.
    fn warm(&mut self, _ns: &Netns) {}

    /// A host file's contents (sysfs, ipcni's own state); Ok(None) when it does not
    /// exist. By default asked as `cat PATH`, so a fixture answers it like a command;
    /// the real observer reads it in-process.
    fn read_file(&mut self, path: &std::path::Path) -> Result<Option<String>, CniError> {
        self.query(&Query::new(&Netns::Host, &["cat", &path.display().to_string()]))
    }

    /// A host directory's entry names in byte order; Ok(None) when it does not exist.
    /// By default asked as `ls -1 PATH`.
    fn list_dir(&mut self, path: &std::path::Path) -> Result<Option<Vec<String>>, CniError> {
        let out = self.query(&Query::new(&Netns::Host, &["ls", "-1", &path.display().to_string()]))?;
        Ok(out.map(|o| o.lines().filter(|l| !l.is_empty()).map(str::to_string).collect()))
    }

    /// A symlink's target as stored; Ok(None) when there is no such link. By default
    /// asked as `readlink PATH`.
    fn read_link(&mut self, path: &std::path::Path) -> Result<Option<String>, CniError> {
        let out = self.query(&Query::new(&Netns::Host, &["readlink", &path.display().to_string()]))?;
        Ok(out.map(|o| o.trim_end_matches('\n').to_string()))
    }

    /// A sysctl's current value in `ns`, `path` being its components under /proc/sys
    /// (so interface names with dots stay whole); Ok(None) when it does not exist. By
    /// default asked as `cat /proc/sys/…` in `ns`; the real observer reads it in-process.
    fn read_sysctl(&mut self, ns: &Netns, path: &[String]) -> Result<Option<String>, CniError> {
        self.query(&Query::new(ns, &["cat", &sysctl_path(path).display().to_string()]))
    }
}

fn sysctl_path(path: &[String]) -> std::path::PathBuf {
    let mut p = std::path::PathBuf::from("/proc/sys");
    p.extend(path);
    p
}

/// Reads a file of /proc/sys/net as `ns` sees it: container side from a short-lived
/// thread that joined the namespace (setns(CLONE_NEWNET) is per thread, and /proc/sys/net
/// shows the namespace of the thread that opens it).
fn read_in_netns(ns: &Netns, path: &std::path::Path) -> Result<Option<String>, CniError> {
    let read = || absent_or(std::fs::read_to_string(path), path);
    match ns {
        Netns::Host => read(),
        Netns::Container(nspath) => std::thread::scope(|s| {
            s.spawn(|| {
                use std::os::fd::AsRawFd;
                let f = std::fs::File::open(nspath).map_err(|e| CniError::io(format!("{}: {e}", nspath.display())))?;
                // SAFETY: setns on a valid fd; only this thread changes namespace and it
                // ends right after the read.
                if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    let e = std::io::Error::last_os_error();
                    return Err(CniError::io(format!("setns {}: {e}", nspath.display())));
                }
                read()
            })
            .join()
            .unwrap_or_else(|_| Err(CniError::internal("sysctl reader thread panicked")))
        }),
    }
}

/// An io::Error of an in-process read: "not found" is absence, anything else fails.
fn absent_or<T>(r: std::io::Result<T>, path: &std::path::Path) -> Result<Option<T>, CniError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => Ok(None),
        Err(e) => Err(CniError::io(format!("{}: {e}", path.display()))),
    }
}

#[derive(Debug, Default)]
pub struct RealObserver {
    pub processes: usize,
}

/// The batch line that answers `argv` in an ip session: only `ip -j -d …` queries whose
/// arguments are plain words (a batch line is split on whitespace).
fn session_line(argv: &[String]) -> Option<String> {
    let rest = argv.strip_prefix(&["ip".to_string(), "-j".to_string(), "-d".to_string()])?;
    let plain = |a: &String| {
        !a.is_empty()
            && !a.starts_with('-')
            && a.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\'' && b != b'\\' && b != b'#')
    };
    let line = rest.join(" ");
    (super::session::enabled() && rest.iter().all(plain) && super::session::serves(&line)).then_some(line)
}

impl Observer for RealObserver {
    fn warm(&mut self, ns: &Netns) {
        if super::session::enabled() {
            super::session::prestart(ns);
        }
    }

    fn query(&mut self, q: &Query) -> Result<Option<String>, CniError> {
        let mut argv = Vec::new();
        if let Netns::Container(p) = &q.ns {
            argv.push("nsenter".to_string());
            argv.push(format!("--net={}", p.display()));
        }
        argv.extend(q.argv.iter().cloned());
        if let Some(line) = session_line(&q.argv) {
            return match super::session::query(&q.ns, &line) {
                Ok(out) => Ok(Some(out)),
                Err(e) if FailureKind::classify(&e.stderr) == FailureKind::Missing => Ok(None),
                Err(e) => Err(observe_error(ProcessError { cmdline: q.key(), ..e })),
            };
        }
        self.processes += 1;
        match run_process(&argv, None) {
            Ok(out) => Ok(Some(out)),
            Err(e) if FailureKind::classify(&e.stderr) == FailureKind::Missing => Ok(None),
            Err(e) => Err(observe_error(e)),
        }
    }

    fn read_file(&mut self, path: &std::path::Path) -> Result<Option<String>, CniError> {
        absent_or(std::fs::read_to_string(path), path)
    }

    fn list_dir(&mut self, path: &std::path::Path) -> Result<Option<Vec<String>>, CniError> {
        let entries = absent_or(std::fs::read_dir(path), path)?;
        let Some(entries) = entries else { return Ok(None) };
        let mut names = Vec::new();
        for e in entries {
            let e = e.map_err(|e| CniError::io(format!("{}: {e}", path.display())))?;
            names.push(e.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(Some(names))
    }

    fn read_link(&mut self, path: &std::path::Path) -> Result<Option<String>, CniError> {
        Ok(absent_or(std::fs::read_link(path), path)?.map(|p| p.display().to_string()))
    }

    fn read_sysctl(&mut self, ns: &Netns, path: &[String]) -> Result<Option<String>, CniError> {
        read_in_netns(ns, &sysctl_path(path))
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
    /// The link's alias (`ip link set … alias`); host-device keeps the original name there.
    #[serde(default)]
    pub ifalias: Option<String>,
    /// The transmit queue length (`txqueuelen`).
    #[serde(default)]
    pub txqlen: Option<u32>,
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

/// `ip -j -d link show`: every link of the namespace.
pub fn links(obs: &mut dyn Observer, ns: &Netns) -> Result<Vec<Link>, CniError> {
    let q = Query::new(ns, &["ip", "-j", "-d", "link", "show"]);
    let Some(out) = obs.query(&q)? else { return Ok(Vec::new()) };
    parse_links(&out, &q.key())
}

/// One entry of `bridge -j fdb show`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct FdbEntry {
    pub mac: String,
    /// The remote VTEP of a VXLAN entry.
    #[serde(default)]
    pub dst: Option<String>,
    #[serde(default)]
    pub master: Option<String>,
}

/// `bridge -j fdb show dev DEV`: the forwarding entries of one device (None: no device).
pub fn fdb(obs: &mut dyn Observer, ns: &Netns, dev: &str) -> Result<Option<Vec<FdbEntry>>, CniError> {
    let q = Query::new(ns, &["bridge", "-j", "fdb", "show", "dev", dev]);
    let Some(out) = obs.query(&q)? else { return Ok(None) };
    let entries = serde_json::from_str(&out)
        .map_err(|e| CniError::new(code::COMMAND_FAILED, format!("{}: unexpected output: {e}", q.key())))?;
    Ok(Some(entries))
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

/// One qdisc of `tc -j qdisc show dev DEV`; for tbf, `options` has `rate` (bytes/s),
/// `burst` (bytes) and `lat` (µs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct QdiscInfo {
    pub kind: String,
    #[serde(default)]
    pub handle: String,
    #[serde(default)]
    pub root: bool,
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub options: serde_json::Value,
}

/// `tc -j qdisc show dev DEV`: the device's qdiscs, or None when there is no such device.
pub fn qdiscs(obs: &mut dyn Observer, ns: &Netns, dev: &str) -> Result<Option<Vec<QdiscInfo>>, CniError> {
    let q = Query::new(ns, &["tc", "-j", "qdisc", "show", "dev", dev]);
    let Some(out) = obs.query(&q)? else { return Ok(None) };
    let list = serde_json::from_str(&out)
        .map_err(|e| CniError::new(code::COMMAND_FAILED, format!("{}: unexpected output: {e}", q.key())))?;
    Ok(Some(list))
}

/// One policy routing rule of `ip -N -j rule show` (numeric tables).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RuleInfo {
    #[serde(default)]
    pub priority: Option<u32>,
    /// An address, or "all".
    #[serde(default)]
    pub src: String,
    /// The source prefix length when it is not the full address.
    #[serde(default)]
    pub srclen: Option<u8>,
    /// The table, numeric (`-N`); absent for rules that only jump or return.
    #[serde(default)]
    pub table: Option<String>,
}

impl RuleInfo {
    /// The source as a prefix; None for "all".
    pub fn src_net(&self) -> Option<ipnetwork::IpNetwork> {
        let ip: std::net::IpAddr = self.src.parse().ok()?;
        let len = self.srclen.unwrap_or(if ip.is_ipv4() { 32 } else { 128 });
        ipnetwork::IpNetwork::new(ip, len).ok()
    }
    pub fn table_id(&self) -> Option<u32> {
        self.table.as_deref()?.parse().ok()
    }
}

/// `ip -N -j -4|-6 rule show`: the rules of one family (`ip rule` lists IPv4 unless told).
pub fn rules(obs: &mut dyn Observer, ns: &Netns, v6: bool) -> Result<Vec<RuleInfo>, CniError> {
    let q = Query::new(ns, &["ip", "-N", "-j", if v6 { "-6" } else { "-4" }, "rule", "show"]);
    let Some(out) = obs.query(&q)? else { return Ok(Vec::new()) };
    serde_json::from_str(&out).map_err(|e| CniError::new(code::COMMAND_FAILED, format!("{}: {e}", q.key())))
}

/// One route of `ip -N -j route show table all` (numeric table, scope, protocol, type).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RouteInfo {
    /// "default" or an address with an optional /len.
    pub dst: String,
    /// The route type, numeric; absent for unicast.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub dev: Option<String>,
    /// Absent for the main table.
    #[serde(default)]
    pub table: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub prefsrc: Option<String>,
    #[serde(default)]
    pub metric: Option<u32>,
}

impl RouteInfo {
    /// The routing table's id (main when the listing leaves it out).
    pub fn table_id(&self) -> Option<u32> {
        match self.table.as_deref() {
            None => Some(254),
            Some(t) => t.parse().ok(),
        }
    }
    pub fn is_unicast(&self) -> bool {
        matches!(self.kind.as_deref(), None | Some("1"))
    }
    /// The destination as a prefix, given the family of the listing.
    pub fn dst_net(&self, v6: bool) -> Option<ipnetwork::IpNetwork> {
        if self.dst == "default" {
            return Some(if v6 { "::/0".parse().ok()? } else { "0.0.0.0/0".parse().ok()? });
        }
        if self.dst.contains('/') {
            return self.dst.parse().ok();
        }
        let ip: std::net::IpAddr = self.dst.parse().ok()?;
        ipnetwork::IpNetwork::new(ip, if ip.is_ipv4() { 32 } else { 128 }).ok()
    }
}

/// `ip -N -j -4|-6 route show table all`: every route of one family, in every table.
pub fn all_routes(obs: &mut dyn Observer, ns: &Netns, v6: bool) -> Result<Vec<RouteInfo>, CniError> {
    let q = Query::new(ns, &["ip", "-N", "-j", if v6 { "-6" } else { "-4" }, "route", "show", "table", "all"]);
    let Some(out) = obs.query(&q)? else { return Ok(Vec::new()) };
    serde_json::from_str(&out).map_err(|e| CniError::new(code::COMMAND_FAILED, format!("{}: {e}", q.key())))
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
    /// Every rule as (chain, spec) exactly as printed, parsed or not, in order.
    pub raw: Vec<(String, String)>,
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
            t.raw.push((chain.to_string(), spec.to_string()));
        }
    }
    Ok(Some(t))
}

/// Splits an `iptables -S` line into words, honouring its double quotes and escapes.
pub fn ipt_words(s: &str) -> Option<Vec<String>> {
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
    let mut rule = IptRule::default();
    let mut target = None;
    // A target whose parameters follow it (`-j DNAT --to-destination …`).
    let mut pending: Option<&str> = None;
    let mut i = 0;
    let mut negate = false;
    while i < words.len() {
        let next = words.get(i + 1)?;
        match words[i].as_str() {
            "!" => {
                negate = true;
                i += 1;
                continue;
            }
            "-s" if !negate => rule.src = Some(next.parse().ok()?),
            "-d" => {
                rule.dst = Some(next.parse().ok()?);
                rule.dst_negated = negate;
            }
            "-i" => rule.in_iface = Some(IfaceMatch { name: next.clone(), negated: negate }),
            "-o" => rule.out_iface = Some(IfaceMatch { name: next.clone(), negated: negate }),
            "-p" if !negate => rule.protocol = Some(L4Proto::parse(next)?),
            "-m" if !negate
                && matches!(
                    next.as_str(),
                    "comment" | "tcp" | "udp" | "sctp" | "multiport" | "addrtype" | "conntrack" | "mark"
                ) => {}
            "--comment" => rule.comment = Some(next.clone()),
            "--sport" if !negate => rule.sport = Some(PortRange::parse(next)?),
            "--dport" if !negate => rule.dport = Some(PortRange::parse(next)?),
            "--dports" if !negate => {
                rule.multiport_dports = Some(next.split(',').map(|p| p.parse().ok()).collect::<Option<Vec<u16>>>()?)
            }
            "--dst-type" if !negate && next == "LOCAL" => rule.addrtype_dst = Some(AddrType::Local),
            "--ctstate" if !negate => {
                rule.ctstate = Some(next.split(',').map(CtState::parse).collect::<Option<Vec<_>>>()?)
            }
            "--mark" if !negate => rule.mark = Some(Mark::parse(next)?),
            "-j" => {
                target = match next.as_str() {
                    "ACCEPT" => Some(IptTarget::Accept),
                    "RETURN" => Some(IptTarget::Return),
                    "MASQUERADE" => Some(IptTarget::Masquerade),
                    "DROP" => Some(IptTarget::Drop),
                    "DNAT" | "MARK" => {
                        pending = Some(if next == "DNAT" { "DNAT" } else { "MARK" });
                        None
                    }
                    c => Some(IptTarget::Jump(c.to_string())),
                }
            }
            "--to-destination" if pending == Some("DNAT") => {
                target = Some(IptTarget::Dnat(next.parse().ok()?));
                pending = None;
            }
            "--set-xmark" if pending == Some("MARK") => {
                target = Some(IptTarget::SetXmark(Mark::parse(next)?));
                pending = None;
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
    /// Every string and number of the rule's `expr`, in order (addresses, ports, chain
    /// names): enough to tell which address a rule is about without modelling nft's
    /// expression tree.
    pub words: Vec<String>,
}

impl NftRuleInfo {
    /// Whether `word` (an address, a chain name) appears in the rule's expression.
    pub fn mentions(&self, word: &str) -> bool {
        self.words.iter().any(|w| w == word)
    }
}

fn json_words(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Number(n) => out.push(n.to_string()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| json_words(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| json_words(x, out)),
        _ => {}
    }
}

/// `nft -j list table FAMILY T`: the rules with their handles and comments.
pub fn nft_table_rules(obs: &mut dyn Observer, table: &NftTable) -> Result<Option<Vec<NftRuleInfo>>, CniError> {
    let q = Query::new(&Netns::Host, &["nft", "-j", "list", "table", table.family.as_str(), &table.name]);
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
                    words: {
                        let mut w = Vec::new();
                        if let Some(e) = r.get("expr") {
                            json_words(e, &mut w);
                        }
                        w
                    },
                })
            })
            .collect(),
    ))
}

/// `ip -j route get ADDR`: the device the namespace routes ADDR through (None: no route).
pub fn route_get_dev(obs: &mut dyn Observer, ns: &Netns, addr: std::net::IpAddr) -> Result<Option<String>, CniError> {
    #[derive(Deserialize)]
    struct R {
        #[serde(default)]
        dev: Option<String>,
    }
    let q = Query::new(ns, &["ip", "-j", "route", "get", &addr.to_string()]);
    let Some(out) = obs.query(&q)? else { return Ok(None) };
    let rs: Vec<R> =
        serde_json::from_str(&out).map_err(|e| CniError::new(code::COMMAND_FAILED, format!("{}: {e}", q.key())))?;
    Ok(rs.into_iter().find_map(|r| r.dev))
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
        assert!(parse_ipt_rule("-m set --match-set x src -j ACCEPT").is_none());
        assert!(parse_ipt_rule("! -p tcp -j ACCEPT").is_none());
        assert!(parse_ipt_rule("-j DNAT").is_none());
    }

    #[test]
    fn portmap_and_firewall_rules_round_trip_as_iptables_prints_them() {
        // Lines as iptables 1.8.9 -S printed them for rules the reference plugins write.
        for line in [
            "-s 10.88.0.0/24 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK",
            "-d 192.168.1.1/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.88.0.2:80",
            "-p sctp -m sctp --dport 8080 -j DNAT --to-destination [fd00::2]:80",
            r#"-p tcp -m comment --comment "dnat name: \"net\" id: \"c1\"" -m multiport --dports 8080,8081 -j CNI-DN-abc"#,
            "-m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
            "-m mark --mark 0x2000/0x2000 -j MASQUERADE",
            r#"-m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000/0x2000"#,
            "-d 10.88.0.2/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            r#"-i cni0 ! -o cni0 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)" -j CNI-ISOLATION-STAGE-2"#,
            "-o cni0 -j DROP",
        ] {
            let r = parse_ipt_rule(line).unwrap_or_else(|| panic!("{line}"));
            assert_eq!(r.spec().trim(), line);
        }
        // An unquoted one-word comment parses the same.
        let r = parse_ipt_rule("-m comment --comment x -j RETURN").unwrap();
        assert_eq!(r.comment.as_deref(), Some("x"));
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
