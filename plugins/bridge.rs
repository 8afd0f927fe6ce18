//! bridge: a veth pair per container, the host end enslaved to a Linux bridge.
//! Layers: RawConf (serde) → BridgeConf (validated) → plans for ADD/DEL, checks for CHECK.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::Deserialize;

use super::shared::{iface, masq};
use crate::exec::observe::{self, Link};
use crate::exec::{apply, undo_of};
use crate::names;
use crate::plan::firewall::{BaseChain, FirewallOp, NftOp, NftRule, NftTable};
use crate::plan::{BridgePort, LinkAdd, LinkSet, Netns, Op, Plan, Sysctl, Tolerate};
use crate::skel::{Cx, NetnsState, Plugin};
use crate::spec::{CniError, CniResult, Interface, Route};
use crate::validate;

pub struct Bridge;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTrunk {
    id: Option<i64>,
    #[serde(rename = "minID")]
    min_id: Option<i64>,
    #[serde(rename = "maxID")]
    max_id: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawConf {
    bridge: Option<String>,
    is_gateway: bool,
    is_default_gateway: bool,
    force_address: bool,
    ip_masq: bool,
    ip_masq_backend: Option<String>,
    mtu: Option<i64>,
    hairpin_mode: bool,
    promisc_mode: bool,
    vlan: Option<i64>,
    vlan_trunk: Option<Vec<RawTrunk>>,
    preserve_default_vlan: bool,
    macspoofchk: bool,
    enabledad: bool,
    disable_container_interface: bool,
    port_isolation: bool,
}

/// The validated bridge configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeConf {
    pub bridge: String,
    pub is_gateway: bool,
    pub is_default_gateway: bool,
    pub force_address: bool,
    pub ip_masq: bool,
    pub ip_masq_backend: Option<String>,
    pub mtu: Option<u32>,
    pub hairpin: bool,
    pub promisc: bool,
    pub vlan: u16,
    pub trunk: Vec<u16>,
    pub preserve_default_vlan: bool,
    pub macspoofchk: bool,
    pub enabledad: bool,
    pub disable_container_interface: bool,
    pub port_isolation: bool,
    pub has_ipam: bool,
    /// From CNI_ARGS MAC, args.cni.mac, runtimeConfig.mac (the last one given wins).
    pub mac: Option<String>,
}

fn vlan_id(v: i64, field: &str) -> Result<u16, CniError> {
    if (1..=4094).contains(&v) {
        Ok(v as u16)
    } else {
        Err(CniError::config(format!("bridge: {field} {v} is out of range 1-4094")))
    }
}

