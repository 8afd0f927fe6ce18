//! host-local configuration (§2.2): range sets, routes, data dir, resolvConf and the
//! requested addresses, validated once so that allocation cannot meet a bad value.
//!
//! Keys are matched exactly first, then ASCII-case-insensitively, as Go's JSON decoder
//! does, so configs written for the reference plugin keep working.

use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;
use serde_json::{Map, Value};

use crate::ipam::range::{Range, RangeSet, canonical_ip, family_bits, from_num, host_mask, to_num};
use crate::spec::{CniArgs, CniError, Dns, NetConf, Route, Version};

/// Where host-local keeps its state when `ipam.dataDir` is not set.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// resolv.conf files larger than this are refused (real ones are a few hundred bytes).
const MAX_RESOLV_CONF_BYTES: u64 = 1 << 20;

/// The store directory of one network: `<dataDir>/<network name>`.
///
/// This is all DEL, CHECK and GC need, so they work even when the ranges of the
/// config no longer parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreDir(pub PathBuf);

impl StoreDir {
    /// Reads only the network name and `ipam.dataDir`.
    pub fn from_conf(conf: &NetConf) -> Result<StoreDir, CniError> {
        let name = conf.require_name()?;
        let ipam = conf.raw.get("ipam").and_then(Value::as_object);
        Ok(StoreDir(data_dir(ipam)?.join(name)))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

/// A validated host-local configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLocal {
    /// The network name (validated; it names the store directory).
    pub network: String,
    /// `ipam.dataDir`, or [`DEFAULT_DATA_DIR`].
    pub data_dir: PathBuf,
    /// `<data_dir>/<network>`.
    pub store: StoreDir,
    /// In order: `runtimeConfig.ipRanges`, the legacy range, `ipam.ranges`. The index is
    /// the range-set id of `last_reserved_ip.<id>`.
    pub range_sets: Vec<RangeSet>,
    /// For each range set, the requested address it must hand out, if any.
    pub requested: Vec<Option<IpAddr>>,
    /// `ipam.routes`, returned as they are.
    pub routes: Vec<Route>,
    /// `ipam.resolvConf`, if set.
    pub resolv_conf: Option<PathBuf>,
    /// The parsed resolvConf (empty when not set).
    pub dns: Dns,
}

fn config_err(msg: impl Into<String>) -> CniError {
    CniError::config(msg)
}

/// `obj[key]`, matched exactly, else case-insensitively; null counts as absent.
fn get<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key)
        .or_else(|| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
        .filter(|v| !v.is_null())
}

/// An optional string field; the empty string counts as absent (as Go's net.IP does).
fn opt_str<'a>(obj: &'a Map<String, Value>, key: &str, path: &str) -> Result<Option<&'a str>, CniError> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(config_err(format!("{path}.{key}: must be a string"))),
    }
}

fn data_dir(ipam: Option<&Map<String, Value>>) -> Result<PathBuf, CniError> {
    let dir = match ipam {
        Some(ipam) => opt_str(ipam, "dataDir", "ipam")?,
        None => None,
    };
    let Some(dir) = dir else {
        return Ok(PathBuf::from(DEFAULT_DATA_DIR));
    };
    if dir.contains('\0') {
        return Err(config_err(format!("ipam.dataDir: {dir:?} contains a NUL byte")));
    }
    if !dir.starts_with('/') {
        return Err(config_err(format!("ipam.dataDir: {dir:?} is not an absolute path")));
    }
    Ok(PathBuf::from(dir))
}

/// `ADDRESS/PREFIX`, strictly: both parts required, no abbreviated IPv4 forms.
pub(crate) fn parse_cidr(s: &str) -> Result<IpNetwork, String> {
    let Some((addr, prefix)) = s.split_once('/') else {
        return Err(format!("{s:?} is not in ADDRESS/PREFIX form"));
    };
    let ip: IpAddr = addr.parse().map_err(|_| format!("{addr:?} is not an IP address"))?;
    let bits = family_bits(ip.is_ipv4());
    let prefix = match prefix.parse::<u8>() {
        Ok(p) if prefix.bytes().all(|b| b.is_ascii_digit()) && p <= bits => p,
        _ => {
            return Err(format!("{s:?}: prefix {prefix:?} is not a number from 0 to {bits}"));
        }
    };
    IpNetwork::new(ip, prefix).map_err(|e| format!("{s:?}: {e}"))
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse::<IpAddr>().map_err(|_| format!("{s:?} is not an IP address"))
}

fn family_name(v4: bool) -> &'static str {
    if v4 { "IPv4" } else { "IPv6" }
}

