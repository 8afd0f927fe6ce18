//! static IPAM (reference §2.6): hands out the addresses the configuration names, with
//! their gateways, plus routes and DNS. No state: DEL and GC do nothing.
//!
//! Addresses come from, in order, each source replacing or extending the one before:
//! `ipam.addresses`; CNI_ARGS `IP=cidr[,cidr…]` (appended) and `GATEWAY=ip[,ip…]` (the
//! gateway of every address whose subnet contains it); `args.cni.ips` (replaces all);
//! `runtimeConfig.ips` (replaces all again). So capability > args > CNI_ARGS > config.
//!
//! Keys are matched exactly first, then ASCII-case-insensitively, as Go's JSON decoder
//! does, so configs written for the reference plugin keep working.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde_json::{Map, Value};

use crate::delegate::BuiltinIpam;
use crate::skel::{Cx, Plugin};
use crate::spec::{CniArgs, CniEnv, CniError, CniResult, Dns, IpConfig, NetConf, Route, Version};

pub struct StaticIpam;

/// One address to hand out, with where it came from (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticAddress {
    pub address: IpNetwork,
    pub gateway: Option<IpAddr>,
    pub source: String,
}

/// The validated static configuration, all sources applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticConf {
    pub addresses: Vec<StaticAddress>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

fn err(msg: impl Into<String>) -> CniError {
    CniError::config(format!("static: {}", msg.into()))
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
        Some(_) => Err(err(format!("{path}.{key}: must be a string"))),
    }
}

/// `ADDRESS/PREFIX`, both parts required; the host part is kept (10.1.1.5/24).
fn parse_cidr(s: &str) -> Result<IpNetwork, String> {
    let Some((addr, prefix)) = s.split_once('/') else {
        return Err(format!("{s:?} is not in ADDRESS/PREFIX (CIDR) form"));
    };
    let ip: IpAddr = addr.parse().map_err(|_| format!("{addr:?} is not an IP address"))?;
    let bits = if ip.is_ipv4() { 32 } else { 128 };
    match prefix.parse::<u8>() {
        Ok(p) if prefix.bytes().all(|b| b.is_ascii_digit()) && p <= bits => {
            IpNetwork::new(ip, p).map_err(|e| format!("{s:?}: {e}"))
        }
        _ => Err(format!("{s:?}: prefix {prefix:?} is not a number from 0 to {bits}")),
    }
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse::<IpAddr>().map_err(|_| format!("{s:?} is not an IP address"))
}

fn parse_addresses(v: Option<&Value>) -> Result<Vec<StaticAddress>, CniError> {
    let list = match v {
        None => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(err("ipam.addresses: must be a list of {\"address\", \"gateway\"} objects")),
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, a) in list.iter().enumerate() {
        let path = format!("ipam.addresses[{i}]");
        let obj = a.as_object().ok_or_else(|| err(format!("{path}: must be an object")))?;
        let address = opt_str(obj, "address", &path)?.ok_or_else(|| err(format!("{path}.address: missing")))?;
        let address = parse_cidr(address).map_err(|e| err(format!("{path}.address: {e}")))?;
        let gateway = opt_str(obj, "gateway", &path)?
            .map(|g| parse_ip(g).map_err(|e| err(format!("{path}.gateway: {e}"))))
            .transpose()?;
        out.push(StaticAddress { address, gateway, source: path });
    }
    Ok(out)
}

