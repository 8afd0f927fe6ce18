//! tuning (chained, reference §3.10): sysctls of the container's network namespace and
//! attributes of the container interface (MAC, MTU, promisc, allmulticast, txqueuelen).
//!
//! Config: `sysctl` (name → string value), `mac`, `mtu`, `promisc` (only true acts),
//! `allmulti`, `txQLen`, `dataDir`. Overrides as the reference: the MAC from CNI_ARGS
//! `MAC`, then `runtimeConfig.mac`, then `args.cni.mac` (the last one given wins);
//! `args.cni.{sysctl (merged), mtu, promisc, allmulti, txQLen}`.
//!
//! Sysctl names: `net.ipv4.conf.IFNAME.rp_filter` or `net/ipv4/conf/IFNAME/rp_filter`;
//! the first `IFNAME` becomes CNI_IFNAME. The path is kept as components, so an interface
//! name with dots (`eth0.100`) stays one component; as with sysctl(8), a `/` inside a
//! dotted name stands for a dot (`net.ipv4.conf.eth0/100.rp_filter`). Only net.* is
//! allowed. With /etc/cni/tuning/allowlist.conf present, every name must match one of its
//! regular expressions (a subset: literals, `.`, `[…]`, `\`-escapes, `* + ?`, `^ $`; a
//! line using anything else refuses every sysctl, so the allowlist fails closed).
//!
//! ADD observes the current values (the link with `ip -j`, sysctls read in-process), then
//! plans: the attachment's state file (`exec::state`, the values to restore), each sysctl
//! and each link attribute, every change carrying its undo, so a failed ADD puts back
//! what it changed. The result is prevResult with the new MAC on CNI_IFNAME.
//!
//! DEL restores the saved values (best effort, as the reference ignores errors) and
//! removes the state file. Unlike the reference it also restores the sysctls. Without a
//! netns nothing can be restored: a gone netns drops the state, an empty CNI_NETNS keeps
//! it for a later DEL; GC removes state files of attachments that are no longer valid.
//!
//! CHECK compares every sysctl (whitespace-insensitive, so `tcp_rmem`'s tabs match the
//! config's spaces) and every configured link attribute with what the kernel reports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::exec::observe::{self, Link};
use crate::exec::{apply, state, undo_of};
use crate::names;
use crate::plan::{LinkSet, Netns, Op, Plan, Sysctl, Tolerate};
use crate::skel::{Cx, NetnsState, Plugin};
use crate::spec::{CniError, CniResult};

pub struct Tuning;

const PLUGIN: &str = "tuning";
pub const ALLOWLIST: &str = "/etc/cni/tuning/allowlist.conf";

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawConf {
    #[serde(rename = "dataDir")]
    data_dir: Option<String>,
    sysctl: Option<BTreeMap<String, String>>,
    mac: Option<String>,
    promisc: Option<bool>,
    mtu: Option<i64>,
    allmulti: Option<bool>,
    #[serde(rename = "txQLen")]
    txqlen: Option<i64>,
}

/// One sysctl to set: the name as configured, and its /proc/sys components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlSetting {
    pub name: String,
    pub path: Vec<String>,
    pub value: String,
}

/// The validated tuning configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TuningConf {
    pub sysctls: Vec<SysctlSetting>,
    pub mac: Option<String>,
    pub promisc: bool,
    pub mtu: Option<u32>,
    pub allmulti: Option<bool>,
    pub txqlen: Option<u32>,
    pub data_dir: Option<PathBuf>,
}

impl TuningConf {
    fn has_link_changes(&self) -> bool {
        self.mac.is_some() || self.promisc || self.mtu.is_some() || self.allmulti.is_some() || self.txqlen.is_some()
    }
}

fn bad(msg: impl std::fmt::Display) -> CniError {
    CniError::config(format!("{PLUGIN}: {msg}"))
}