/// One range object: validation and defaults of §2.2.
fn parse_range(v: &Value, path: &str) -> Result<Range, CniError> {
    let obj = v.as_object().ok_or_else(|| config_err(format!("{path}: must be an object")))?;
    let subnet = opt_str(obj, "subnet", path)?.ok_or_else(|| config_err(format!("{path}.subnet: missing")))?;
    let subnet = parse_cidr(subnet).map_err(|e| config_err(format!("{path}.subnet: {e}")))?;
    let v4 = subnet.is_ipv4();
    let bits = family_bits(v4);
    let prefix = subnet.prefix();
    if prefix > bits - 2 {
        return Err(config_err(format!(
            "{path}.subnet: {subnet} is too small to allocate from (the prefix must be /{} or shorter)",
            bits - 2
        )));
    }
    if prefix == 0 {
        return Err(config_err(format!(
            "{path}.subnet: {subnet} is the whole address space, not a network to allocate from"
        )));
    }
    let host = host_mask(bits, prefix);
    let net = to_num(subnet.ip());
    if net & host != 0 {
        return Err(config_err(format!(
            "{path}.subnet: {subnet} has host bits set; the network address is {}/{prefix}",
            from_num(v4, net & !host)
        )));
    }
    let last = net | host;
    // prefix <= bits-2, so the subnet has at least 4 addresses: net+1 and last-1 exist.
    let in_subnet = |ip: IpAddr| ip.is_ipv4() == v4 && (net..=last).contains(&to_num(ip));
    let addr = |key: &str| -> Result<Option<IpAddr>, CniError> {
        let Some(s) = opt_str(obj, key, path)? else {
            return Ok(None);
        };
        let ip = parse_ip(s).map_err(|e| config_err(format!("{path}.{key}: {e}")))?;
        if ip.is_ipv4() != v4 {
            return Err(config_err(format!(
                "{path}.{key}: {ip} is not an {} address like subnet {subnet}",
                family_name(v4)
            )));
        }
        Ok(Some(ip))
    };
    // A gateway outside the subnet is allowed, as in the reference: ptp reaches it through
    // a host route on the container's link (an on-link gateway such as 169.254.1.1).
    let gateway = addr("gateway")?.unwrap_or(from_num(v4, net + 1));
    let range_start = match addr("rangeStart")? {
        Some(ip) if !in_subnet(ip) => {
            return Err(config_err(format!("{path}.rangeStart: {ip} is not in subnet {subnet}")));
        }
        Some(ip) => ip,
        None => from_num(v4, net + 1),
    };
    let range_end = match addr("rangeEnd")? {
        Some(ip) if !in_subnet(ip) => {
            return Err(config_err(format!("{path}.rangeEnd: {ip} is not in subnet {subnet}")));
        }
        Some(ip) => ip,
        None if v4 => from_num(v4, last - 1),
        None => from_num(v4, last),
    };
    if to_num(range_start) > to_num(range_end) {
        return Err(config_err(format!("{path}.rangeStart: {range_start} is after rangeEnd {range_end}")));
    }
    Ok(Range { subnet, range_start, range_end, gateway, path: path.to_string() })
}

fn parse_range_set(v: &Value, label: &str) -> Result<RangeSet, CniError> {
    let list = v.as_array().ok_or_else(|| config_err(format!("{label}: must be a list of ranges")))?;
    if list.is_empty() {
        return Err(config_err(format!("{label}: empty range set")));
    }
    let mut ranges = Vec::with_capacity(list.len());
    for (i, r) in list.iter().enumerate() {
        let r = parse_range(r, &format!("{label}[{i}]"))?;
        if let Some(first) = ranges.first().filter(|f: &&Range| f.is_ipv4() != r.is_ipv4()) {
            return Err(config_err(format!(
                "{}.subnet: {} mixes address families with {} ({}) in one range set",
                r.path, r.subnet, first.path, first.subnet
            )));
        }
        ranges.push(r);
    }
    Ok(RangeSet { label: label.to_string(), ranges })
}

fn parse_range_sets(v: &Value, label: &str, out: &mut Vec<RangeSet>) -> Result<(), CniError> {
    let sets = v.as_array().ok_or_else(|| config_err(format!("{label}: must be a list of range sets")))?;
    for (i, set) in sets.iter().enumerate() {
        out.push(parse_range_set(set, &format!("{label}[{i}]"))?);
    }
    Ok(())
}

