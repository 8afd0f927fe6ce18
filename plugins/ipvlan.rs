//! ipvlan: an ipvlan device on a master, created from the host straight into the
//! container under a temporary name, renamed there to CNI_IFNAME. An ipvlan has no MAC
//! of its own (it shares the master's) and needs addresses: from IPAM, or, chained
//! without IPAM, from the prevResult (whose single interface is then also the default
//! master, as in the reference).

use serde::Deserialize;

use super::shared::sublink::{self, ExpectMaster, Master, Target};
use crate::plan::{IpvlanMode, LinkAdd, Plan};
use crate::skel::{Cx, Plugin};
use crate::spec::{CniError, CniResult, Dns, Interface};

pub struct Ipvlan;

const KIND: &str = "ipvlan";

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawConf {
    master: Option<String>,
    mode: Option<String>,
    mtu: Option<i64>,
    link_in_container: bool,
}

/// The validated ipvlan configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvlanConf {
    /// None: the prevResult's single interface when chained, else the device of the
    /// first default route.
    pub master: Option<String>,
    pub mode: IpvlanMode,
    pub mtu: Option<i64>,
    pub link_in_container: bool,
    pub has_ipam: bool,
}

pub fn parse_mode(s: Option<&str>) -> Result<IpvlanMode, CniError> {
    match s.unwrap_or("") {
        "" | "l2" => Ok(IpvlanMode::L2),
        "l3" => Ok(IpvlanMode::L3),
        "l3s" => Ok(IpvlanMode::L3s),
        other => Err(CniError::config(format!("ipvlan: unknown mode {other:?} (l2, l3 or l3s)"))),
    }
}

impl IpvlanConf {
    pub fn from_cx(cx: &Cx) -> Result<IpvlanConf, CniError> {
        let raw: RawConf = cx.conf.plugin()?;
        let master = sublink::master_name(KIND, raw.master)?;
        let mode = parse_mode(raw.mode.as_deref())?;
        sublink::mtu_shape(KIND, raw.mtu)?;
        Ok(IpvlanConf {
            master,
            mode,
            mtu: raw.mtu,
            link_in_container: raw.link_in_container,
            has_ipam: cx.conf.ipam_type.is_some(),
        })
    }
}

/// The ADD plan and its result. `ips` is the IPAM answer or the chained prevResult.
/// Pure: no I/O.
pub fn plan_add(
    conf: &IpvlanConf,
    target: &Target,
    master: &Master,
    ips: &CniResult,
    dns: Option<&Dns>,
) -> Result<(Plan, CniResult), CniError> {
    let mtu = sublink::mtu(KIND, conf.mtu, master)?;
    let iface = Interface {
        name: target.ifname.to_string(),
        mac: master.mac.clone(),
        mtu,
        sandbox: target.netns.display().to_string(),
        ..Interface::default()
    };
    let link = LinkAdd::Ipvlan {
        name: sublink::temp_name(KIND, target.network, target.id, target.ifname),
        master: master.name.clone(),
        mode: conf.mode,
        mtu,
        netns: (!conf.link_in_container).then(|| target.netns.to_path_buf()),
    };
    let mut plan = Plan::new();
    sublink::plan_create_and_rename(&mut plan, link, conf.link_in_container, target.netns, target.ifname);
    let result = sublink::plan_addresses(&mut plan, KIND, target.netns, target.ifname, iface, Some(ips), dns)?;
    Ok((plan, result))
}

/// The prevResult's addresses, when chained without IPAM.
fn chained_ips(cx: &Cx, conf: &IpvlanConf) -> Option<CniResult> {
    if conf.has_ipam {
        return None;
    }
    cx.conf.prev_result.clone().filter(|p| !p.ips.is_empty())
}

fn master_name(cx: &mut Cx, conf: &IpvlanConf, netns: &std::path::Path) -> Result<String, CniError> {
    if let Some(m) = &conf.master {
        return Ok(m.clone());
    }
    if let Some(prev) = &cx.conf.prev_result {
        return match prev.interfaces.as_slice() {
            [only] if !only.name.is_empty() => {
                crate::validate::ifname(&only.name)
                    .map_err(|e| CniError::config(format!("ipvlan: prevResult interface: {e}")))?;
                Ok(only.name.clone())
            }
            _ => Err(CniError::config(
                "ipvlan: no \"master\" given and the prevResult lacks a single named interface to use",
            )),
        };
    }
    sublink::default_route_dev(cx.obs, &sublink::master_ns(conf.link_in_container, netns), KIND)
}

impl Plugin for Ipvlan {
    fn name(&self) -> &'static str {
        "ipvlan"
    }
    fn about(&self) -> &'static str {
        "CNI ipvlan plugin (ipcni)"
    }

    fn add(&self, cx: &mut Cx) -> Result<CniResult, CniError> {
        let conf = IpvlanConf::from_cx(cx)?;
        let network = cx.conf.require_name()?.to_string();
        let netns = cx.netns_path()?;
        let chained = chained_ips(cx, &conf);
        if !conf.has_ipam && chained.is_none() {
            return Err(CniError::config("ipvlan: an IPAM configuration (or a prevResult with IPs) is required"));
        }
        let name = master_name(cx, &conf, &netns)?;
        let master = sublink::observe_master(cx.obs, &sublink::master_ns(conf.link_in_container, &netns), &name, KIND)?;
        sublink::mtu(KIND, conf.mtu, &master)?;
        let (id, ifname, host_id) = (cx.env.container_id.clone(), cx.env.ifname.clone(), cx.host_id.to_string());
        let target = Target { network: &network, id: &id, ifname: &ifname, netns: &netns, host_id: &host_id };
        let dns = cx.conf.dns.clone();
        sublink::run_add(cx, conf.has_ipam, |ipam| {
            let ips = ipam.or(chained.as_ref()).expect("IPAM or chained addresses");
            plan_add(&conf, &target, &master, ips, dns.as_ref())
        })
    }

    fn del(&self, cx: &mut Cx) -> Result<(), CniError> {
        // No master lookup: DEL works without a default route or the master.
        let network = cx.conf.require_name()?.to_string();
        let temp = sublink::temp_name(KIND, &network, &cx.env.container_id, &cx.env.ifname);
        sublink::run_del(cx, Some(temp))
    }

    fn check(&self, cx: &mut Cx) -> Result<(), CniError> {
        let conf = IpvlanConf::from_cx(cx)?;
        let netns = cx.netns_path()?;
        // The prevResult here is this plugin's own result, so an unset master is the
        // default-route device when there is one; otherwise it cannot be known.
        let name = match &conf.master {
            Some(m) => Some(m.clone()),
            None => sublink::default_route_dev(cx.obs, &sublink::master_ns(conf.link_in_container, &netns), KIND).ok(),
        };
        let master = name.as_deref().map(|n| ExpectMaster { name: n, in_container: conf.link_in_container });
        sublink::run_check(cx, KIND, KIND, master, |seen| {
            sublink::check_info_str(seen, KIND, "mode", conf.mode.as_str())
        })
    }
}