/// A sysctl name as /proc/sys components, CNI_IFNAME put in for the first `IFNAME`.
pub fn sysctl_components(name: &str, ifname: &str) -> Result<Vec<String>, String> {
    // sysctl(8): whichever separator comes first is the separator; in the dotted form a
    // `/` stands for a literal dot.
    let slash_form = match (name.find('.'), name.find('/')) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(d), Some(s)) => s < d,
    };
    let mut parts: Vec<String> = if slash_form {
        name.split('/').map(str::to_string).collect()
    } else {
        name.split('.').map(|p| p.replace('/', ".")).collect()
    };
    if let Some(p) = parts.iter_mut().find(|p| p.contains("IFNAME")) {
        *p = p.replacen("IFNAME", ifname, 1);
    }
    if parts.first().map(String::as_str) != Some("net") || parts.len() < 2 {
        return Err(format!("sysctl {name:?} is not a net.* sysctl"));
    }
    if let Some(p) = parts.iter().find(|p| p.is_empty() || *p == "." || *p == ".." || p.contains(['/', '\0'])) {
        return Err(format!("sysctl {name:?} has an invalid component {p:?}"));
    }
    Ok(parts)
}

fn int_field(v: Option<i64>, field: &str, min: i64, max: i64) -> Result<Option<u32>, CniError> {
    match v {
        None => Ok(None),
        Some(n) if (min..=max).contains(&n) => Ok(Some(n as u32)),
        Some(n) => Err(bad(format!("{field} {n} is out of range {min}-{max}"))),
    }
}

fn args_value<T: serde::de::DeserializeOwned>(cx: &Cx, key: &str) -> Result<Option<T>, CniError> {
    match cx.conf.args_cni(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone()).map(Some).map_err(|e| bad(format!("args.cni.{key}: {e}"))),
    }
}

/// Duplicate `sysctl` keys in the config bytes (the parsed config keeps only the last).
fn duplicate_sysctl_key(bytes: &[u8]) -> Option<String> {
    struct Keys(Option<String>);
    impl<'de> Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Keys, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a map")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Keys, A::Error> {
                    let mut seen = std::collections::BTreeSet::new();
                    let mut dup = None;
                    while let Some((k, _)) = m.next_entry::<String, serde::de::IgnoredAny>()? {
                        if !seen.insert(k.clone()) && dup.is_none() {
                            dup = Some(k);
                        }
                    }
                    Ok(Keys(dup))
                }
            }
            d.deserialize_map(V)
        }
    }
    #[derive(Deserialize)]
    struct Top {
        #[serde(default)]
        sysctl: Option<Keys>,
    }
    serde_json::from_slice::<Top>(bytes).ok()?.sysctl?.0
}

impl TuningConf {
    pub fn from_cx(cx: &Cx) -> Result<TuningConf, CniError> {
        let raw: RawConf = cx.conf.plugin()?;
        if let Some(k) = duplicate_sysctl_key(&cx.conf.bytes) {
            return Err(bad(format!("duplicated sysctl key {k:?}")));
        }
        let mut sysctl = raw.sysctl.unwrap_or_default();
        if let Some(extra) = args_value::<BTreeMap<String, String>>(cx, "sysctl")? {
            sysctl.extend(extra);
        }
        let mut sysctls = Vec::new();
        for (name, value) in sysctl {
            let path = sysctl_components(&name, &cx.env.ifname).map_err(bad)?;
            if value.chars().any(char::is_control) {
                return Err(bad(format!("sysctl {name:?}: the value contains a control character")));
            }
            sysctls.push(SysctlSetting { name, path, value });
        }
        let mut mac = raw.mac.filter(|m| !m.is_empty()).map(|m| ("\"mac\"", m));
        if let Some(m) = cx.env.args.get("MAC").filter(|m| !m.is_empty()) {
            mac = Some(("CNI_ARGS MAC", m.to_string()));
        }
        if let Some(m) = cx.conf.runtime_config.get("mac").and_then(Value::as_str).filter(|m| !m.is_empty()) {
            mac = Some(("runtimeConfig.mac", m.to_string()));
        }
        if let Some(m) = args_value::<String>(cx, "mac")?.filter(|m| !m.is_empty()) {
            mac = Some(("args.cni.mac", m));
        }
        let mac = match mac {
            None => None,
            Some((field, m)) => Some(names::parse_mac(&m).map_err(|e| bad(format!("{field}: {e}")))?),
        };
        let promisc = args_value::<bool>(cx, "promisc")?.or(raw.promisc).unwrap_or(false);
        let mtu = args_value::<i64>(cx, "mtu")?.or(raw.mtu).filter(|m| *m != 0);
        let allmulti = args_value::<bool>(cx, "allmulti")?.or(raw.allmulti);
        let txqlen = args_value::<i64>(cx, "txQLen")?.or(raw.txqlen);
        let data_dir = match raw.data_dir.filter(|d| !d.is_empty()) {
            None => None,
            Some(d) if d.starts_with('/') && !d.chars().any(char::is_control) => Some(PathBuf::from(d)),
            Some(d) => return Err(bad(format!("\"dataDir\" {d:?} is not an absolute path"))),
        };
        Ok(TuningConf {
            sysctls,
            mac,
            promisc,
            mtu: int_field(mtu, "mtu", 68, 65535)?,
            allmulti,
            txqlen: int_field(txqlen, "txQLen", 0, i64::from(u32::MAX))?,
            data_dir,
        })
    }