impl BridgeConf {
    pub fn from_cx(cx: &Cx) -> Result<BridgeConf, CniError> {
        let raw: RawConf = cx.conf.plugin()?;
        let bridge = raw.bridge.filter(|b| !b.is_empty()).unwrap_or_else(|| "cni0".into());
        validate::ifname(&bridge).map_err(|e| CniError::config(format!("bridge: \"bridge\": {e}")))?;
        let mtu = match raw.mtu {
            None | Some(0) => None,
            Some(m) if (68..=65535).contains(&m) => Some(m as u32),
            Some(m) => return Err(CniError::config(format!("bridge: \"mtu\" {m} is out of range 68-65535"))),
        };
        let vlan = match raw.vlan {
            None | Some(0) => 0,
            Some(v) => vlan_id(v, "\"vlan\"")?,
        };
        let mut trunk = Vec::new();
        for (i, t) in raw.vlan_trunk.unwrap_or_default().iter().enumerate() {
            match (t.id, t.min_id, t.max_id) {
                (Some(id), None, None) => trunk.push(vlan_id(id, &format!("vlanTrunk[{i}].id"))?),
                (None, Some(lo), Some(hi)) => {
                    let (lo, hi) = (
                        vlan_id(lo, &format!("vlanTrunk[{i}].minID"))?,
                        vlan_id(hi, &format!("vlanTrunk[{i}].maxID"))?,
                    );
                    if lo > hi {
                        return Err(CniError::config(format!(
                            "bridge: vlanTrunk[{i}]: minID {lo} is above maxID {hi}"
                        )));
                    }
                    trunk.extend(lo..=hi);
                }
                _ => {
                    return Err(CniError::config(format!(
                        "bridge: vlanTrunk[{i}] needs either \"id\" or both \"minID\" and \"maxID\""
                    )));
                }
            }
        }
        trunk.sort_unstable();
        trunk.dedup();
        if raw.hairpin_mode && raw.promisc_mode {
            return Err(CniError::config("bridge: cannot set both \"hairpinMode\" and \"promiscMode\""));
        }
        let has_ipam = cx.conf.ipam_type.is_some();
        if has_ipam && raw.disable_container_interface {
            return Err(CniError::config("bridge: \"disableContainerInterface\" cannot be used with IPAM"));
        }
        let mut mac = None;
        let mut candidates = Vec::new();
        if let Some(m) = cx.env.args.get("MAC") {
            candidates.push(("CNI_ARGS MAC", m.to_string()));
        }
        if let Some(m) = cx.conf.args_cni("mac").and_then(|v| v.as_str()) {
            candidates.push(("args.cni.mac", m.to_string()));
        }
        if let Some(m) = cx.conf.runtime_config.get("mac").and_then(|v| v.as_str()) {
            candidates.push(("runtimeConfig.mac", m.to_string()));
        }
        for (field, m) in candidates {
            mac = Some(names::parse_mac(&m).map_err(|e| CniError::config(format!("bridge: {field}: {e}")))?);
        }
        Ok(BridgeConf {
            bridge,
            is_gateway: raw.is_gateway || raw.is_default_gateway,
            is_default_gateway: raw.is_default_gateway,
            force_address: raw.force_address,
            ip_masq: raw.ip_masq,
            ip_masq_backend: raw.ip_masq_backend,
            mtu,
            hairpin: raw.hairpin_mode,
            promisc: raw.promisc_mode,
            vlan,
            trunk,
            preserve_default_vlan: raw.preserve_default_vlan,
            macspoofchk: raw.macspoofchk,
            enabledad: raw.enabledad,
            disable_container_interface: raw.disable_container_interface,
            port_isolation: raw.port_isolation,
            has_ipam,
            mac,
        })
    }

    /// Where the gateway addresses go: the bridge, or its VLAN gateway device.
    fn gateway_dev(&self) -> Result<String, CniError> {
        if self.vlan == 0 {
            return Ok(self.bridge.clone());
        }
        let dev = format!("{}.{}", self.bridge, self.vlan);
        validate::ifname(&dev).map_err(|e| CniError::config(format!("bridge: VLAN gateway device: {e}")))?;
        Ok(dev)
    }
}

/// What ADD found on the host before planning.
#[derive(Debug, Clone, Default)]
pub struct HostState {
    pub bridge: Option<Link>,
    pub vlan_gateway: Option<Link>,
}

/// Names and MACs of one attachment.
#[derive(Debug, Clone)]
struct Names {
    host_veth: String,
    host_mac: String,
    container_mac: String,
    bridge_mac: String,
}

fn attachment(conf: &BridgeConf, target: &Target, state: &HostState) -> Names {
    let Target { network, id, ifname, host_id, .. } = *target;
    let host_veth = names::host_veth(network, id, ifname);
    Names {
        host_mac: names::mac(&format!("host\0{host_id}\0{host_veth}")),
        container_mac: conf
            .mac
            .clone()
            .unwrap_or_else(|| names::mac(&format!("container\0{host_id}\0{network}\0{id}\0{ifname}"))),
        bridge_mac: state
            .bridge
            .as_ref()
            .map(|b| b.address.clone())
            .unwrap_or_else(|| names::mac(&format!("bridge\0{host_id}\0{}", conf.bridge))),
        host_veth,
    }
}

