//! ptp: a routed veth pair per container (reference §3.2). The container reaches
//! everything, its own subnet included, through the host end of its veth: the kernel's
//! connected route is replaced by a link route to the gateway and a subnet route via it,
//! and the host end carries the gateway address plus a host route back to the container.
//! Layers: RawConf (serde) → PtpConf (validated) → plans for ADD/DEL, checks for CHECK.

use std::net::IpAddr;
use std::path::Path;

use ipnetwork::IpNetwork;
use serde::Deserialize;

use super::shared::{iface, masq};
use crate::exec::observe::{self, Link};
use crate::exec::{apply, undo_of};
use crate::names;
use crate::plan::{LinkAdd, LinkSet, Netns, Op, Plan, RouteMode, RouteScope, RouteSpec, Sysctl, Tolerate};
use crate::skel::{Cx, NetnsState, Plugin};
use crate::spec::{CniError, CniResult, Interface, NetConf, code};

pub struct Ptp;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawConf {
    ip_masq: bool,
    ip_masq_backend: Option<String>,
    mtu: Option<i64>,
}

/// The validated ptp configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtpConf {
    pub ip_masq: bool,
    /// `ipMasqBackend`: None (automatic), "iptables" or "nftables".
    pub ip_masq_backend: Option<String>,
    pub mtu: Option<u32>,
    pub has_ipam: bool,
}

impl PtpConf {
    /// Parses and validates the plugin keys. IPAM is required by ADD, CHECK and STATUS
    /// ([`PtpConf::require_ipam`]); DEL and GC clean up whatever the config still names.
    pub fn from_conf(conf: &NetConf) -> Result<PtpConf, CniError> {
        let raw: RawConf = conf.plugin()?;
        let mtu = match raw.mtu {
            None | Some(0) => None,
            Some(m) if (68..=65535).contains(&m) => Some(m as u32),
            Some(m) => return Err(CniError::config(format!("ptp: \"mtu\" {m} is out of range 68-65535"))),
        };
        let ip_masq_backend = match raw.ip_masq_backend.as_deref() {
            None | Some("") => None,
            Some(b @ ("iptables" | "nftables")) => Some(b.to_string()),
            Some(other) => {
                return Err(CniError::config(format!(
                    "ptp: \"ipMasqBackend\" must be \"iptables\" or \"nftables\", not {other:?}"
                )));
            }
        };
        Ok(PtpConf { ip_masq: raw.ip_masq, ip_masq_backend, mtu, has_ipam: conf.ipam_type.is_some() })
    }

    pub fn require_ipam(&self) -> Result<(), CniError> {
        if self.has_ipam { Ok(()) } else { Err(CniError::config("ptp: \"ipam\" with a \"type\" is required")) }
    }

    fn backend(&self, cx: &mut Cx) -> Result<masq::Backend, CniError> {
        masq::choose_backend(self.ip_masq_backend.as_deref(), cx.obs)
    }
}

/// The identity of one attachment as ADD sees it.
pub struct Target<'a> {
    pub network: &'a str,
    pub id: &'a str,
    pub ifname: &'a str,
    pub netns: &'a Path,
    /// The per-host seed of derived MACs (`Cx::host_id`).
    pub host_id: &'a str,
}

/// The host end of an attachment, derived so DEL and CHECK find it without reading it back.
fn host_veth(network: &str, id: &str, ifname: &str) -> String {
    names::host_veth(network, id, ifname)
}

fn max_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

fn host_net(ip: IpAddr) -> IpNetwork {
    IpNetwork::new(ip, max_prefix(ip)).expect("full-length prefix is valid")
}

/// The subnet of an address (host bits cleared).
fn subnet_of(addr: &IpNetwork) -> IpNetwork {
    IpNetwork::new(addr.network(), addr.prefix()).expect("prefix of a valid network")
}