    /// Where this attachment's saved values live: the state store, or `dataDir` when
    /// given (`<dataDir>/<network>/<id>@<ifname>.json`).
    pub fn state_path(&self, network: &str, id: &str, ifname: &str) -> PathBuf {
        self.network_dir(network).join(format!("{id}@{ifname}.json"))
    }

    fn network_dir(&self, network: &str) -> PathBuf {
        match &self.data_dir {
            Some(d) => d.join(network),
            None => state::network_dir(PLUGIN, network),
        }
    }
}

/// What DEL puts back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promisc: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allmulti: Option<bool>,
    #[serde(default, rename = "txQLen", skip_serializing_if = "Option::is_none")]
    pub txqlen: Option<u32>,
    /// In the order ADD wrote them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sysctls: Vec<SavedSysctl>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedSysctl {
    pub path: Vec<String>,
    pub value: String,
}

/// What ADD found before changing anything.
#[derive(Debug, Clone, Default)]
pub struct Current {
    /// The container interface (observed only when a link attribute is configured).
    pub link: Option<Link>,
    /// The current value of each configured sysctl, in config order.
    pub sysctls: Vec<String>,
}

fn has_flag(link: &Link, flag: &str) -> bool {
    link.flags.iter().any(|f| f == flag)
}

/// The ADD plan and its result. Pure: no I/O.
pub fn plan_add(
    conf: &TuningConf,
    state_file: &Path,
    netns: &Path,
    ifname: &str,
    cur: &Current,
    prev: &CniResult,
) -> Result<(Plan, CniResult), CniError> {
    let ctr = Netns::Container(netns.to_path_buf());
    let mut plan = Plan::new();
    let mut saved = Saved::default();
    for (s, old) in conf.sysctls.iter().zip(&cur.sysctls) {
        saved.sysctls.push(SavedSysctl { path: s.path.clone(), value: old.trim_end_matches('\n').to_string() });
    }
    let link = match (conf.has_link_changes(), &cur.link) {
        (false, _) => None,
        (true, Some(l)) => Some(l),
        (true, None) => return Err(bad(format!("container interface {ifname} does not exist"))),
    };
    if let Some(l) = link {
        saved.mac = conf.mac.as_ref().map(|_| l.address.clone());
        saved.promisc = conf.promisc.then(|| has_flag(l, "PROMISC"));
        saved.mtu = conf.mtu.map(|_| l.mtu);
        saved.allmulti = conf.allmulti.map(|_| has_flag(l, "ALLMULTI"));
        if conf.txqlen.is_some() {
            saved.txqlen = Some(l.txqlen.ok_or_else(|| bad(format!("the txqueuelen of {ifname} could not be read")))?);
        }
    }
    if saved != Saved::default() {
        let write = Op::StateWrite {
            path: state_file.to_path_buf(),
            contents: serde_json::to_string(&saved).expect("saved values serialize"),
        };
        plan.push(&Netns::Host, write.clone()).undo(undo_of(&write).expect("state undo"));
    }
    for (s, old) in conf.sysctls.iter().zip(&saved.sysctls) {
        plan.push(&ctr, Op::Sysctl(Sysctl { path: s.path.clone(), value: s.value.clone() }))
            .undo(Op::Sysctl(Sysctl { path: s.path.clone(), value: old.value.clone() }));
    }
    let set = |f: &dyn Fn(&mut LinkSet)| {
        let mut l = LinkSet::dev(ifname);
        f(&mut l);
        Op::LinkSet(l)
    };
    if let (Some(mac), Some(old)) = (&conf.mac, &saved.mac) {
        plan.push(&ctr, set(&|l| l.mac = Some(mac.clone()))).undo(set(&|l| l.mac = Some(old.clone())));
    }
    if let Some(old) = saved.promisc {
        plan.push(&ctr, set(&|l| l.promisc = Some(true))).undo(set(&|l| l.promisc = Some(old)));
    }
    if let (Some(mtu), Some(old)) = (conf.mtu, saved.mtu) {
        plan.push(&ctr, set(&|l| l.mtu = Some(mtu))).undo(set(&|l| l.mtu = Some(old)));
    }
    if let (Some(on), Some(old)) = (conf.allmulti, saved.allmulti) {
        plan.push(&ctr, set(&|l| l.allmulti = Some(on))).undo(set(&|l| l.allmulti = Some(old)));
    }
    if let (Some(q), Some(old)) = (conf.txqlen, saved.txqlen) {
        plan.push(&ctr, set(&|l| l.txqlen = Some(q))).undo(set(&|l| l.txqlen = Some(old)));
    }
    let mut result = prev.clone();
    if let Some(mac) = &conf.mac {
        for i in result.interfaces.iter_mut().filter(|i| i.name == ifname) {
            i.mac = mac.clone();
        }
    }
    Ok((plan, result))
}

