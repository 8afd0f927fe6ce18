//! dummy: a dummy link created in the container under CNI_IFNAME, with addresses and
//! routes from IPAM (required). The link lives only in the container, so its creation
//! and its undo both run there.

use super::shared::sublink::{self, Target};
use crate::exec::undo_of;
use crate::plan::{LinkAdd, Netns, Op, Plan};
use crate::skel::{Cx, Plugin};
use crate::spec::{CniError, CniResult, Dns, Interface};

pub struct Dummy;

const KIND: &str = "dummy";

fn require_ipam(cx: &Cx) -> Result<(), CniError> {
    if cx.conf.ipam_type.is_none() {
        return Err(CniError::config("dummy: an IPAM configuration is required"));
    }
    Ok(())
}

/// The ADD plan and its result. Pure: no I/O.
pub fn plan_add(target: &Target, ipam: &CniResult, dns: Option<&Dns>) -> Result<(Plan, CniResult), CniError> {
    let mac = sublink::derived_mac(KIND, target);
    let iface = Interface {
        name: target.ifname.to_string(),
        mac: mac.clone(),
        sandbox: target.netns.display().to_string(),
        ..Interface::default()
    };
    let mut plan = Plan::new();
    let add = Op::LinkAdd(LinkAdd::Dummy { name: target.ifname.to_string(), mtu: None, mac: Some(mac) });
    plan.push(&Netns::Container(target.netns.to_path_buf()), add.clone()).undo(undo_of(&add).expect("link undo"));
    let result = sublink::plan_addresses(&mut plan, KIND, target.netns, target.ifname, iface, Some(ipam), dns)?;
    Ok((plan, result))
}

impl Plugin for Dummy {
    fn name(&self) -> &'static str {
        "dummy"
    }
    fn about(&self) -> &'static str {
        "CNI dummy plugin (ipcni)"
    }

    fn add(&self, cx: &mut Cx) -> Result<CniResult, CniError> {
        require_ipam(cx)?;
        let network = cx.conf.require_name()?.to_string();
        let netns = cx.netns_path()?;
        let (id, ifname, host_id) = (cx.env.container_id.clone(), cx.env.ifname.clone(), cx.host_id.to_string());
        let target = Target { network: &network, id: &id, ifname: &ifname, netns: &netns, host_id: &host_id };
        let dns = cx.conf.dns.clone();
        sublink::run_add(cx, true, |ipam| plan_add(&target, ipam.expect("IPAM ran"), dns.as_ref()))
    }

    fn del(&self, cx: &mut Cx) -> Result<(), CniError> {
        sublink::run_del(cx, None)
    }

    fn check(&self, cx: &mut Cx) -> Result<(), CniError> {
        require_ipam(cx)?;
        sublink::run_check(cx, KIND, KIND, None, |seen| {
            if seen.link.is_up() {
                Ok(())
            } else {
                Err(CniError::check(format!("dummy: container interface {} is down", seen.link.ifname)))
            }
        })
    }
}
