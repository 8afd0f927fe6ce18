//! loopback: brings `lo` up in the container (CNI_IFNAME is ignored, as in the reference).

use crate::exec::apply;
use crate::exec::observe;
use crate::plan::{LinkSet, Netns, Op, Plan, Tolerate};
use crate::skel::{Cx, NetnsState, Plugin};
use crate::spec::{CniError, CniResult, Interface, IpConfig};

pub struct Loopback;

pub fn plan_add(netns: &std::path::Path) -> Plan {
    let mut plan = Plan::new();
    plan.push(&Netns::Container(netns.to_path_buf()), Op::LinkSet(LinkSet::up("lo")));
    plan
}

/// The result for a `lo` with these addresses; a non-loopback address is an error.
pub fn result_for(netns: &std::path::Path, lo: Option<&observe::Link>) -> Result<CniResult, CniError> {
    let mut result = CniResult {
        interfaces: vec![Interface {
            name: "lo".into(),
            mac: "00:00:00:00:00:00".into(),
            sandbox: netns.display().to_string(),
            ..Interface::default()
        }],
        ..CniResult::default()
    };
    let addrs = lo.map(|l| l.addr_info.as_slice()).unwrap_or_default();
    for a in addrs {
        let net = a.network().ok_or_else(|| CniError::internal(format!("lo address {:?} does not parse", a.local)))?;
        if !net.ip().is_loopback() {
            return Err(CniError::config(format!("loopback: lo has a non-loopback address {net}")));
        }
        if !result.ips.iter().any(|ip| ip.address.is_ipv4() == net.is_ipv4()) {
            result.ips.push(IpConfig { address: net, gateway: None, interface: Some(0) });
        }
    }
    Ok(result)
}

impl Plugin for Loopback {
    fn name(&self) -> &'static str {
        "loopback"
    }
    fn about(&self) -> &'static str {
        "CNI loopback plugin (ipcni)"
    }

    fn add(&self, cx: &mut Cx) -> Result<CniResult, CniError> {
        let netns = cx.netns_path()?;
        apply(cx.exec, &plan_add(&netns))?;
        let lo = observe::link_addrs(cx.obs, &Netns::Container(netns.clone()), "lo")?;
        let result = result_for(&netns, lo.as_ref())?;
        Ok(cx.conf.prev_result.clone().unwrap_or(result))
    }

    fn del(&self, cx: &mut Cx) -> Result<(), CniError> {
        let NetnsState::Present(p) = &cx.netns else { return Ok(()) };
        let mut plan = Plan::new();
        plan.push(&Netns::Container(p.clone()), Op::LinkSet(LinkSet { up: Some(false), ..LinkSet::dev("lo") }))
            .tolerate(Tolerate::Missing);
        apply(cx.exec, &plan)
    }

    fn check(&self, cx: &mut Cx) -> Result<(), CniError> {
        let netns = cx.netns_path()?;
        let lo = observe::link_addrs(cx.obs, &Netns::Container(netns), "lo")?
            .ok_or_else(|| CniError::check("loopback: lo is missing"))?;
        if !lo.is_up() {
            return Err(CniError::check("loopback: lo is down"));
        }
        Ok(())
    }
}