/// Every IP of the IPAM answer with its gateway, which ptp cannot do without.
fn addresses_with_gateways(result: &CniResult) -> Result<Vec<(IpNetwork, IpAddr)>, CniError> {
    let mut out = Vec::with_capacity(result.ips.len());
    for ip in &result.ips {
        let gw = ip.gateway.ok_or_else(|| {
            CniError::config(format!("ptp: the IPAM result gives no gateway for {}; ptp routes through it", ip.address))
        })?;
        if gw.is_ipv4() != ip.address.is_ipv4() {
            return Err(CniError::config(format!(
                "ptp: gateway {gw} of {} is of the other address family",
                ip.address
            )));
        }
        if gw == ip.address.ip() {
            return Err(CniError::config(format!("ptp: gateway {gw} is the container's own address {}", ip.address)));
        }
        out.push((ip.address, gw));
    }
    Ok(out)
}

fn sysctl_host(plan: &mut Plan, s: Sysctl) {
    plan.push(&Netns::Host, Op::Sysctl(s)).tolerate(Tolerate::Any);
}

/// The ADD plan and its result, from the config and the IPAM answer. Pure: no I/O.
///
/// Order: every host `ip` step first (one `ip -batch`), then the host sysctls, then the
/// container side (one `nsenter … ip -batch`), then masquerading.
pub fn plan_add(
    conf: &PtpConf,
    target: &Target,
    ipam: &CniResult,
    masq_backend: Option<masq::Backend>,
) -> Result<(Plan, CniResult), CniError> {
    let Target { network, id, ifname, netns, host_id } = *target;
    if ipam.ips.is_empty() {
        return Err(CniError::config("ptp: IPAM plugin returned missing IP config"));
    }
    let pairs = addresses_with_gateways(ipam)?;
    let host = Netns::Host;
    let ctr = Netns::Container(netns.to_path_buf());
    let hv = host_veth(network, id, ifname);
    let host_mac = names::mac(&format!("host\0{host_id}\0{hv}"));
    let container_mac = names::mac(&format!("container\0{host_id}\0{network}\0{id}\0{ifname}"));

    let mut result = CniResult {
        interfaces: vec![
            Interface { name: hv.clone(), mac: host_mac.clone(), mtu: conf.mtu, ..Interface::default() },
            Interface {
                name: ifname.to_string(),
                mac: container_mac.clone(),
                mtu: conf.mtu,
                sandbox: netns.display().to_string(),
                ..Interface::default()
            },
        ],
        ips: ipam.ips.clone(),
        routes: ipam.routes.clone(),
        dns: ipam.dns.clone(),
    };
    for ip in &mut result.ips {
        ip.interface = Some(1);
    }

    let mut plan = Plan::new();

    // 1. Host: the veth pair (the peer goes straight into the container), its host end
    //    up, the gateway addresses on it and a host route to each container address.
    let veth = Op::LinkAdd(LinkAdd::Veth {
        name: hv.clone(),
        mtu: conf.mtu,
        mac: Some(host_mac),
        peer: ifname.to_string(),
        peer_mac: Some(container_mac),
        peer_netns: Some(netns.to_path_buf()),
    });
    plan.push(&host, veth.clone()).undo(undo_of(&veth).expect("link undo"));
    plan.push(&host, Op::LinkSet(LinkSet::up(&hv)));
    let mut host_gws: Vec<IpNetwork> = Vec::new();
    for (addr, gw) in &pairs {
        let gw_addr = host_net(*gw);
        if !host_gws.contains(&gw_addr) {
            host_gws.push(gw_addr);
            let add = Op::AddrAdd { dev: hv.clone(), addr: gw_addr };
            plan.push(&host, add.clone()).undo(undo_of(&add).expect("addr undo"));
        }
        // `replace`: the address is this attachment's now, whatever stale route named it.
        let mut route = RouteSpec::new(host_net(addr.ip()), &hv);
        route.scope = Some(RouteScope::Host);
        let add = Op::RouteAdd { mode: RouteMode::Replace, route };
        plan.push(&host, add.clone()).undo(undo_of(&add).expect("route undo"));
    }
    sysctl_host(&mut plan, Sysctl::iface("ipv6", &hv, "accept_ra", "0"));
    if pairs.iter().any(|(a, _)| a.is_ipv4()) {
        sysctl_host(&mut plan, Sysctl::new(&["net", "ipv4", "ip_forward"], "1"));
    }
    if pairs.iter().any(|(a, _)| a.is_ipv6()) {
        sysctl_host(&mut plan, Sysctl::new(&["net", "ipv6", "conf", "all", "forwarding"], "1"));
    }

    // 2. Container: addresses and link up, then the point-to-point routes, then the
    //    result's routes (after the gateway is reachable, so a /32 address works too).
    iface::plan_dad_and_arp(&mut plan, &ctr, ifname, false);
    let without_routes = CniResult { routes: Vec::new(), ..result.clone() };
    iface::plan_configure(&mut plan, &ctr, ifname, 1, &without_routes, false)?;
    let mut deleted: Vec<IpNetwork> = Vec::new();
    let mut gw_routes: Vec<IpAddr> = Vec::new();
    let mut net_routes: Vec<IpNetwork> = Vec::new();
    for (addr, gw) in &pairs {
        let full = addr.prefix() == max_prefix(addr.ip());
        let net = subnet_of(addr);
        if !full && !deleted.contains(&net) {
            deleted.push(net);
            // The kernel's connected route; a second address of the subnet shares it.
            plan.push(&ctr, Op::RouteDel { route: RouteSpec::new(net, ifname) }).tolerate(Tolerate::Missing);
        }
        if !gw_routes.contains(gw) {
            gw_routes.push(*gw);
            let mut route = RouteSpec::new(host_net(*gw), ifname);
            route.scope = Some(RouteScope::Link);
            route.src = Some(addr.ip());
            plan.push(&ctr, Op::RouteAdd { mode: RouteMode::Add, route });
        }
        if !full && !net_routes.contains(&net) {
            net_routes.push(net);
            let mut route = RouteSpec::new(net, ifname);
            route.via = Some(*gw);
            route.src = Some(addr.ip());
            plan.push(&ctr, Op::RouteAdd { mode: RouteMode::Add, route });
        }
    }
    let gws = iface::family_gateways(&result, 1);
    for r in &result.routes {
        plan.push(&ctr, Op::RouteAdd { mode: RouteMode::Prepend, route: iface::route_spec(r, ifname, gws)? });
    }

    // 3. Masquerading.
    if let Some(backend) = masq_backend {
        let addrs: Vec<IpNetwork> = result.ips.iter().map(|ip| ip.address).collect();
        masq::plan_setup(&mut plan, backend, network, id, ifname, &addrs);
    }
    Ok((plan, result))
}

