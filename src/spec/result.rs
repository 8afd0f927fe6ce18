//! CNI results: one internal model (the 1.1.0 shape) serialized per requested version,
//! with the reference's lossy conversion rules (spec §"Result", libcni convert.go).

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::spec::error::CniError;
use crate::spec::version::Version;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
    #[serde(default, rename = "socketPath", skip_serializing_if = "String::is_empty")]
    pub socket_path: String,
    #[serde(default, rename = "pciID", skip_serializing_if = "String::is_empty")]
    pub pci_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    pub address: IpNetwork,
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`; IPAM plugins leave it unset.
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNetwork,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

impl Route {
    pub fn new(dst: IpNetwork, gw: Option<IpAddr>) -> Route {
        Route { dst, gw, mtu: None, advmss: None, priority: None, table: None, scope: None }
    }

    pub fn is_default(&self) -> bool {
        self.dst.prefix() == 0
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self == &Dns::default()
    }
}

/// A result in ipcni's internal (1.1.0) model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

fn parse_net(s: &str, field: &str) -> Result<IpNetwork, CniError> {
    s.parse::<IpNetwork>().map_err(|e| CniError::decode(format!("result: {field} {s:?}: {e}")))
}

fn parse_ip(s: &str, field: &str) -> Result<IpAddr, CniError> {
    s.parse::<IpAddr>().map_err(|e| CniError::decode(format!("result: {field} {s:?}: {e}")))
}

fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn parse_routes(v: Option<&Value>) -> Result<Vec<Route>, CniError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| CniError::decode(format!("result: routes: {e}"))),
    }
}

impl CniResult {
    /// Parses a result printed in `version` (e.g. a prevResult, or a delegated IPAM
    /// plugin's stdout) into the internal model. `version` is the result's own
    /// `cniVersion` when it has one, else the config's.
    pub fn parse(value: &Value, fallback: Version) -> Result<CniResult, CniError> {
        let obj = value.as_object().ok_or_else(|| CniError::decode("result: expected a JSON object"))?;
        let version = match obj.get("cniVersion").and_then(Value::as_str) {
            Some(s) if !s.is_empty() => Version::parse(s)
                .ok_or_else(|| CniError::incompatible_version(format!("result: unsupported cniVersion {s:?}")))?,
            _ => fallback,
        };
        let dns = match obj.get("dns") {
            None | Some(Value::Null) => Dns::default(),
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| CniError::decode(format!("result: dns: {e}")))?,
        };
        if version.is_legacy_result() {
            let mut r = CniResult { dns, ..CniResult::default() };
            for key in ["ip4", "ip6"] {
                let Some(ip) = obj.get(key).and_then(Value::as_object) else { continue };
                let address = parse_net(str_field(ip, "ip").unwrap_or(""), &format!("{key}.ip"))?;
                let gateway = str_field(ip, "gateway").map(|g| parse_ip(g, &format!("{key}.gateway"))).transpose()?;
                r.ips.push(IpConfig { address, gateway, interface: None });
                r.routes.extend(parse_routes(ip.get("routes"))?);
            }
            return Ok(r);
        }
        let interfaces = match obj.get("interfaces") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => {
                serde_json::from_value(v.clone()).map_err(|e| CniError::decode(format!("result: interfaces: {e}")))?
            }
        };
        let mut ips = Vec::new();
        if let Some(list) = obj.get("ips").and_then(Value::as_array) {
            for (i, ip) in list.iter().enumerate() {
                let ip =
                    ip.as_object().ok_or_else(|| CniError::decode(format!("result: ips[{i}] is not an object")))?;
                let address = parse_net(str_field(ip, "address").unwrap_or(""), "ips.address")?;
                let gateway = str_field(ip, "gateway").map(|g| parse_ip(g, "ips.gateway")).transpose()?;
                let interface = match ip.get("interface") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(
                        v.as_u64()
                            .ok_or_else(|| CniError::decode(format!("result: ips[{i}].interface is not an index")))?
                            as usize,
                    ),
                };
                ips.push(IpConfig { address, gateway, interface });
            }
        }
        Ok(CniResult { interfaces, ips, routes: parse_routes(obj.get("routes"))?, dns })
    }

    /// The result as JSON in `version`, applying the reference's lossy conversions.
    pub fn to_value(&self, version: Version) -> Result<Value, CniError> {
        let mut out = Map::new();
        out.insert("cniVersion".into(), version.as_str().into());
        if version.is_legacy_result() {
            let first = |v4: bool| self.ips.iter().find(|ip| ip.address.is_ipv4() == v4);
            if first(true).is_none() && first(false).is_none() {
                return Err(CniError::incompatible_version(format!(
                    "cannot convert result to {version}: no valid IP addresses"
                )));
            }
            for (key, v4) in [("ip4", true), ("ip6", false)] {
                let Some(ip) = first(v4) else { continue };
                let mut o = Map::new();
                o.insert("ip".into(), ip.address.to_string().into());
                if let Some(gw) = ip.gateway {
                    o.insert("gateway".into(), gw.to_string().into());
                }
                let routes: Vec<Value> = self
                    .routes
                    .iter()
                    .filter(|r| r.dst.is_ipv4() == v4)
                    .map(|r| {
                        let mut ro = json!({"dst": r.dst.to_string()});
                        if let Some(gw) = r.gw {
                            ro["gw"] = gw.to_string().into();
                        }
                        ro
                    })
                    .collect();
                if !routes.is_empty() {
                    o.insert("routes".into(), routes.into());
                }
                out.insert(key.into(), o.into());
            }
            out.insert("dns".into(), serde_json::to_value(&self.dns).expect("dns serializes"));
            return Ok(out.into());
        }
        if !self.interfaces.is_empty() {
            let ifs: Vec<Value> = self
                .interfaces
                .iter()
                .map(|i| {
                    let mut i = i.clone();
                    if version < Version::V110 {
                        i.mtu = None;
                        i.socket_path.clear();
                        i.pci_id.clear();
                    }
                    serde_json::to_value(i).expect("interface serializes")
                })
                .collect();
            out.insert("interfaces".into(), ifs.into());
        }
        if !self.ips.is_empty() {
            let ips: Vec<Value> = self
                .ips
                .iter()
                .map(|ip| {
                    let mut o = Map::new();
                    if version.ips_carry_version() {
                        let v = if ip.address.is_ipv4() { "4" } else { "6" };
                        o.insert("version".into(), v.into());
                    }
                    o.insert("address".into(), ip.address.to_string().into());
                    if let Some(gw) = ip.gateway {
                        o.insert("gateway".into(), gw.to_string().into());
                    }
                    if let Some(idx) = ip.interface {
                        o.insert("interface".into(), idx.into());
                    }
                    Value::Object(o)
                })
                .collect();
            out.insert("ips".into(), ips.into());
        }
        if !self.routes.is_empty() {
            out.insert("routes".into(), serde_json::to_value(&self.routes).expect("routes"));
        }
        // The Go 0.4.0 type always prints "dns": {}; the 1.x type leaves it out when empty.
        if !self.dns.is_empty() || version <= Version::V040 {
            out.insert("dns".into(), serde_json::to_value(&self.dns).expect("dns serializes"));
        }
        Ok(out.into())
    }

    /// Index of the interface named `name` that lives in a sandbox, if any.
    pub fn sandbox_interface(&self, name: &str) -> Option<usize> {
        self.interfaces.iter().position(|i| i.name == name && !i.sandbox.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface { name: "cni0".into(), mac: "0a:58:0a:01:00:01".into(), ..Default::default() },
                Interface {
                    name: "eth0".into(),
                    mac: "02:00:00:00:00:05".into(),
                    mtu: Some(1400),
                    sandbox: "/run/netns/blue".into(),
                    ..Default::default()
                },
            ],
            ips: vec![
                IpConfig {
                    address: "10.1.0.5/16".parse().unwrap(),
                    gateway: Some("10.1.0.1".parse().unwrap()),
                    interface: Some(1),
                },
                IpConfig { address: "fd00::5/64".parse().unwrap(), gateway: None, interface: Some(1) },
            ],
            routes: vec![
                Route::new("0.0.0.0/0".parse().unwrap(), None),
                Route::new("::/0".parse().unwrap(), Some("fd00::1".parse().unwrap())),
            ],
            dns: Dns { nameservers: vec!["10.1.0.1".into()], ..Default::default() },
        }
    }

    #[test]
    fn v040_carries_ip_version_and_drops_mtu() {
        let v = sample().to_value(Version::V040).unwrap();
        assert_eq!(v["ips"][0]["version"], "4");
        assert_eq!(v["ips"][1]["version"], "6");
        assert!(v["interfaces"][1].get("mtu").is_none());
        let v = sample().to_value(Version::V110).unwrap();
        assert!(v["ips"][0].get("version").is_none());
        assert_eq!(v["interfaces"][1]["mtu"], 1400);
    }

    #[test]
    fn legacy_keeps_first_address_per_family_and_splits_routes() {
        let v = sample().to_value(Version::V020).unwrap();
        assert_eq!(v["ip4"]["ip"], "10.1.0.5/16");
        assert_eq!(v["ip4"]["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(v["ip6"]["routes"][0]["gw"], "fd00::1");
        assert!(v.get("interfaces").is_none());
    }

    #[test]
    fn legacy_conversion_without_ips_fails_with_code_1() {
        let r = CniResult::default();
        assert_eq!(r.to_value(Version::V010).unwrap_err().code, 1);
    }

    #[test]
    fn every_version_round_trips_through_parse() {
        for v in Version::ALL {
            let printed = sample().to_value(v).unwrap();
            let back = CniResult::parse(&printed, Version::V010).unwrap();
            let again = back.to_value(v).unwrap();
            assert_eq!(printed, again, "version {v}");
        }
    }

    #[test]
    fn parse_uses_fallback_version_when_result_has_none() {
        let v = json!({"ip4": {"ip": "10.0.0.2/24", "gateway": "10.0.0.1"}});
        let r = CniResult::parse(&v, Version::V020).unwrap();
        assert_eq!(r.ips[0].address.to_string(), "10.0.0.2/24");
        assert_eq!(r.ips[0].gateway.unwrap().to_string(), "10.0.0.1");
    }
}