fn parse_routes(v: Option<&Value>) -> Result<Vec<Route>, CniError> {
    let list = match v {
        None => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(err("ipam.routes: must be a list of routes")),
    };
    let mut routes = Vec::with_capacity(list.len());
    for (i, r) in list.iter().enumerate() {
        let path = format!("ipam.routes[{i}]");
        let obj = r.as_object().ok_or_else(|| err(format!("{path}: must be an object")))?;
        let dst = opt_str(obj, "dst", &path)?.ok_or_else(|| err(format!("{path}.dst: missing")))?;
        let dst = parse_cidr(dst).map_err(|e| err(format!("{path}.dst: {e}")))?;
        let gw =
            opt_str(obj, "gw", &path)?.map(|s| parse_ip(s).map_err(|e| err(format!("{path}.gw: {e}")))).transpose()?;
        if let Some(gw) = gw.filter(|g| g.is_ipv4() != dst.is_ipv4()) {
            return Err(err(format!("{path}.gw: {gw} is not of the address family of dst {dst}")));
        }
        let mut route = Route::new(dst, gw);
        let number = |key: &str| -> Result<Option<u32>, CniError> {
            match get(obj, key) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .map(Some)
                    .ok_or_else(|| err(format!("{path}.{key}: must be a number from 0 to {}", u32::MAX))),
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

/// A list of CIDR strings from `args.cni.ips` or `runtimeConfig.ips`; None when absent
/// or empty (an empty list replaces nothing, as in the reference).
fn cidr_list(source: &str, v: Option<&Value>) -> Result<Option<Vec<StaticAddress>>, CniError> {
    let list = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(list)) if list.is_empty() => return Ok(None),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(err(format!("{source}: must be a list of CIDR strings"))),
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let s = v.as_str().ok_or_else(|| err(format!("{source}[{i}]: must be a string")))?;
        let address = parse_cidr(s.trim()).map_err(|e| err(format!("{source}[{i}]: {e}")))?;
        out.push(StaticAddress { address, gateway: None, source: format!("{source}[{i}]") });
    }
    Ok(Some(out))
}

impl StaticConf {
    /// Full parse for ADD, CHECK and STATUS; every error is code 7 and names the field.
    pub fn from_conf(conf: &NetConf, args: &CniArgs) -> Result<StaticConf, CniError> {
        let ipam = match conf.raw.get("ipam") {
            Some(Value::Object(ipam)) => ipam,
            _ => return Err(err("\"ipam\" is missing")),
        };
        let mut addresses = parse_addresses(get(ipam, "addresses"))?;

        if let Some(ips) = args.get("IP").filter(|s| !s.is_empty()) {
            for (i, item) in ips.split(',').enumerate() {
                let address = parse_cidr(item.trim()).map_err(|e| err(format!("CNI_ARGS IP: {e}")))?;
                addresses.push(StaticAddress { address, gateway: None, source: format!("CNI_ARGS IP[{i}]") });
            }
        }
        if let Some(gws) = args.get("GATEWAY").filter(|s| !s.is_empty()) {
            for item in gws.split(',') {
                let gw = parse_ip(item.trim()).map_err(|e| err(format!("CNI_ARGS GATEWAY: {e}")))?;
                let mut matched = false;
                for a in addresses.iter_mut().filter(|a| a.address.contains(gw)) {
                    a.gateway = Some(gw);
                    matched = true;
                }
                if !matched {
                    crate::exec::log(&format!("static: CNI_ARGS GATEWAY {gw} is in no address's subnet; ignored"));
                }
            }
        }
        if let Some(list) = cidr_list("args.cni.ips", conf.args_cni("ips"))? {
            addresses = list;
        }
        if let Some(list) = cidr_list("runtimeConfig.ips", conf.runtime_config.get("ips"))? {
            addresses = list;
        }

        for (i, a) in addresses.iter().enumerate() {
            if let Some(gw) = a.gateway.filter(|g| g.is_ipv4() != a.address.is_ipv4()) {
                return Err(err(format!("{}: gateway {gw} is not of the address family of {}", a.source, a.address)));
            }
            if let Some(first) = addresses[..i].iter().find(|b| b.address.ip() == a.address.ip()) {
                return Err(err(format!(
                    "{}: address {} is also given by {} ({})",
                    a.source,
                    a.address.ip(),
                    first.source,
                    first.address
                )));
            }
        }
        let v4 = addresses.iter().filter(|a| a.address.is_ipv4()).count();
        let v6 = addresses.len() - v4;
        if (v4 > 1 || v6 > 1) && conf.version < Version::V030 {
            return Err(err(format!(
                "cniVersion {} does not support more than 1 address per family (needs 0.3.0 or later)",
                conf.version
            )));
        }

        let routes = parse_routes(get(ipam, "routes"))?;
        let dns = match get(ipam, "dns") {
            None => Dns::default(),
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| err(format!("ipam.dns: {e}")))?,
        };
        Ok(StaticConf { addresses, routes, dns })
    }

    /// The ADD result: the addresses with their gateways, the routes, the DNS settings.
    pub fn result(&self) -> CniResult {
        CniResult {
            interfaces: Vec::new(),
            ips: self
                .addresses
                .iter()
                .map(|a| IpConfig { address: a.address, gateway: a.gateway, interface: None })
                .collect(),
            routes: self.routes.clone(),
            dns: self.dns.clone(),
        }
    }

    /// CHECK: every configured address is in `prev` with the same prefix and, when one is
    /// configured, the same gateway.
    pub fn check(&self, prev: &CniResult) -> Result<(), CniError> {
        for a in &self.addresses {
            let Some(found) = prev.ips.iter().find(|ip| ip.address.ip() == a.address.ip()) else {
                return Err(CniError::check(format!(
                    "static: address {} ({}) is not in prevResult",
                    a.address, a.source
                )));
            };
            if found.address.prefix() != a.address.prefix() {
                return Err(CniError::check(format!(
                    "static: prevResult has {}, the configuration {} ({})",
                    found.address, a.address, a.source
                )));
            }
            if let Some(gw) = a.gateway
                && found.gateway != Some(gw)
            {
                let had = found.gateway.map(|g| g.to_string()).unwrap_or_else(|| "no gateway".into());
                return Err(CniError::check(format!(
                    "static: prevResult gives {} gateway {had}, the configuration {gw} ({})",
                    a.address, a.source
                )));
            }
        }
        Ok(())
    }
}