/// The route table of one family as `ip -j route show dev` lists it: (dst, gateway).
type Routes = [(String, Option<String>)];

fn route_dst(net: &IpNetwork) -> String {
    if net.prefix() == max_prefix(net.ip()) {
        net.ip().to_string()
    } else {
        format!("{}/{}", net.network(), net.prefix())
    }
}

fn has_route(table: &Routes, dst: &str, gw: Option<IpAddr>) -> bool {
    let gw = gw.map(|g| g.to_string());
    table.iter().any(|(d, g)| d == dst && *g == gw)
}

/// CHECK of the host end: it exists, is a veth, is the container interface's peer and
/// carries the gateway addresses.
fn check_host_veth(hv: &Link, container: &Link, prev: &CniResult, idx: usize) -> Result<(), CniError> {
    if hv.kind() != "veth" {
        return Err(CniError::check(format!("host interface {} is a {:?}, not a veth", hv.ifname, hv.kind())));
    }
    if container.link_index.is_some_and(|peer| peer != hv.ifindex) {
        return Err(CniError::check(format!(
            "host veth {} (ifindex {}) is not the peer of container interface {} (peer ifindex {})",
            hv.ifname,
            hv.ifindex,
            container.ifname,
            container.link_index.unwrap_or_default()
        )));
    }
    for gw in prev.ips.iter().filter(|ip| ip.interface == Some(idx)).filter_map(|ip| ip.gateway) {
        let present = hv.addr_info.iter().any(|a| a.local == gw.to_string() && a.prefixlen == max_prefix(gw));
        if !present {
            return Err(CniError::check(format!(
                "gateway address {} is missing from host veth {}",
                host_net(gw),
                hv.ifname
            )));
        }
    }
    Ok(())
}