/// No two ranges may share an address, within a set or across sets. Sorting keeps this
/// O(n log n) whatever the config size: once sorted, ranges are disjoint exactly when
/// each starts after the end of the one before it (of the same family).
fn check_overlaps(sets: &[RangeSet]) -> Result<(), CniError> {
    let mut all: Vec<&Range> = sets.iter().flat_map(|s| s.ranges.iter()).collect();
    all.sort_by_key(|r| (r.is_ipv4(), r.start(), r.end()));
    let mut prev: Option<&Range> = None;
    for r in all {
        match prev {
            Some(w) if w.is_ipv4() == r.is_ipv4() && r.start() <= w.end() => {
                return Err(config_err(format!(
                    "{} ({r} in {}) overlaps {} ({w} in {})",
                    r.path, r.subnet, w.path, w.subnet
                )));
            }
            _ => prev = Some(r),
        }
    }
    Ok(())
}

/// `ip` or `ip/prefix` (the prefix is checked, then ignored).
fn parse_requested(s: &str) -> Result<IpAddr, String> {
    let ip = if s.contains('/') { parse_cidr(s)?.ip() } else { parse_ip(s)? };
    Ok(canonical_ip(ip))
}

/// The requested addresses with where each came from, in order, without duplicates.
fn requested_ips(conf: &NetConf, args: &CniArgs) -> Result<Vec<(IpAddr, String)>, CniError> {
    let mut out: Vec<(IpAddr, String)> = Vec::new();
    let mut push = |ip: IpAddr, source: String| {
        if !out.iter().any(|(have, _)| *have == ip) {
            out.push((ip, source));
        }
    };
    if let Some(s) = args.get("IP").filter(|s| !s.is_empty()) {
        let ip = parse_requested(s).map_err(|e| config_err(format!("CNI_ARGS IP: {e}")))?;
        push(ip, "CNI_ARGS IP".to_string());
    }
    let lists = [("args.cni.ips", conf.args_cni("ips")), ("runtimeConfig.ips", conf.runtime_config.get("ips"))];
    for (source, list) in lists {
        let list = match list {
            None | Some(Value::Null) => continue,
            Some(Value::Array(list)) => list,
            Some(_) => return Err(config_err(format!("{source}: must be a list of addresses"))),
        };
        for (i, v) in list.iter().enumerate() {
            let s = v.as_str().ok_or_else(|| config_err(format!("{source}[{i}]: must be a string")))?;
            let ip = parse_requested(s).map_err(|e| config_err(format!("{source}[{i}]: {e}")))?;
            push(ip, format!("{source}[{i}]"));
        }
    }
    Ok(out)
}

/// Each range set takes the first requested address inside it; any left over is an error,
/// found here, before anything is reserved.
fn place_requested(sets: &[RangeSet], requested: &[(IpAddr, String)]) -> Result<Vec<Option<IpAddr>>, CniError> {
    let mut used = vec![false; requested.len()];
    let mut placed = vec![None; sets.len()];
    for (si, set) in sets.iter().enumerate() {
        let Some(k) = (0..requested.len()).find(|&k| !used[k] && set.contains(requested[k].0)) else {
            continue;
        };
        used[k] = true;
        let (ip, source) = &requested[k];
        if let Some(r) = set.range_for(*ip).filter(|r| r.gateway == *ip) {
            return Err(config_err(format!("{source}: requested IP {ip} is the gateway of {}", r.path)));
        }
        placed[si] = Some(*ip);
    }
    if let Some(k) = used.iter().position(|u| !u) {
        let (ip, source) = &requested[k];
        let msg = match sets.iter().position(|s| s.contains(*ip)) {
            Some(si) => format!(
                "{source}: requested IP {ip} cannot be placed: range set {} already takes requested IP {}",
                sets[si].label,
                placed[si].map(|p| p.to_string()).unwrap_or_default()
            ),
            None => format!("{source}: requested IP {ip} is not in any range set"),
        };
        return Err(config_err(msg));
    }
    Ok(placed)
}

fn parse_routes(v: Option<&Value>) -> Result<Vec<Route>, CniError> {
    let list = match v {
        None => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(config_err("ipam.routes: must be a list of routes")),
    };
    let mut routes = Vec::with_capacity(list.len());
    for (i, r) in list.iter().enumerate() {
        let path = format!("ipam.routes[{i}]");
        let obj = r.as_object().ok_or_else(|| config_err(format!("{path}: must be an object")))?;
        let dst = opt_str(obj, "dst", &path)?.ok_or_else(|| config_err(format!("{path}.dst: missing")))?;
        let dst = parse_cidr(dst).map_err(|e| config_err(format!("{path}.dst: {e}")))?;
        let gw = opt_str(obj, "gw", &path)?
            .map(|s| parse_ip(s).map_err(|e| config_err(format!("{path}.gw: {e}"))))
            .transpose()?;
        let mut route = Route::new(dst, gw);
        let number = |key: &str| -> Result<Option<u32>, CniError> {
            match get(obj, key) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .map(Some)
                    .ok_or_else(|| config_err(format!("{path}.{key}: must be a number from 0 to {}", u32::MAX))),
            }
        };
        route.mtu = number("mtu")?;
        route.advmss = number("advmss")?;
        route.priority = number("priority")?;
        route.table = number("table")?;
        route.scope = number("scope")?;
        routes.push(route);
    }
    Ok(routes)
}