fn sysctl_host(plan: &mut Plan, s: Sysctl) {
    plan.push(&Netns::Host, Op::Sysctl(s)).tolerate(Tolerate::Any);
}

/// Gateway addresses to put on the bridge, with what must be removed first.
fn plan_gateway_addresses(
    plan: &mut Plan,
    conf: &BridgeConf,
    dev: &str,
    current: Option<&Link>,
    gateways: &[IpNetwork],
) -> Result<(), CniError> {
    for gw in gateways {
        let existing: Vec<IpNetwork> = current
            .map(|l| l.addr_info.iter().filter_map(|a| a.network()).filter(|n| n.is_ipv4() == gw.is_ipv4()).collect())
            .unwrap_or_default();
        if existing.contains(gw) {
            continue;
        }
        let conflicting: Vec<IpNetwork> = existing
            .into_iter()
            .filter(|e| {
                if gw.is_ipv4() {
                    true
                } else {
                    // IPv6: only an overlapping prefix conflicts; link-local always coexists.
                    !matches!(e.ip(), IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80)
                        && (e.contains(gw.ip()) || gw.contains(e.ip()))
                }
            })
            .collect();
        for old in conflicting {
            if !conf.force_address {
                return Err(CniError::config(format!(
                    "bridge: {dev:?} already has an IP address different from {gw} ({old}); set \"forceAddress\" to replace it"
                )));
            }
            plan.push(&Netns::Host, Op::AddrDel { dev: dev.to_string(), addr: old });
        }
        let add = Op::AddrAdd { dev: dev.to_string(), addr: *gw };
        plan.push(&Netns::Host, add.clone()).undo(undo_of(&add).expect("addr undo"));
    }
    Ok(())
}

fn macspoof_ids(id: &str, ifname: &str) -> (String, String) {
    let key = format!("{id}-{ifname}");
    (format!("cni-br-iface-{key}"), format!("macspoofchk-{key}"))
}

fn plan_macspoofchk(plan: &mut Plan, host_veth: &str, mac: &str, id: &str, ifname: &str) {
    let t = NftTable::bridge("nat");
    let (chain, comment) = macspoof_ids(id, ifname);
    let mac_chain = format!("{chain}-mac");
    let rule = |chain: &str, rule: NftRule| NftOp::AddRule {
        table: t.clone(),
        chain: chain.to_string(),
        rule,
        comment: Some(comment.clone()),
    };
    let ops = vec![
        NftOp::AddTable { table: t.clone() },
        NftOp::AddChain { table: t.clone(), chain: "PREROUTING".into(), base: Some(BaseChain::BridgeFilterPrerouting) },
        NftOp::AddChain { table: t.clone(), chain: chain.clone(), base: None },
        NftOp::AddChain { table: t.clone(), chain: mac_chain.clone(), base: None },
        NftOp::FlushChain { table: t.clone(), chain: chain.clone() },
        NftOp::FlushChain { table: t.clone(), chain: mac_chain.clone() },
        rule("PREROUTING", NftRule::IifnameJump { iifname: host_veth.to_string(), chain: chain.clone() }),
        rule(&chain, NftRule::Jump { chain: mac_chain.clone() }),
        rule(&mac_chain, NftRule::EtherSaddrReturn { mac: mac.to_string() }),
        rule(&mac_chain, NftRule::Drop),
    ];
    plan.push(&Netns::Host, Op::Firewall(FirewallOp::nft(ops))).undo(macspoof_teardown(id, ifname));
}

fn macspoof_teardown(id: &str, ifname: &str) -> Op {
    let t = NftTable::bridge("nat");
    let (chain, comment) = macspoof_ids(id, ifname);
    Op::Firewall(FirewallOp::nft(vec![
        NftOp::DeleteRulesByComment { table: t.clone(), chain: "PREROUTING".into(), prefix: comment },
        NftOp::FlushChain { table: t.clone(), chain: chain.clone() },
        NftOp::FlushChain { table: t.clone(), chain: format!("{chain}-mac") },
        NftOp::DeleteChain { table: t.clone(), chain: chain.clone() },
        NftOp::DeleteChain { table: t, chain: format!("{chain}-mac") },
    ]))
}