/// The DEL plan: put back what the state file saved (best effort), then drop the file.
pub fn plan_del(netns: &NetnsState, ifname: &str, state_file: &Path, saved: Option<&Saved>) -> Plan {
    let mut plan = Plan::new();
    let remove = |plan: &mut Plan| {
        plan.push(&Netns::Host, Op::StateRemove { path: state_file.to_path_buf() }).tolerate(Tolerate::Missing);
    };
    match netns {
        // Nothing to restore into; a later DEL with the namespace may still come.
        NetnsState::Unset => {}
        NetnsState::Gone(_) => {
            if saved.is_some() {
                remove(&mut plan);
            }
        }
        NetnsState::Present(p) => {
            let Some(saved) = saved else { return plan };
            let ctr = Netns::Container(p.clone());
            let mut restore = |f: &dyn Fn(&mut LinkSet)| {
                let mut l = LinkSet::dev(ifname);
                f(&mut l);
                plan.push(&ctr, Op::LinkSet(l)).tolerate(Tolerate::Any);
            };
            if let Some(m) = saved.mtu {
                restore(&|l| l.mtu = Some(m));
            }
            if let Some(m) = &saved.mac {
                restore(&|l| l.mac = Some(m.clone()));
            }
            if let Some(p) = saved.promisc {
                restore(&|l| l.promisc = Some(p));
            }
            if let Some(a) = saved.allmulti {
                restore(&|l| l.allmulti = Some(a));
            }
            if let Some(q) = saved.txqlen {
                restore(&|l| l.txqlen = Some(q));
            }
            for s in saved.sysctls.iter().rev() {
                plan.push(&ctr, Op::Sysctl(Sysctl { path: s.path.clone(), value: s.value.clone() }))
                    .tolerate(Tolerate::Any);
            }
            remove(&mut plan);
        }
    }
    plan
}

/// Checks every sysctl name against the allowlist's regular expressions.
fn check_allowlist(conf: &TuningConf, text: &str) -> Result<(), CniError> {
    let patterns: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    for s in &conf.sysctls {
        let mut allowed = false;
        for p in &patterns {
            match regex::search(p, &s.name) {
                Ok(true) => {
                    allowed = true;
                    break;
                }
                Ok(false) => {}
                Err(e) => return Err(bad(format!("{ALLOWLIST}: pattern {p:?}: {e}"))),
            }
        }
        if !allowed {
            return Err(bad(format!(
                "sysctl {} is not allowed: it matches no pattern of {ALLOWLIST} ({})",
                s.name,
                patterns.join(" ")
            )));
        }
    }
    Ok(())
}

fn observe_current(cx: &mut Cx, conf: &TuningConf, ctr: &Netns) -> Result<Current, CniError> {
    let mut cur = Current::default();
    for s in &conf.sysctls {
        let v = cx
            .obs
            .read_sysctl(ctr, &s.path)?
            .ok_or_else(|| bad(format!("sysctl {} ({}) does not exist", s.name, s.path.join("/"))))?;
        cur.sysctls.push(v);
    }
    if conf.has_link_changes() {
        cur.link = observe::link_addrs(cx.obs, ctr, &cx.env.ifname)?;
    }
    Ok(cur)
}

fn require_prev(cx: &Cx) -> Result<CniResult, CniError> {
    cx.conf.prev_result.clone().ok_or_else(|| bad("must be called as a chained plugin: prevResult is missing"))
}