/// Parses a resolv.conf: `nameserver`, `domain`, `search` and `options` lines; lines
/// starting with `#` or `;` are comments; other keywords are ignored.
pub fn parse_resolv_conf(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(key), rest) = (words.next(), words) else {
            continue;
        };
        let rest: Vec<String> = rest.map(str::to_string).collect();
        let Some(first) = rest.first().cloned() else {
            continue;
        };
        match key {
            "nameserver" => dns.nameservers.push(first),
            "domain" => dns.domain = first,
            "search" => dns.search.extend(rest),
            "options" => dns.options.extend(rest),
            _ => {}
        }
    }
    dns
}

/// Reads and parses `path`; any failure (a missing file included) is a config error.
pub fn read_resolv_conf(path: &Path) -> Result<Dns, CniError> {
    let err = |e: String| config_err(format!("ipam.resolvConf: {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_RESOLV_CONF_BYTES + 1).read_to_end(&mut bytes).map_err(|e| err(e.to_string()))?;
    if bytes.len() as u64 > MAX_RESOLV_CONF_BYTES {
        return Err(err(format!("larger than {MAX_RESOLV_CONF_BYTES} bytes")));
    }
    Ok(parse_resolv_conf(&String::from_utf8_lossy(&bytes)))
}

impl HostLocal {
    /// Full parse for ADD/CHECK/STATUS: `conf.raw["ipam"]` holds ranges, the legacy
    /// subnet, routes, dataDir and resolvConf; requested IPs come from CNI_ARGS `IP=`
    /// (`args`), `args.cni.ips` and `runtimeConfig.ips`; `runtimeConfig.ipRanges`
    /// range sets go first. Every error is code 7 and names the field.
    pub fn from_conf(conf: &NetConf, args: &CniArgs) -> Result<HostLocal, CniError> {
        let network = conf.require_name()?.to_string();
        let ipam = match conf.raw.get("ipam") {
            Some(Value::Object(ipam)) => ipam,
            _ => return Err(config_err("ipam: missing")),
        };
        let data_dir = data_dir(Some(ipam))?;

        let mut range_sets = Vec::new();
        if let Some(v) = conf.runtime_config.get("ipRanges").filter(|v| !v.is_null()) {
            parse_range_sets(v, "runtimeConfig.ipRanges", &mut range_sets)?;
        }
        // The legacy single range counts only when `subnet` is set, as in the reference.
        if opt_str(ipam, "subnet", "ipam")?.is_some() {
            let legacy = parse_range(&Value::Object(ipam.clone()), "ipam")?;
            range_sets.push(RangeSet { label: "ipam".to_string(), ranges: vec![legacy] });
        }
        if let Some(v) = get(ipam, "ranges") {
            parse_range_sets(v, "ipam.ranges", &mut range_sets)?;
        }
        if range_sets.is_empty() {
            return Err(config_err("ipam: no IP ranges specified (set ipam.ranges or ipam.subnet)"));
        }
        let v4_sets = range_sets.iter().filter(|s| s.is_ipv4()).count();
        let v6_sets = range_sets.len() - v4_sets;
        if (v4_sets > 1 || v6_sets > 1) && conf.version < Version::V030 {
            return Err(config_err(format!(
                "ipam.ranges: cniVersion {} does not support more than 1 address per family (needs 0.3.0 or later)",
                conf.version
            )));
        }
        check_overlaps(&range_sets)?;

        let requested = place_requested(&range_sets, &requested_ips(conf, args)?)?;
        let routes = parse_routes(get(ipam, "routes"))?;
        let resolv_conf = opt_str(ipam, "resolvConf", "ipam")?.map(PathBuf::from);
        let dns = match &resolv_conf {
            Some(path) => read_resolv_conf(path)?,
            None => Dns::default(),
        };
        Ok(HostLocal {
            store: StoreDir(data_dir.join(&network)),
            network,
            data_dir,
            range_sets,
            requested,
            routes,
            resolv_conf,
            dns,
        })
    }
}
