//! vlan: an 802.1Q VLAN device on a master, created from the host straight into the
//! container under a temporary name, renamed there to CNI_IFNAME. It takes the
//! master's MAC. IPAM is optional (`"ipam": {}` gives an L2-only link).
//! DEL needs neither the master nor the VLAN settings (the reference reads the master's
//! MTU on DEL and fails when the master is gone).

use serde::Deserialize;

use super::shared::sublink::{self, ExpectMaster, Master, Target};
use crate::plan::{LinkAdd, Plan};
use crate::skel::{Cx, Plugin};
use crate::spec::{CniError, CniResult, Dns, Interface};

pub struct Vlan;

const KIND: &str = "vlan";

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawConf {
    master: Option<String>,
    vlan_id: Option<i64>,
    mtu: Option<i64>,
    link_in_container: bool,
}

/// The validated vlan configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanConf {
    pub master: String,
    pub vlan_id: u16,
    pub mtu: Option<i64>,
    pub link_in_container: bool,
    pub has_ipam: bool,
}

impl VlanConf {
    pub fn from_cx(cx: &Cx) -> Result<VlanConf, CniError> {
        let raw: RawConf = cx.conf.plugin()?;
        let master = sublink::master_name(KIND, raw.master)?
            .ok_or_else(|| CniError::config("vlan: \"master\" is required: the interface to create the VLAN on"))?;
        let vlan_id = match raw.vlan_id {
            None => return Err(CniError::config("vlan: \"vlanId\" is required")),
            Some(v) if (0..=4094).contains(&v) => v as u16,
            Some(v) => return Err(CniError::config(format!("vlan: \"vlanId\" {v} is out of range 0-4094"))),
        };
        sublink::mtu_shape(KIND, raw.mtu)?;
        Ok(VlanConf {
            master,
            vlan_id,
            mtu: raw.mtu,
            link_in_container: raw.link_in_container,
            has_ipam: cx.conf.ipam_type.is_some(),
        })
    }
}

/// The ADD plan and its result. Pure: no I/O.
pub fn plan_add(
    conf: &VlanConf,
    target: &Target,
    master: &Master,
    ipam: Option<&CniResult>,
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
    let link = LinkAdd::Vlan {
        name: sublink::temp_name(KIND, target.network, target.id, target.ifname),
        master: master.name.clone(),
        vlan_id: conf.vlan_id,
        mtu,
        netns: (!conf.link_in_container).then(|| target.netns.to_path_buf()),
    };
    let mut plan = Plan::new();
    sublink::plan_create_and_rename(&mut plan, link, conf.link_in_container, target.netns, target.ifname);
    let result = sublink::plan_addresses(&mut plan, KIND, target.netns, target.ifname, iface, ipam, dns)?;
    Ok((plan, result))
}

impl Plugin for Vlan {
    fn name(&self) -> &'static str {
        "vlan"
    }
    fn about(&self) -> &'static str {
        "CNI vlan plugin (ipcni)"
    }

    fn add(&self, cx: &mut Cx) -> Result<CniResult, CniError> {
        let conf = VlanConf::from_cx(cx)?;
        let network = cx.conf.require_name()?.to_string();
        let netns = cx.netns_path()?;
        let mns = sublink::master_ns(conf.link_in_container, &netns);
        let master = sublink::observe_master(cx.obs, &mns, &conf.master, KIND)?;
        sublink::mtu(KIND, conf.mtu, &master)?;
        let (id, ifname, host_id) = (cx.env.container_id.clone(), cx.env.ifname.clone(), cx.host_id.to_string());
        let target = Target { network: &network, id: &id, ifname: &ifname, netns: &netns, host_id: &host_id };
        let dns = cx.conf.dns.clone();
        sublink::run_add(cx, conf.has_ipam, |ipam| plan_add(&conf, &target, &master, ipam, dns.as_ref()))
    }

    fn del(&self, cx: &mut Cx) -> Result<(), CniError> {
        // Names only: neither the master nor vlanId is looked at.
        let network = cx.conf.require_name()?.to_string();
        let temp = sublink::temp_name(KIND, &network, &cx.env.container_id, &cx.env.ifname);
        sublink::run_del(cx, Some(temp))
    }

    fn check(&self, cx: &mut Cx) -> Result<(), CniError> {
        let conf = VlanConf::from_cx(cx)?;
        let master = ExpectMaster { name: &conf.master, in_container: conf.link_in_container };
        sublink::run_check(cx, KIND, KIND, Some(master), |seen| {
            let id = seen.info("id").and_then(|v| v.as_u64());
            if id != Some(u64::from(conf.vlan_id)) {
                return Err(CniError::check(format!(
                    "vlan: container interface {} has VLAN id {}, expected {}",
                    seen.link.ifname,
                    id.map_or("(none)".to_string(), |i| i.to_string()),
                    conf.vlan_id
                )));
            }
            Ok(())
        })
    }
}