/// The ADD plan and its result, from the config, the host state and the IPAM answer.
/// Pure: no I/O.
/// The identity of one attachment as ADD sees it.
pub struct Target<'a> {
    pub network: &'a str,
    pub id: &'a str,
    pub ifname: &'a str,
    pub netns: &'a std::path::Path,
    pub host_id: &'a str,
}

pub fn plan_add(
    conf: &BridgeConf,
    target: &Target,
    state: &HostState,
    ipam: Option<&CniResult>,
    masq_backend: Option<masq::Backend>,
) -> Result<(Plan, CniResult), CniError> {
    let Target { network, id, ifname, netns, .. } = *target;
    let host = Netns::Host;
    let ctr = Netns::Container(netns.to_path_buf());
    let att = attachment(conf, target, state);
    let mut plan = Plan::new();
    let br = &conf.bridge;
    let vlan_filtering = conf.vlan != 0 || !conf.trunk.is_empty();

    // 1. The bridge.
    match &state.bridge {
        Some(link) if link.kind() != "bridge" => {
            return Err(CniError::config(format!("bridge: {br:?} already exists but is not a bridge")));
        }
        Some(link) => {
            if conf.promisc && link.promiscuity == 0 {
                plan.push(&host, Op::LinkSet(LinkSet { promisc: Some(true), ..LinkSet::dev(br) }));
            }
            if !link.is_up() {
                plan.push(&host, Op::LinkSet(LinkSet::up(br)));
            }
        }
        None => {
            let add = Op::LinkAdd(LinkAdd::Bridge {
                name: br.clone(),
                mtu: conf.mtu,
                mac: Some(att.bridge_mac.clone()),
                vlan_filtering,
            });
            plan.push(&host, add.clone()).undo(undo_of(&add).expect("link undo"));
            let mut set = LinkSet::up(br);
            if conf.promisc {
                set.promisc = Some(true);
            }
            plan.push(&host, Op::LinkSet(set));
        }
    }

    // 2. The veth pair, its host end on the bridge.
    let veth = Op::LinkAdd(LinkAdd::Veth {
        name: att.host_veth.clone(),
        mtu: conf.mtu,
        mac: Some(att.host_mac.clone()),
        peer: ifname.to_string(),
        peer_mac: Some(att.container_mac.clone()),
        peer_netns: Some(netns.to_path_buf()),
    });
    plan.push(&host, veth.clone()).undo(undo_of(&veth).expect("link undo"));
    plan.push(&host, Op::LinkSet(LinkSet { master: Some(br.clone()), ..LinkSet::dev(&att.host_veth) }));
    if conf.hairpin || conf.port_isolation {
        plan.push(
            &host,
            Op::BridgePort(BridgePort {
                dev: att.host_veth.clone(),
                hairpin: conf.hairpin,
                isolated: conf.port_isolation,
            }),
        );
    }
    plan.push(&host, Op::LinkSet(LinkSet::up(&att.host_veth)));
    if vlan_filtering {
        if !conf.preserve_default_vlan {
            plan.push(&host, Op::BridgeVlanDel { dev: att.host_veth.clone(), vid: 1 });
        }
        if conf.vlan != 0 {
            plan.push(
                &host,
                Op::BridgeVlanAdd { dev: att.host_veth.clone(), vid: conf.vlan, pvid: true, untagged: true },
            );
        }
        for vid in &conf.trunk {
            plan.push(&host, Op::BridgeVlanAdd { dev: att.host_veth.clone(), vid: *vid, pvid: false, untagged: false });
        }
        if conf.vlan == 0 && !conf.trunk.is_empty() && !conf.preserve_default_vlan {
            plan.push(&host, Op::BridgeVlanAdd { dev: att.host_veth.clone(), vid: 1, pvid: true, untagged: true });
        }
    }

    let mut result = CniResult {
        interfaces: vec![
            Interface { name: br.clone(), mac: att.bridge_mac.clone(), ..Interface::default() },
            Interface { name: att.host_veth.clone(), mac: att.host_mac.clone(), mtu: conf.mtu, ..Interface::default() },
            Interface {
                name: ifname.to_string(),
                mac: att.container_mac.clone(),
                mtu: conf.mtu,
                sandbox: netns.display().to_string(),
                ..Interface::default()
            },
        ],
        ..CniResult::default()
    };

    if conf.macspoofchk {
        plan_macspoofchk(&mut plan, &att.host_veth, &att.container_mac, id, ifname);
    }

    // 3. Addresses, routes, gateway, masquerading.
    if let Some(ipam) = ipam {
        if ipam.ips.is_empty() {
            return Err(CniError::config("bridge: IPAM plugin returned missing IP config"));
        }
        result.ips = ipam.ips.clone();
        result.routes = ipam.routes.clone();
        result.dns = ipam.dns.clone();
        let mut gateways = Vec::new();
        for ip in &mut result.ips {
            ip.interface = Some(2);
            if conf.is_gateway && ip.gateway.is_none() {
                let first = first_host(&ip.address).ok_or_else(|| {
                    CniError::config(format!("bridge: subnet of {} has no room for a gateway", ip.address))
                })?;
                ip.gateway = Some(first);
            }
            if conf.is_gateway {
                let gw = ip.gateway.expect("set above");
                let net = IpNetwork::new(gw, ip.address.prefix())
                    .map_err(|e| CniError::config(format!("bridge: gateway {gw}: {e}")))?;
                if !gateways.contains(&net) {
                    gateways.push(net);
                }
            }
        }
        if conf.is_default_gateway {
            for v4 in [true, false] {
                let has_default =
                    result.routes.iter().any(|r| r.is_default() && r.dst.is_ipv4() == v4 && r.gw.is_some());
                let gw = result.ips.iter().filter(|ip| ip.address.is_ipv4() == v4).find_map(|ip| ip.gateway);
                if let (false, Some(gw)) = (has_default, gw) {
                    let dst = if v4 { "0.0.0.0/0" } else { "::/0" };
                    result.routes.push(Route::new(dst.parse().expect("default"), Some(gw)));
                }
            }
        }
        if conf.is_gateway {
            let dev = conf.gateway_dev()?;
            if conf.vlan != 0 {
                // The reference sets the VLAN gateway device up like a container's port
                // (preserveDefaultVlan included) and reports it after the container's
                // interface; its MAC is derived so the result can name it before it exists.
                let mac = match &state.vlan_gateway {
                    Some(link) => link.address.clone(),
                    None => names::mac(&format!("vlangw\0{}\0{dev}", target.host_id)),
                };
                if state.vlan_gateway.is_none() {
                    let peer = names::hash_with_prefix(15, "vethgw", &format!("{br}.{}", conf.vlan));
                    let add = Op::LinkAdd(LinkAdd::Veth {
                        name: dev.clone(),
                        mtu: conf.mtu,
                        mac: Some(mac.clone()),
                        peer: peer.clone(),
                        peer_mac: None,
                        peer_netns: None,
                    });
                    plan.push(&host, add.clone()).undo(undo_of(&add).expect("undo"));
                    plan.push(&host, Op::LinkSet(LinkSet { master: Some(br.clone()), ..LinkSet::up(&peer) }));
                    if !conf.preserve_default_vlan {
                        plan.push(&host, Op::BridgeVlanDel { dev: peer.clone(), vid: 1 });
                    }
                    plan.push(&host, Op::BridgeVlanAdd { dev: peer, vid: conf.vlan, pvid: true, untagged: true });
                    plan.push(&host, Op::LinkSet(LinkSet::up(&dev)));
                }
                if !gateways.is_empty() {
                    result.interfaces.push(Interface { name: dev.clone(), mac, ..Interface::default() });
                }
            }
            let current = if conf.vlan != 0 { state.vlan_gateway.as_ref() } else { state.bridge.as_ref() };
            plan_gateway_addresses(&mut plan, conf, &dev, current, &gateways)?;
            if gateways.iter().any(|g| g.is_ipv4()) {
                sysctl_host(&mut plan, Sysctl::new(&["net", "ipv4", "ip_forward"], "1"));
            }
            if gateways.iter().any(|g| g.is_ipv6()) {
                sysctl_host(&mut plan, Sysctl::new(&["net", "ipv6", "conf", "all", "forwarding"], "1"));
            }
        }
        // Container side after every host step, so the host side is one `ip -batch`.
        iface::plan_dad_and_arp(&mut plan, &ctr, ifname, conf.enabledad);
        iface::plan_configure(&mut plan, &ctr, ifname, 2, &result, conf.enabledad)?;
        if let Some(backend) = masq_backend {
            let addrs: Vec<IpNetwork> = result.ips.iter().map(|ip| ip.address).collect();
            masq::plan_setup(&mut plan, backend, network, id, ifname, &addrs);
        }
    } else if !conf.disable_container_interface {
        plan.push(&ctr, Op::LinkSet(LinkSet::up(ifname)));
    }

    if state.bridge.is_none() {
        sysctl_host(&mut plan, Sysctl::iface("ipv6", br, "accept_ra", "0"));
    }
    sysctl_host(&mut plan, Sysctl::iface("ipv6", &att.host_veth, "accept_ra", "0"));
    if !conf.disable_container_interface {
        plan.push(&host, Op::WaitOperUp { dev: att.host_veth.clone() });
    }
    Ok((plan, result))
}