fn read_saved(cx: &mut Cx, path: &Path) -> Result<Option<Saved>, CniError> {
    let Some(text) = cx.obs.read_file(path)? else { return Ok(None) };
    match serde_json::from_str(&text) {
        Ok(s) => Ok(Some(s)),
        Err(e) => {
            crate::exec::log(&format!("{PLUGIN}: ignoring unreadable state file {}: {e}", path.display()));
            Ok(Some(Saved::default()))
        }
    }
}

/// Whitespace-insensitive equality of sysctl values (the kernel prints tabs).
fn same_value(a: &str, b: &str) -> bool {
    a.split_whitespace().eq(b.split_whitespace())
}

impl Plugin for Tuning {
    fn name(&self) -> &'static str {
        "tuning"
    }
    fn about(&self) -> &'static str {
        "CNI tuning plugin (ipcni)"
    }

    fn add(&self, cx: &mut Cx) -> Result<CniResult, CniError> {
        let conf = TuningConf::from_cx(cx)?;
        let prev = require_prev(cx)?;
        let network = cx.conf.require_name()?.to_string();
        let netns = cx.netns_path()?;
        if !conf.sysctls.is_empty()
            && let Some(text) = cx.obs.read_file(Path::new(ALLOWLIST))?
        {
            check_allowlist(&conf, &text)?;
        }
        let ctr = Netns::Container(netns.clone());
        let cur = observe_current(cx, &conf, &ctr)?;
        let path = conf.state_path(&network, &cx.env.container_id, &cx.env.ifname);
        let (plan, result) = plan_add(&conf, &path, &netns, &cx.env.ifname, &cur, &prev)?;
        apply(cx.exec, &plan)?;
        Ok(result)
    }

    fn del(&self, cx: &mut Cx) -> Result<(), CniError> {
        // DEL needs only where the saved values are: a config ADD would refuse (a sysctl
        // no longer allowed, say) must not keep them from being restored.
        let conf = TuningConf::from_cx(cx).unwrap_or_else(|e| {
            crate::exec::log(&format!("{PLUGIN}: DEL with a config ADD would refuse ({e})"));
            let data_dir = cx.conf.raw.get("dataDir").and_then(Value::as_str).filter(|d| d.starts_with('/'));
            TuningConf { data_dir: data_dir.map(PathBuf::from), ..TuningConf::default() }
        });
        let network = cx.conf.require_name()?.to_string();
        if cx.netns == NetnsState::Unset {
            // Nothing to restore into; the saved values wait for a DEL with the netns.
            return Ok(());
        }
        let path = conf.state_path(&network, &cx.env.container_id, &cx.env.ifname);
        let saved = read_saved(cx, &path)?;
        let plan = plan_del(&cx.netns, &cx.env.ifname, &path, saved.as_ref());
        apply(cx.exec, &plan)
    }

    fn check(&self, cx: &mut Cx) -> Result<(), CniError> {
        let conf = TuningConf::from_cx(cx)?;
        require_prev(cx)?;
        let netns = cx.netns_path()?;
        let ctr = Netns::Container(netns);
        let ifname = cx.env.ifname.clone();
        for s in &conf.sysctls {
            let cur = cx.obs.read_sysctl(&ctr, &s.path)?;
            match cur {
                Some(v) if same_value(&v, &s.value) => {}
                Some(v) => {
                    return Err(CniError::check(format!(
                        "{PLUGIN}: sysctl {} is {:?}, configured {:?}",
                        s.name,
                        v.trim_end(),
                        s.value
                    )));
                }
                None => return Err(CniError::check(format!("{PLUGIN}: sysctl {} does not exist", s.name))),
            }
        }
        let link = observe::link_addrs(cx.obs, &ctr, &ifname)?
            .ok_or_else(|| CniError::check(format!("{PLUGIN}: container interface {ifname} is missing")))?;
        let mismatch = |what: &str, cur: String, want: String| {
            Err(CniError::check(format!("{PLUGIN}: {ifname} has {what} {cur}, configured {want}")))
        };
        if let Some(mac) = &conf.mac
            && !mac.eq_ignore_ascii_case(&link.address)
        {
            return mismatch("MAC", link.address.clone(), mac.clone());
        }
        if conf.promisc != has_flag(&link, "PROMISC") {
            return mismatch("promisc", has_flag(&link, "PROMISC").to_string(), conf.promisc.to_string());
        }
        if let Some(mtu) = conf.mtu
            && mtu != link.mtu
        {
            return mismatch("MTU", link.mtu.to_string(), mtu.to_string());
        }
        if let Some(a) = conf.allmulti
            && a != has_flag(&link, "ALLMULTI")
        {
            return mismatch("allmulticast", has_flag(&link, "ALLMULTI").to_string(), a.to_string());
        }
        if let Some(q) = conf.txqlen
            && Some(q) != link.txqlen
        {
            let cur = link.txqlen.map_or_else(|| "unknown".to_string(), |c| c.to_string());
            return mismatch("txqueuelen", cur, q.to_string());
        }
        Ok(())
    }

    fn gc(&self, cx: &mut Cx) -> Result<(), CniError> {
        let conf = TuningConf::from_cx(cx)?;
        let network = cx.conf.require_name()?.to_string();
        let Some(valid) = cx.conf.valid_attachments.clone() else { return Ok(()) };
        let dir = conf.network_dir(&network);
        let mut plan = Plan::new();
        for name in cx.obs.list_dir(&dir)?.unwrap_or_default() {
            let Some((id, ifname)) = state::parse_file_name(&name) else { continue };
            if !valid.iter().any(|a| a.container_id == id && a.ifname == ifname) {
                plan.push(&Netns::Host, Op::StateRemove { path: dir.join(&name) }).tolerate(Tolerate::Missing);
            }
        }
        apply(cx.exec, &plan)
    }
}