impl BuiltinIpam for StaticIpam {
    fn add(&self, env: &CniEnv, conf: &NetConf, _dry_run: bool) -> Result<CniResult, CniError> {
        Ok(StaticConf::from_conf(conf, &env.args)?.result())
    }
    /// Nothing was allocated, so nothing is released (and a config that no longer
    /// parses cannot make DEL fail).
    fn del(&self, _env: &CniEnv, _conf: &NetConf) -> Result<(), CniError> {
        Ok(())
    }
    fn check(&self, env: &CniEnv, conf: &NetConf) -> Result<(), CniError> {
        let sc = StaticConf::from_conf(conf, &env.args)?;
        let prev = conf.prev_result.as_ref().ok_or_else(|| err("CHECK requires prevResult"))?;
        sc.check(prev)
    }
    /// Ready whenever the configuration is valid.
    fn status(&self, env: &CniEnv, conf: &NetConf) -> Result<(), CniError> {
        StaticConf::from_conf(conf, &env.args).map(|_| ())
    }
    fn gc(&self, _env: &CniEnv, _conf: &NetConf) -> Result<(), CniError> {
        Ok(())
    }
}

impl Plugin for StaticIpam {
    fn name(&self) -> &'static str {
        "static"
    }
    fn needs_ip(&self) -> bool {
        false
    }
    fn about(&self) -> &'static str {
        "CNI static IPAM plugin (ipcni)"
    }
    fn add(&self, cx: &mut Cx) -> Result<CniResult, CniError> {
        BuiltinIpam::add(self, cx.env, cx.conf, !cx.exec.is_real())
    }
    fn del(&self, cx: &mut Cx) -> Result<(), CniError> {
        BuiltinIpam::del(self, cx.env, cx.conf)
    }
    fn check(&self, cx: &mut Cx) -> Result<(), CniError> {
        BuiltinIpam::check(self, cx.env, cx.conf)
    }
    fn status(&self, cx: &mut Cx) -> Result<(), CniError> {
        BuiltinIpam::status(self, cx.env, cx.conf)
    }
    fn gc(&self, cx: &mut Cx) -> Result<(), CniError> {
        BuiltinIpam::gc(self, cx.env, cx.conf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(conf: &str, args: &str) -> Result<StaticConf, CniError> {
        StaticConf::from_conf(&NetConf::parse(conf.as_bytes()).unwrap(), &CniArgs::parse(args).unwrap())
    }

    fn addrs(c: &StaticConf) -> Vec<String> {
        c.addresses
            .iter()
            .map(|a| match a.gateway {
                Some(g) => format!("{} gw {g}", a.address),
                None => a.address.to_string(),
            })
            .collect()
    }

    const BASE: &str = r#"{"cniVersion":"1.0.0","name":"n","type":"bridge","ipam":{"type":"static",
        "addresses":[{"address":"10.10.0.5/24","gateway":"10.10.0.1"},{"address":"fd00::5/64"}],
        "routes":[{"dst":"0.0.0.0/0"},{"dst":"192.168.0.0/16","gw":"10.10.0.254","priority":10}],
        "dns":{"nameservers":["10.10.0.53"],"search":["example.org"]}}}"#;

    #[test]
    fn config_addresses_routes_and_dns() {
        let c = parse(BASE, "").unwrap();
        assert_eq!(addrs(&c), ["10.10.0.5/24 gw 10.10.0.1", "fd00::5/64"]);
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.routes[1].priority, Some(10));
        assert_eq!(c.dns.nameservers, ["10.10.0.53"]);
        let r = c.result();
        assert_eq!(r.ips.len(), 2);
        assert!(r.ips.iter().all(|ip| ip.interface.is_none()));
    }

    #[test]
    fn keys_match_case_insensitively_like_go() {
        let c = parse(
            r#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":"static","Addresses":[{"Address":"10.1.0.2/16","Gateway":"10.1.0.1"}]}}"#,
            "",
        )
        .unwrap();
        assert_eq!(addrs(&c), ["10.1.0.2/16 gw 10.1.0.1"]);
    }

    #[test]
    fn cni_args_append_and_set_gateways_by_subnet() {
        let c = parse(BASE, "IgnoreUnknown=1;IP=10.20.0.7/24, 10.30.0.8/16;GATEWAY=10.20.0.1,fd00::1").unwrap();
        assert_eq!(
            addrs(&c),
            ["10.10.0.5/24 gw 10.10.0.1", "fd00::5/64 gw fd00::1", "10.20.0.7/24 gw 10.20.0.1", "10.30.0.8/16"]
        );
    }

    #[test]
    fn args_replace_cni_args_and_runtime_config_replaces_args() {
        let with_args = BASE.replacen('{', r#"{"args":{"cni":{"ips":["10.40.0.2/24"]}},"#, 1);
        let c = parse(&with_args, "IP=10.20.0.7/24").unwrap();
        assert_eq!(addrs(&c), ["10.40.0.2/24"]);
        let with_both = with_args.replacen('{', r#"{"runtimeConfig":{"ips":["10.50.0.2/24","fd50::2/64"]},"#, 1);
        let c = parse(&with_both, "IP=10.20.0.7/24").unwrap();
        assert_eq!(addrs(&c), ["10.50.0.2/24", "fd50::2/64"]);
        // An empty list replaces nothing.
        let empty = BASE.replacen('{', r#"{"runtimeConfig":{"ips":[]},"#, 1);
        assert_eq!(parse(&empty, "").unwrap().addresses.len(), 2);
    }

    #[test]
    fn more_than_one_address_per_family_needs_030() {
        let two_v4 = BASE.replace("1.0.0", "0.2.0");
        assert_eq!(parse(&two_v4, "").unwrap().addresses.len(), 2, "one per family is fine");
        let e = parse(&two_v4, "IP=10.20.0.7/24").unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("more than 1 address per family"), "{}", e.msg);
        assert!(parse(&BASE.replace("1.0.0", "0.3.0"), "IP=10.20.0.7/24").is_ok());
    }

    #[test]
    fn bad_input_is_code_7() {
        let cases = [
            (r#"{"cniVersion":"1.0.0","name":"n"}"#, ""),
            (r#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":"static","addresses":[{"address":"10.1.0.2"}]}}"#, ""),
            (
                r#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":"static","addresses":[{"address":"10.1.0.2/33"}]}}"#,
                "",
            ),
            (r#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":"static","addresses":[{"gateway":"10.1.0.1"}]}}"#, ""),
            (
                r#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":"static","addresses":[{"address":"10.1.0.2/24","gateway":"fd00::1"}]}}"#,
                "",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":"static","addresses":[{"address":"10.1.0.2/24","gateway":"x"}]}}"#,
                "",
            ),
            (r#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":"static","addresses":{}}}"#, ""),
            (r#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":"static","routes":[{"dst":"default"}]}}"#, ""),
            (r#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":"static","dns":{"nameservers":"x"}}}"#, ""),
            (r#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":"static"}}"#, "IP=10.1.0.2"),
            (r#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":"static"}}"#, "IP=10.1.0.2/24;GATEWAY=nope"),
            (r#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":"static"},"runtimeConfig":{"ips":"10.1.0.2/24"}}"#, ""),
            (r#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":"static"},"args":{"cni":{"ips":[7]}}}"#, ""),
            (BASE, "IP=10.10.0.5/16"),
        ];
        for (conf, args) in cases {
            let e = parse(conf, args).unwrap_err();
            assert_eq!(e.code, 7, "{conf} {args}: {}", e.msg);
        }
    }

    #[test]
    fn check_compares_addresses_and_gateways() {
        let c = parse(BASE, "").unwrap();
        let mut prev = c.result();
        assert!(c.check(&prev).is_ok());
        prev.ips[0].gateway = Some("10.10.0.2".parse().unwrap());
        assert_eq!(c.check(&prev).unwrap_err().code, crate::spec::code::CHECK_MISMATCH);
        let mut prev = c.result();
        prev.ips[0].address = "10.10.0.5/16".parse().unwrap();
        assert_eq!(c.check(&prev).unwrap_err().code, crate::spec::code::CHECK_MISMATCH);
        let mut prev = c.result();
        prev.ips.remove(1);
        assert_eq!(c.check(&prev).unwrap_err().code, crate::spec::code::CHECK_MISMATCH);
        // No configured gateway: any gateway in prevResult is fine.
        let mut prev = c.result();
        prev.ips[1].gateway = Some("fd00::1".parse().unwrap());
        assert!(c.check(&prev).is_ok());
    }
}
