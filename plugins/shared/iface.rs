//! Container-side interface configuration from a result (the reference's
//! ConfigureIface): addresses, link up, optional DAD wait, routes.

use std::net::IpAddr;

use crate::plan::{LinkSet, Netns, Op, Plan, RouteMode, RouteScope, RouteSpec, Sysctl, Tolerate};
use crate::spec::{CniError, CniResult, Route};

/// The first gateway of each family among the result's IPs for interface `idx`.
pub fn family_gateways(result: &CniResult, idx: usize) -> (Option<IpAddr>, Option<IpAddr>) {
    let ips = || result.ips.iter().filter(|ip| ip.interface == Some(idx));
    (
        ips().filter(|ip| ip.address.is_ipv4()).find_map(|ip| ip.gateway),
        ips().filter(|ip| ip.address.is_ipv6()).find_map(|ip| ip.gateway),
    )
}

/// A result route as a container route: its own gw, else its family's gateway.
pub fn route_spec(route: &Route, dev: &str, gws: (Option<IpAddr>, Option<IpAddr>)) -> Result<RouteSpec, CniError> {
    let mut spec = RouteSpec::new(route.dst, dev);
    spec.via = route.gw.or(if route.dst.is_ipv4() { gws.0 } else { gws.1 });
    spec.metric = route.priority;
    spec.table = route.table;
    spec.mtu = route.mtu;
    spec.advmss = route.advmss;
    spec.scope = match route.scope {
        None => None,
        Some(n) => Some(
            RouteScope::from_number(n)
                .ok_or_else(|| CniError::config(format!("route {}: scope {n} is not 0-255", route.dst)))?,
        ),
    };
    Ok(spec)
}

/// Plans addresses, link up and routes for interface `idx` of `result`, named `dev`,
/// in `ns`. Every IP must belong to `idx`.
pub fn plan_configure(
    plan: &mut Plan,
    ns: &Netns,
    dev: &str,
    idx: usize,
    result: &CniResult,
    wait_dad: bool,
) -> Result<(), CniError> {
    if let Some(ip) = result.ips.iter().find(|ip| ip.interface != Some(idx)) {
        return Err(CniError::internal(format!("address {} is not for interface {dev}", ip.address)));
    }
    let has_v6 = result.ips.iter().any(|ip| ip.address.is_ipv6());
    if has_v6 {
        plan.push(ns, Op::Sysctl(Sysctl::iface("ipv6", "lo", "disable_ipv6", "0")));
        plan.push(ns, Op::Sysctl(Sysctl::iface("ipv6", dev, "disable_ipv6", "0")));
        plan.push(ns, Op::Sysctl(Sysctl::iface("ipv6", dev, "keep_addr_on_down", "1")));
    }
    for ip in &result.ips {
        plan.push(ns, Op::AddrAdd { dev: dev.to_string(), addr: ip.address });
    }
    plan.push(ns, Op::LinkSet(LinkSet::up(dev)));
    let gws = family_gateways(result, idx);
    if wait_dad && gws.1.is_some() {
        plan.push(ns, Op::WaitDad { dev: dev.to_string() });
    }
    for r in &result.routes {
        plan.push(ns, Op::RouteAdd { mode: RouteMode::Prepend, route: route_spec(r, dev, gws)? });
    }
    Ok(())
}

/// The container-side sysctls both veth plugins set before addresses go on.
pub fn plan_dad_and_arp(plan: &mut Plan, ns: &Netns, dev: &str, enable_dad: bool) {
    if enable_dad {
        plan.push(ns, Op::Sysctl(Sysctl::iface("ipv6", dev, "enhanced_dad", "1"))).tolerate(Tolerate::Any);
        plan.push(ns, Op::Sysctl(Sysctl::iface("ipv6", dev, "accept_dad", "1"))).tolerate(Tolerate::Any);
    } else {
        plan.push(ns, Op::Sysctl(Sysctl::iface("ipv6", dev, "accept_dad", "0"))).tolerate(Tolerate::Any);
    }
    plan.push(ns, Op::Sysctl(Sysctl::iface("ipv4", dev, "arp_notify", "1"))).tolerate(Tolerate::Any);
}

/// CHECK helper: every address of `idx` is on the link and every route is present.
pub fn check_configured(
    link: &crate::exec::observe::Link,
    routes_v4: &[(String, Option<String>)],
    routes_v6: &[(String, Option<String>)],
    idx: usize,
    result: &CniResult,
) -> Result<(), CniError> {
    for ip in result.ips.iter().filter(|ip| ip.interface == Some(idx)) {
        let present =
            link.addr_info.iter().any(|a| a.local == ip.address.ip().to_string() && a.prefixlen == ip.address.prefix());
        if !present {
            return Err(CniError::check(format!("address {} is missing from {}", ip.address, link.ifname)));
        }
    }
    let gws = family_gateways(result, idx);
    for r in &result.routes {
        let table = if r.dst.is_ipv4() { routes_v4 } else { routes_v6 };
        let want_dst =
            if r.dst.prefix() == 0 { "default".to_string() } else { format!("{}/{}", r.dst.network(), r.dst.prefix()) };
        let want_gw = r.gw.or(if r.dst.is_ipv4() { gws.0 } else { gws.1 }).map(|g| g.to_string());
        let present = table.iter().any(|(dst, gw)| {
            let dst_match = dst == &want_dst
                || dst == &r.dst.ip().to_string() && r.dst.prefix() == if r.dst.is_ipv4() { 32 } else { 128 };
            dst_match && (want_gw.is_none() || gw == &want_gw)
        });
        if r.table.is_none() && !present {
            return Err(CniError::check(format!("route to {} is missing from {}", r.dst, link.ifname)));
        }
    }
    Ok(())
}