/// A small regular-expression matcher for the sysctl allowlist (Go `regexp.MatchString`
/// semantics: unanchored search). It knows literals, `.`, bracket classes with ranges and
/// negation, `\d \w \s` and escaped punctuation, the quantifiers `* + ?` and the anchors
/// `^ $`; anything else (groups, alternation, counted repetition) is an error, so an
/// allowlist ipcni cannot read refuses rather than allows.
mod regex {
    #[derive(Debug, Clone)]
    enum Atom {
        Char(char),
        Any,
        Class { negated: bool, items: Vec<(char, char)> },
        Start,
        End,
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Rep {
        One,
        ZeroOrOne,
        ZeroOrMore,
        OneOrMore,
    }

    fn class_escape(c: char) -> Option<Vec<(char, char)>> {
        Some(match c {
            'd' => vec![('0', '9')],
            'w' => vec![('a', 'z'), ('A', 'Z'), ('0', '9'), ('_', '_')],
            's' => vec![(' ', ' '), ('\t', '\t'), ('\n', '\n'), ('\r', '\r'), ('\x0c', '\x0c')],
            _ => return None,
        })
    }

    fn parse(p: &str) -> Result<Vec<(Atom, Rep)>, String> {
        let mut out: Vec<(Atom, Rep)> = Vec::new();
        let mut it = p.chars().peekable();
        while let Some(c) = it.next() {
            let atom = match c {
                '.' => Atom::Any,
                '^' => Atom::Start,
                '$' => Atom::End,
                '\\' => {
                    let e = it.next().ok_or("trailing backslash")?;
                    match class_escape(e) {
                        Some(items) => Atom::Class { negated: false, items },
                        None if e.is_ascii_punctuation() => Atom::Char(e),
                        None => return Err(format!("unsupported escape \\{e}")),
                    }
                }
                '[' => {
                    let mut negated = false;
                    if it.peek() == Some(&'^') {
                        negated = true;
                        it.next();
                    }
                    let mut items = Vec::new();
                    let mut first = true;
                    loop {
                        let c = it.next().ok_or("unterminated [")?;
                        if c == ']' && !first {
                            break;
                        }
                        first = false;
                        let lo = if c == '\\' {
                            let e = it.next().ok_or("trailing backslash")?;
                            if let Some(cls) = class_escape(e) {
                                items.extend(cls);
                                continue;
                            }
                            e
                        } else {
                            c
                        };
                        if it.peek() == Some(&'-') {
                            it.next();
                            match it.peek() {
                                Some(']') | None => {
                                    items.push((lo, lo));
                                    items.push(('-', '-'));
                                }
                                Some(_) => {
                                    let hi = it.next().expect("peeked");
                                    if hi < lo {
                                        return Err(format!("bad range {lo}-{hi}"));
                                    }
                                    items.push((lo, hi));
                                }
                            }
                        } else {
                            items.push((lo, lo));
                        }
                    }
                    Atom::Class { negated, items }
                }
                '(' | ')' | '|' | '{' | '}' => return Err(format!("{c:?} is not supported")),
                '*' | '+' | '?' => return Err(format!("{c:?} follows nothing")),
                c => Atom::Char(c),
            };
            let rep = match it.peek() {
                Some('*') => Rep::ZeroOrMore,
                Some('+') => Rep::OneOrMore,
                Some('?') => Rep::ZeroOrOne,
                _ => Rep::One,
            };
            if rep != Rep::One {
                it.next();
                if matches!(atom, Atom::Start | Atom::End) {
                    return Err("a quantifier after an anchor is not supported".into());
                }
                if matches!(it.peek(), Some('*' | '+' | '?')) {
                    return Err("repeated or lazy quantifiers are not supported".into());
                }
            }
            out.push((atom, rep));
        }
        Ok(out)
    }