/// CHECK of the host routes back to each container address (`ip -j route show dev HV`).
fn check_host_routes(prev: &CniResult, idx: usize, v4: &Routes, v6: &Routes, hv: &str) -> Result<(), CniError> {
    for ip in prev.ips.iter().filter(|ip| ip.interface == Some(idx)) {
        let table = if ip.address.is_ipv4() { v4 } else { v6 };
        let dst = route_dst(&host_net(ip.address.ip()));
        if !table.iter().any(|(d, _)| *d == dst) {
            return Err(CniError::check(format!("host route to {dst} via {hv} is missing")));
        }
    }
    Ok(())
}

/// CHECK of the point-to-point routes ADD put in the container.
fn check_ptp_routes(prev: &CniResult, idx: usize, v4: &Routes, v6: &Routes, dev: &str) -> Result<(), CniError> {
    for ip in prev.ips.iter().filter(|ip| ip.interface == Some(idx)) {
        let Some(gw) = ip.gateway else { continue };
        let table = if ip.address.is_ipv4() { v4 } else { v6 };
        if !has_route(table, &route_dst(&host_net(gw)), None) {
            return Err(CniError::check(format!("route to gateway {gw} is missing from {dev}")));
        }
        if ip.address.prefix() != max_prefix(ip.address.ip()) {
            let net = subnet_of(&ip.address);
            if !has_route(table, &route_dst(&net), Some(gw)) {
                return Err(CniError::check(format!("route to {net} via {gw} is missing from {dev}")));
            }
        }
    }
    Ok(())
}

fn combine(mut errors: Vec<CniError>) -> Result<(), CniError> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(CniError::new(errors[0].code, errors.iter().map(|e| e.msg.clone()).collect::<Vec<_>>().join("; "))),
    }
}