/// The first host address of a subnet (network + 1), the default gateway.
fn first_host(net: &IpNetwork) -> Option<IpAddr> {
    match net.network() {
        IpAddr::V4(a) => u32::from(a).checked_add(1).map(|n| IpAddr::V4(n.into())),
        IpAddr::V6(a) => u128::from(a).checked_add(1).map(|n| IpAddr::V6(n.into())),
    }
}

/// Whether `plan` changes what every attachment of the bridge shares: the bridge (its
/// creation, state, addresses) or its VLAN gateway device.
fn changes_bridge(plan: &Plan, conf: &BridgeConf) -> bool {
    let gw_dev = conf.gateway_dev().unwrap_or_default();
    let shared = |dev: &str| dev == conf.bridge || dev == gw_dev;
    plan.steps.iter().any(|s| {
        s.ns == Netns::Host
            && match &s.op {
                Op::LinkAdd(LinkAdd::Bridge { .. }) => true,
                Op::LinkAdd(LinkAdd::Veth { name, .. }) => shared(name),
                Op::LinkSet(set) => shared(&set.dev),
                Op::AddrAdd { dev, .. } | Op::AddrDel { dev, .. } => shared(dev),
                _ => false,
            }
    })
}

fn observe_host(cx: &mut Cx, conf: &BridgeConf) -> Result<HostState, CniError> {
    let bridge = observe::link_addrs(cx.obs, &Netns::Host, &conf.bridge)?;
    let vlan_gateway = if conf.vlan != 0 && conf.is_gateway && conf.has_ipam {
        observe::link_addrs(cx.obs, &Netns::Host, &conf.gateway_dev()?)?
    } else {
        None
    };
    Ok(HostState { bridge, vlan_gateway })
}