    fn one(a: &Atom, c: char) -> bool {
        match a {
            Atom::Char(x) => *x == c,
            Atom::Any => c != '\n',
            Atom::Class { negated, items } => items.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated,
            Atom::Start | Atom::End => false,
        }
    }

    fn at(prog: &[(Atom, Rep)], text: &[char], i: usize) -> bool {
        let Some(((atom, rep), rest)) = prog.split_first() else { return true };
        match atom {
            Atom::Start => return i == 0 && at(rest, text, i),
            Atom::End => return i == text.len() && at(rest, text, i),
            _ => {}
        }
        let (min, max) = match rep {
            Rep::One => (1, 1),
            Rep::ZeroOrOne => (0, 1),
            Rep::ZeroOrMore => (0, usize::MAX),
            Rep::OneOrMore => (1, usize::MAX),
        };
        let mut n = 0;
        while n < max && i + n < text.len() && one(atom, text[i + n]) {
            n += 1;
        }
        (min..=n).rev().any(|k| at(rest, text, i + k))
    }

    /// Whether `pattern` matches anywhere in `text`.
    pub fn search(pattern: &str, text: &str) -> Result<bool, String> {
        let prog = parse(pattern)?;
        let chars: Vec<char> = text.chars().collect();
        Ok((0..=chars.len()).any(|i| at(&prog, &chars, i)))
    }

    #[cfg(test)]
    mod tests {
        use super::search;

        #[test]
        fn go_style_search() {
            assert!(search(r"^net\.core\.somaxconn$", "net.core.somaxconn").unwrap());
            assert!(!search(r"^net\.core\.somaxconn$", "net.core.somaxconnX").unwrap());
            assert!(search(r"net\.ipv4\.conf\.IFNAME\.[a-z_]+", "net.ipv4.conf.IFNAME.rp_filter").unwrap());
            assert!(search("somax", "net.core.somaxconn").unwrap());
            assert!(search(r"^net\.ipv6\.conf\.[^.]*\.accept_ra$", "net.ipv6.conf.eth0.accept_ra").unwrap());
            assert!(!search(r"^net\.ipv6\.conf\.[^.]*\.accept_ra$", "net.ipv6.conf.eth0.1.accept_ra").unwrap());
            assert!(search("^a.?b*c$", "ac").unwrap());
            assert!(search(r"^\d+$", "123").unwrap());
            assert!(search("(a|b)", "a").is_err());
            assert!(search("a{2}", "aa").is_err());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_names_become_components_and_keep_dotted_interface_names() {
        let c = |n: &str, i: &str| sysctl_components(n, i);
        assert_eq!(
            c("net.ipv4.conf.IFNAME.rp_filter", "eth0.100").unwrap(),
            ["net", "ipv4", "conf", "eth0.100", "rp_filter"]
        );
        assert_eq!(
            c("net/ipv4/conf/eth0.100/rp_filter", "x").unwrap(),
            ["net", "ipv4", "conf", "eth0.100", "rp_filter"]
        );
        assert_eq!(
            c("net.ipv4.conf.eth0/100.rp_filter", "x").unwrap(),
            ["net", "ipv4", "conf", "eth0.100", "rp_filter"]
        );
        assert_eq!(c("net.core.somaxconn", "x").unwrap(), ["net", "core", "somaxconn"]);
        assert!(c("kernel.shmmax", "x").is_err());
        assert!(c("net..core", "x").is_err());
        assert!(c("net/../kernel/shmmax", "x").is_err());
        assert!(c("net", "x").is_err());
    }
}