impl Plugin for Ptp {
    fn name(&self) -> &'static str {
        "ptp"
    }
    fn about(&self) -> &'static str {
        "CNI ptp plugin (ipcni)"
    }

    fn add(&self, cx: &mut Cx) -> Result<CniResult, CniError> {
        let conf = PtpConf::from_conf(cx.conf)?;
        conf.require_ipam()?;
        let network = cx.conf.require_name()?.to_string();
        let netns = cx.netns_path()?;
        let backend = if conf.ip_masq { Some(conf.backend(cx)?) } else { None };
        // IPAM first, while the host's ip starts; from here on every failure releases
        // the address.
        cx.obs.warm(&Netns::Host);
        let ipam = cx.ipam.add(cx.env, cx.conf)?;
        let target = Target {
            network: &network,
            id: &cx.env.container_id,
            ifname: &cx.env.ifname,
            netns: &netns,
            host_id: cx.host_id,
        };
        let outcome = plan_add(&conf, &target, &ipam, backend).and_then(|(plan, mut result)| {
            apply(cx.exec, &plan)?;
            if let Some(dns) = cx.conf.dns.as_ref().filter(|d| !d.is_empty()) {
                result.dns = dns.clone();
            }
            Ok(result)
        });
        // Releases only what this ADD reserved: a repeated ADD of a live attachment keeps
        // the address it already held.
        if outcome.is_err()
            && let Err(e) = cx.ipam.undo_add(cx.env, cx.conf)
        {
            crate::exec::log(&format!("releasing the address after a failed ADD: {e}"));
        }
        outcome
    }

    fn del(&self, cx: &mut Cx) -> Result<(), CniError> {
        // DEL works with whatever is left: links and masquerading are removed by derived
        // names, without reading the container's addresses, and the reservation is
        // released even when that cleanup fails (the first error is reported).
        let conf = PtpConf::from_conf(cx.conf)?;
        let network = cx.conf.require_name()?.to_string();
        let mut plan = Plan::new();
        match &cx.netns {
            NetnsState::Present(p) => {
                // Deleting the container end removes the host end, its addresses and routes.
                plan.push(&Netns::Container(p.clone()), Op::LinkDel { dev: cx.env.ifname.clone() })
                    .tolerate(Tolerate::Missing);
            }
            NetnsState::Gone(_) | NetnsState::Unset => {
                // The namespace may live on without its file: remove the host end by name.
                let hv = host_veth(&network, &cx.env.container_id, &cx.env.ifname);
                if observe::link_addrs(cx.obs, &Netns::Host, &hv)?.is_some() {
                    plan.push(&Netns::Host, Op::LinkDel { dev: hv }).tolerate(Tolerate::Missing);
                }
            }
        }
        if conf.ip_masq {
            masq::plan_teardown(&mut plan, cx.obs, &network, &cx.env.container_id, &cx.env.ifname);
        }
        let mut errors = Vec::new();
        if let Err(e) = apply(cx.exec, &plan) {
            errors.push(e);
        }
        if conf.has_ipam
            && let Err(e) = cx.ipam.del(cx.env, cx.conf)
        {
            errors.push(e);
        }
        combine(errors)
    }

    fn check(&self, cx: &mut Cx) -> Result<(), CniError> {
        let conf = PtpConf::from_conf(cx.conf)?;
        conf.require_ipam()?;
        let network = cx.conf.require_name()?.to_string();
        let netns = cx.netns_path()?;
        let prev = cx.conf.prev_result.clone().ok_or_else(|| CniError::config("ptp: CHECK requires prevResult"))?;
        cx.ipam.check(cx.env, cx.conf)?;
        let ifname = cx.env.ifname.clone();
        let idx = prev
            .sandbox_interface(&ifname)
            .ok_or_else(|| CniError::check(format!("prevResult has no sandboxed interface {ifname:?}")))?;
        let ctr_if = &prev.interfaces[idx];
        if ctr_if.sandbox != netns.display().to_string() {
            return Err(CniError::check(format!(
                "interface {} is in sandbox {}, not CNI_NETNS {}",
                ctr_if.name,
                ctr_if.sandbox,
                netns.display()
            )));
        }
        let ctr = Netns::Container(netns.clone());
        let link = observe::link_addrs(cx.obs, &ctr, &ifname)?
            .ok_or_else(|| CniError::check(format!("container interface {ifname} is missing")))?;
        if link.kind() != "veth" {
            return Err(CniError::check(format!(
                "container interface {} is a {:?}, not a veth",
                link.ifname,
                link.kind()
            )));
        }
        if !ctr_if.mac.is_empty() && !ctr_if.mac.eq_ignore_ascii_case(&link.address) {
            return Err(CniError::check(format!(
                "container interface {} has MAC {}, expected {}",
                link.ifname, link.address, ctr_if.mac
            )));
        }
        // The host end: as named in prevResult (ADD by any implementation), else derived.
        let hv_name = prev
            .interfaces
            .iter()
            .find(|i| i.sandbox.is_empty() && !i.name.is_empty())
            .map(|i| i.name.clone())
            .unwrap_or_else(|| host_veth(&network, &cx.env.container_id, &ifname));
        let hv = observe::link_addrs(cx.obs, &Netns::Host, &hv_name)?
            .ok_or_else(|| CniError::check(format!("host veth {hv_name} is missing")))?;
        check_host_veth(&hv, &link, &prev, idx)?;
        let has_v4 = prev.ips.iter().any(|i| i.address.is_ipv4()) || prev.routes.iter().any(|r| r.dst.is_ipv4());
        let has_v6 = prev.ips.iter().any(|i| i.address.is_ipv6()) || prev.routes.iter().any(|r| r.dst.is_ipv6());
        let mut routes = |ns: &Netns, dev: &str, v6: bool, wanted: bool| {
            if wanted { observe::routes(cx.obs, ns, dev, v6) } else { Ok(Vec::new()) }
        };
        let host_v4 = routes(&Netns::Host, &hv_name, false, has_v4)?;
        let host_v6 = routes(&Netns::Host, &hv_name, true, has_v6)?;
        check_host_routes(&prev, idx, &host_v4, &host_v6, &hv_name)?;
        let v4 = routes(&ctr, &ifname, false, has_v4)?;
        let v6 = routes(&ctr, &ifname, true, has_v6)?;
        iface::check_configured(&link, &v4, &v6, idx, &prev)?;
        check_ptp_routes(&prev, idx, &v4, &v6, &ifname)?;
        if conf.ip_masq {
            let backend = conf.backend(cx)?;
            masq::check(cx.obs, backend, &network, &cx.env.container_id, &ifname)?;
        }
        Ok(())
    }

    fn status(&self, cx: &mut Cx) -> Result<(), CniError> {
        let conf = PtpConf::from_conf(cx.conf)?;
        conf.require_ipam()?;
        if conf.ip_masq {
            let backend = conf.backend(cx)?;
            if !observe::backend_usable(cx.obs, backend == masq::Backend::Nftables) {
                return Err(CniError::new(
                    code::PLUGIN_NOT_AVAILABLE,
                    format!("ptp: ipMasq backend {backend:?} is not usable"),
                ));
            }
        }
        cx.ipam.status(cx.env, cx.conf)
    }

    fn gc(&self, cx: &mut Cx) -> Result<(), CniError> {
        let conf = PtpConf::from_conf(cx.conf)?;
        let network = cx.conf.require_name()?.to_string();
        let mut errors = Vec::new();
        if let (true, Some(valid)) = (conf.ip_masq, &cx.conf.valid_attachments) {
            let mut plan = Plan::new();
            masq::plan_gc(&mut plan, cx.obs, &network, valid);
            if let Err(e) = apply(cx.exec, &plan) {
                errors.push(e);
            }
        }
        if conf.has_ipam
            && let Err(e) = cx.ipam.gc(cx.env, cx.conf)
        {
            errors.push(e);
        }
        combine(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::IpConfig;

    fn conf(json: &str) -> Result<PtpConf, CniError> {
        PtpConf::from_conf(&NetConf::parse(json.as_bytes()).unwrap())
    }

    const IPAM: &str = r#""ipam":{"type":"host-local","subnet":"10.1.1.0/24"}"#;

    #[test]
    fn defaults_and_options() {
        let c = conf(&format!(r#"{{"cniVersion":"1.0.0","name":"n","type":"ptp",{IPAM}}}"#)).unwrap();
        assert_eq!(c, PtpConf { ip_masq: false, ip_masq_backend: None, mtu: None, has_ipam: true });
        let c = conf(&format!(
            r#"{{"cniVersion":"1.0.0","name":"n","type":"ptp","ipMasq":true,"ipMasqBackend":"nftables","mtu":1400,{IPAM}}}"#
        ))
        .unwrap();
        assert_eq!(c.mtu, Some(1400));
        assert!(c.ip_masq);
        assert_eq!(c.ip_masq_backend.as_deref(), Some("nftables"));
        // mtu 0 is "the default", as in the reference.
        assert_eq!(conf(r#"{"cniVersion":"1.0.0","name":"n","mtu":0}"#).unwrap().mtu, None);
    }

    #[test]
    fn bad_values_are_code_7() {
        for bad in [
            r#"{"cniVersion":"1.0.0","name":"n","mtu":67}"#,
            r#"{"cniVersion":"1.0.0","name":"n","mtu":70000}"#,
            r#"{"cniVersion":"1.0.0","name":"n","mtu":-1}"#,
            r#"{"cniVersion":"1.0.0","name":"n","mtu":"1400"}"#,
            r#"{"cniVersion":"1.0.0","name":"n","ipMasq":"yes"}"#,
            r#"{"cniVersion":"1.0.0","name":"n","ipMasqBackend":"ipfw"}"#,
        ] {
            assert_eq!(conf(bad).unwrap_err().code, 7, "{bad}");
        }
    }

    #[test]
    fn ipam_is_required() {
        let c = conf(r#"{"cniVersion":"1.0.0","name":"n","type":"ptp"}"#).unwrap();
        assert_eq!(c.require_ipam().unwrap_err().code, 7);
        let c = conf(r#"{"cniVersion":"1.0.0","name":"n","type":"ptp","ipam":{}}"#).unwrap();
        assert_eq!(c.require_ipam().unwrap_err().code, 7);
    }

    fn ipam_result(ips: &[(&str, Option<&str>)]) -> CniResult {
        CniResult {
            ips: ips
                .iter()
                .map(|(a, g)| IpConfig {
                    address: a.parse().unwrap(),
                    gateway: g.map(|g| g.parse().unwrap()),
                    interface: None,
                })
                .collect(),
            ..CniResult::default()
        }
    }

    fn plan_for(result: &CniResult) -> Result<(Plan, CniResult), CniError> {
        let c = PtpConf { ip_masq: false, ip_masq_backend: None, mtu: None, has_ipam: true };
        let t = Target { network: "n", id: "c1", ifname: "eth0", netns: Path::new("/run/netns/c1"), host_id: "h" };
        plan_add(&c, &t, result, None)
    }

    #[test]
    fn every_address_needs_a_usable_gateway() {
        assert_eq!(plan_for(&ipam_result(&[])).unwrap_err().code, 7);
        assert_eq!(plan_for(&ipam_result(&[("10.1.1.5/24", None)])).unwrap_err().code, 7);
        assert_eq!(plan_for(&ipam_result(&[("10.1.1.5/24", Some("fd00::1"))])).unwrap_err().code, 7);
        assert_eq!(plan_for(&ipam_result(&[("10.1.1.5/24", Some("10.1.1.5"))])).unwrap_err().code, 7);
    }

    #[test]
    fn shared_subnet_and_full_prefix_addresses_plan_each_route_once() {
        let (plan, result) = plan_for(&ipam_result(&[
            ("10.1.1.5/24", Some("10.1.1.1")),
            ("10.1.1.6/24", Some("10.1.1.1")),
            ("10.2.0.9/32", Some("10.2.0.1")),
        ]))
        .unwrap();
        assert!(result.ips.iter().all(|ip| ip.interface == Some(1)));
        let lines: Vec<String> = plan.steps.iter().map(|s| s.rendered().batch_line()).collect();
        let count = |l: &str| lines.iter().filter(|x| x.as_str() == l).count();
        let hv = names::host_veth("n", "c1", "eth0");
        assert_eq!(count(&format!("addr add 10.1.1.1/32 dev {hv}")), 1, "{lines:#?}");
        assert_eq!(count(&format!("route replace 10.1.1.5/32 dev {hv} scope host")), 1);
        assert_eq!(count(&format!("route replace 10.1.1.6/32 dev {hv} scope host")), 1);
        assert_eq!(count("route del 10.1.1.0/24 dev eth0"), 1);
        assert_eq!(count("route add 10.1.1.1/32 dev eth0 src 10.1.1.5 scope link"), 1);
        assert_eq!(count("route add 10.1.1.0/24 via 10.1.1.1 dev eth0 src 10.1.1.5"), 1);
        assert_eq!(count("route add 10.2.0.1/32 dev eth0 src 10.2.0.9 scope link"), 1);
        assert!(!lines.iter().any(|l| l.starts_with("route del 10.2.0.9")));
        assert!(!lines.iter().any(|l| l.contains("10.2.0.9/32 via")));
    }

    #[test]
    fn host_ip_steps_are_consecutive() {
        let (plan, _) =
            plan_for(&ipam_result(&[("10.1.1.5/24", Some("10.1.1.1")), ("fd00::5/64", Some("fd00::1"))])).unwrap();
        let host_ip: Vec<usize> = plan
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.ns == Netns::Host && s.rendered().tool == crate::plan::Tool::Ip)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(host_ip, (0..host_ip.len()).collect::<Vec<_>>());
        let ctr_ip: Vec<usize> = plan
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.ns != Netns::Host && s.rendered().tool == crate::plan::Tool::Ip)
            .map(|(i, _)| i)
            .collect();
        assert!(ctr_ip.windows(2).all(|w| w[1] == w[0] + 1), "container ip steps split: {ctr_ip:?}");
    }
}