impl Plugin for Bridge {
    fn name(&self) -> &'static str {
        "bridge"
    }
    fn about(&self) -> &'static str {
        "CNI bridge plugin (ipcni)"
    }

    fn add(&self, cx: &mut Cx) -> Result<CniResult, CniError> {
        let conf = BridgeConf::from_cx(cx)?;
        let network = cx.conf.require_name()?.to_string();
        let netns = cx.netns_path()?;
        let backend = if conf.ip_masq && conf.has_ipam {
            Some(masq::choose_backend(conf.ip_masq_backend.as_deref(), cx.obs)?)
        } else {
            None
        };
        // IPAM runs while the host's ip starts; from here on every failure releases the
        // address.
        cx.obs.warm(&Netns::Host);
        let ipam = if conf.has_ipam { Some(cx.ipam.add(cx.env, cx.conf)?) } else { None };
        let target = Target {
            network: &network,
            id: &cx.env.container_id,
            ifname: &cx.env.ifname,
            netns: &netns,
            host_id: cx.host_id,
        };
        let mut planned =
            observe_host(cx, &conf).and_then(|state| plan_add(&conf, &target, &state, ipam.as_ref(), backend));
        // One lock per bridge, taken only when this ADD changes the bridge itself (creates
        // it, its gateway address, its VLAN gateway): observing and changing it, and
        // rolling back a bridge this ADD created, must not interleave with another ADD.
        // An ADD that only adds its own port needs none, so ADDs on one ready bridge run
        // in parallel, as the reference's do.
        let mut _lock = None;
        if planned.as_ref().is_ok_and(|(plan, _)| changes_bridge(plan, &conf)) {
            // Under the lock, plan again from what is there now (a dry run takes none).
            // A lock that cannot be had fails the ADD like any step: the address goes back.
            planned = match cx.lock(&format!("bridge-{}", conf.bridge)) {
                Err(e) => Err(e),
                Ok(None) => planned,
                Ok(Some(lock)) => {
                    _lock = Some(lock);
                    observe_host(cx, &conf).and_then(|state| plan_add(&conf, &target, &state, ipam.as_ref(), backend))
                }
            };
        }
        let outcome = planned.and_then(|(plan, mut result)| {
            apply(cx.exec, &plan)?;
            if let Some(dns) = cx.conf.dns.as_ref().filter(|d| !d.is_empty()) {
                result.dns = dns.clone();
            }
            Ok(result)
        });
        if outcome.is_err()
            && conf.has_ipam
            && let Err(e) = cx.ipam.undo_add(cx.env, cx.conf)
        {
            crate::exec::log(&format!("releasing the address after a failed ADD: {e}"));
        }
        outcome
    }

    fn del(&self, cx: &mut Cx) -> Result<(), CniError> {
        // DEL must work with whatever is left: parse what is needed, tolerate the rest.
        let conf = BridgeConf::from_cx(cx)?;
        let network = cx.conf.require_name()?.to_string();
        let mut plan = Plan::new();
        if let NetnsState::Present(p) = &cx.netns {
            // Deleting the container end removes the host end with it.
            plan.push(&Netns::Container(p.clone()), Op::LinkDel { dev: cx.env.ifname.clone() })
                .tolerate(Tolerate::Missing);
        } else {
            // No netns to enter: the host end may linger (a runtime that removed the netns
            // file while the namespace lives on), so remove it by its derived name.
            let host_veth = names::host_veth(&network, &cx.env.container_id, &cx.env.ifname);
            if observe::link_addrs(cx.obs, &Netns::Host, &host_veth)?.is_some() {
                plan.push(&Netns::Host, Op::LinkDel { dev: host_veth }).tolerate(Tolerate::Missing);
            }
        }
        if conf.macspoofchk {
            plan.push(&Netns::Host, macspoof_teardown(&cx.env.container_id, &cx.env.ifname)).tolerate(Tolerate::Any);
        }
        if conf.ip_masq {
            masq::plan_teardown(&mut plan, cx.obs, &network, &cx.env.container_id, &cx.env.ifname);
        }
        apply(cx.exec, &plan)?;
        if conf.has_ipam {
            cx.ipam.del(cx.env, cx.conf)?;
        }
        Ok(())
    }

    fn check(&self, cx: &mut Cx) -> Result<(), CniError> {
        let conf = BridgeConf::from_cx(cx)?;
        let network = cx.conf.require_name()?.to_string();
        let netns = cx.netns_path()?;
        let prev = cx.conf.prev_result.clone().ok_or_else(|| CniError::config("bridge: CHECK requires prevResult"))?;
        if conf.has_ipam {
            cx.ipam.check(cx.env, cx.conf)?;
        }
        let idx = prev
            .sandbox_interface(&cx.env.ifname)
            .ok_or_else(|| CniError::check(format!("prevResult has no sandboxed interface {:?}", cx.env.ifname)))?;
        let ctr_if = &prev.interfaces[idx];
        if ctr_if.sandbox != netns.display().to_string() {
            return Err(CniError::check(format!(
                "interface {} is in sandbox {}, not CNI_NETNS {}",
                ctr_if.name,
                ctr_if.sandbox,
                netns.display()
            )));
        }
        let br = observe::link_addrs(cx.obs, &Netns::Host, &conf.bridge)?
            .ok_or_else(|| CniError::check(format!("bridge {} is missing", conf.bridge)))?;
        if br.kind() != "bridge" {
            return Err(CniError::check(format!("{} is not a bridge", conf.bridge)));
        }
        if let Some(want) = prev.interfaces.iter().find(|i| i.name == conf.bridge && i.sandbox.is_empty())
            && !want.mac.is_empty()
            && !want.mac.eq_ignore_ascii_case(&br.address)
        {
            return Err(CniError::check(format!(
                "bridge {} has MAC {}, expected {}",
                conf.bridge, br.address, want.mac
            )));
        }
        if conf.promisc && br.promiscuity == 0 {
            return Err(CniError::check(format!("bridge {} is not promiscuous", conf.bridge)));
        }
        let ctr = Netns::Container(netns.clone());
        let link = observe::link_addrs(cx.obs, &ctr, &cx.env.ifname)?
            .ok_or_else(|| CniError::check(format!("container interface {} is missing", cx.env.ifname)))?;
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
        let ports = observe::bridge_ports(cx.obs, &Netns::Host, &conf.bridge)?;
        let peer = link.link_index;
        if !ports.iter().any(|p| Some(p.ifindex) == peer && p.kind() == "veth") {
            return Err(CniError::check(format!(
                "no veth on bridge {} is the peer of container interface {}",
                conf.bridge, link.ifname
            )));
        }
        let v4 = observe::routes(cx.obs, &ctr, &cx.env.ifname, false)?;
        let v6 = if prev.ips.iter().any(|i| i.address.is_ipv6()) || prev.routes.iter().any(|r| r.dst.is_ipv6()) {
            observe::routes(cx.obs, &ctr, &cx.env.ifname, true)?
        } else {
            Vec::new()
        };
        iface::check_configured(&link, &v4, &v6, idx, &prev)?;
        if conf.ip_masq && conf.has_ipam {
            let backend = masq::choose_backend(conf.ip_masq_backend.as_deref(), cx.obs)?;
            masq::check(cx.obs, backend, &network, &cx.env.container_id, &cx.env.ifname)?;
        }
        Ok(())
    }

    fn status(&self, cx: &mut Cx) -> Result<(), CniError> {
        let conf = BridgeConf::from_cx(cx)?;
        if conf.ip_masq {
            let backend = masq::choose_backend(conf.ip_masq_backend.as_deref(), cx.obs)?;
            if !observe::backend_usable(cx.obs, backend == masq::Backend::Nftables) {
                return Err(CniError::new(
                    crate::spec::code::PLUGIN_NOT_AVAILABLE,
                    format!("bridge: ipMasq backend {backend:?} is not usable"),
                ));
            }
        }
        if conf.has_ipam { cx.ipam.status(cx.env, cx.conf) } else { Ok(()) }
    }

    fn gc(&self, cx: &mut Cx) -> Result<(), CniError> {
        let conf = BridgeConf::from_cx(cx)?;
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
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => {
                Err(CniError::new(errors[0].code, errors.iter().map(|e| e.msg.clone()).collect::<Vec<_>>().join("; ")))
            }
        }
    }
}
