//! macvlan: a macvlan device on a master, created from the host straight into the
//! container under a temporary name, renamed there to CNI_IFNAME. IPAM is optional
//! (`"ipam": {}` gives an L2-only link that is just brought up).
//! Layers: RawConf (serde) → MacvlanConf (validated, no I/O) → the master observed →
//! `plan_add` (pure) → apply.

use serde::Deserialize;

use super::shared::sublink::{self, ExpectMaster, Master, Target};
use crate::plan::{LinkAdd, MacvlanMode, Plan};
use crate::skel::{Cx, Plugin};
use crate::spec::{CniError, CniResult, Dns, Interface};

pub struct Macvlan;

const KIND: &str = "macvlan";

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawConf {
    master: Option<String>,
    mode: Option<String>,
    mtu: Option<i64>,
    mac: Option<String>,
    link_in_container: bool,
    bcqueuelen: Option<i64>,
}

/// The validated macvlan configuration (the master's MTU bound is checked once the
/// master is observed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacvlanConf {
    /// None: the device of the first default route.
    pub master: Option<String>,
    pub mode: MacvlanMode,
    pub mtu: Option<i64>,
    /// From `mac`, CNI_ARGS MAC, args.cni.mac, runtimeConfig.mac (the last one given wins).
    pub mac: Option<String>,
    pub link_in_container: bool,
    pub bcqueuelen: Option<u32>,
    pub has_ipam: bool,
}

pub fn parse_mode(s: Option<&str>) -> Result<MacvlanMode, CniError> {
    match s.unwrap_or("") {
        "" | "bridge" => Ok(MacvlanMode::Bridge),
        "private" => Ok(MacvlanMode::Private),
        "vepa" => Ok(MacvlanMode::Vepa),
        "passthru" => Ok(MacvlanMode::Passthru),
        other => Err(CniError::config(format!("macvlan: unknown mode {other:?} (bridge, private, vepa or passthru)"))),
    }
}

impl MacvlanConf {
    pub fn from_cx(cx: &Cx) -> Result<MacvlanConf, CniError> {
        let raw: RawConf = cx.conf.plugin()?;
        let master = sublink::master_name(KIND, raw.master)?;
        let mode = parse_mode(raw.mode.as_deref())?;
        sublink::mtu_shape(KIND, raw.mtu)?;
        let bcqueuelen = match raw.bcqueuelen {
            None | Some(0) => None,
            Some(n) => Some(u32::try_from(n).map_err(|_| {
                CniError::config(format!("macvlan: \"bcqueuelen\" {n} is out of range 0-{}", u32::MAX))
            })?),
        };
        let mac = sublink::requested_mac(cx, KIND, raw.mac.as_deref())?;
        if mode == MacvlanMode::Passthru && mac.is_some() {
            return Err(CniError::config(
                "macvlan: a MAC address cannot be set in passthru mode: the device takes its master's",
            ));
        }
        Ok(MacvlanConf {
            master,
            mode,
            mtu: raw.mtu,
            mac,
            link_in_container: raw.link_in_container,
            bcqueuelen,
            has_ipam: cx.conf.ipam_type.is_some(),
        })
    }
}

/// The ADD plan and its result, from the config, the observed master and the IPAM
/// answer. Pure: no I/O.
pub fn plan_add(
    conf: &MacvlanConf,
    target: &Target,
    master: &Master,
    ipam: Option<&CniResult>,
    dns: Option<&Dns>,
) -> Result<(Plan, CniResult), CniError> {
    let mtu = sublink::mtu(KIND, conf.mtu, master)?;
    let tmp = sublink::temp_name(KIND, target.network, target.id, target.ifname);
    // Passthru takes the master's address; otherwise the MAC is chosen here (asked
    // for, or derived) so the result needs no read-back.
    let mac = match conf.mode {
        MacvlanMode::Passthru => None,
        _ => Some(conf.mac.clone().unwrap_or_else(|| sublink::derived_mac(KIND, target))),
    };
    let iface = Interface {
        name: target.ifname.to_string(),
        mac: mac.clone().unwrap_or_else(|| master.mac.clone()),
        mtu,
        sandbox: target.netns.display().to_string(),
        ..Interface::default()
    };
    let link = LinkAdd::Macvlan {
        name: tmp,
        master: master.name.clone(),
        mode: conf.mode,
        mtu,
        mac,
        bcqueuelen: conf.bcqueuelen,
        netns: (!conf.link_in_container).then(|| target.netns.to_path_buf()),
    };
    let mut plan = Plan::new();
    sublink::plan_create_and_rename(&mut plan, link, conf.link_in_container, target.netns, target.ifname);
    let result = sublink::plan_addresses(&mut plan, KIND, target.netns, target.ifname, iface, ipam, dns)?;
    Ok((plan, result))
}

fn master_name(cx: &mut Cx, conf: &MacvlanConf, netns: &std::path::Path) -> Result<String, CniError> {
    match &conf.master {
        Some(m) => Ok(m.clone()),
        None => sublink::default_route_dev(cx.obs, &sublink::master_ns(conf.link_in_container, netns), KIND),
    }
}

impl Plugin for Macvlan {
    fn name(&self) -> &'static str {
        "macvlan"
    }
    fn about(&self) -> &'static str {
        "CNI macvlan plugin (ipcni)"
    }

    fn add(&self, cx: &mut Cx) -> Result<CniResult, CniError> {
        let conf = MacvlanConf::from_cx(cx)?;
        let network = cx.conf.require_name()?.to_string();
        let netns = cx.netns_path()?;
        let name = master_name(cx, &conf, &netns)?;
        let master = sublink::observe_master(cx.obs, &sublink::master_ns(conf.link_in_container, &netns), &name, KIND)?;
        // Refuse a bad MTU before reserving an address.
        sublink::mtu(KIND, conf.mtu, &master)?;
        let (id, ifname, host_id) = (cx.env.container_id.clone(), cx.env.ifname.clone(), cx.host_id.to_string());
        let target = Target { network: &network, id: &id, ifname: &ifname, netns: &netns, host_id: &host_id };
        let dns = cx.conf.dns.clone();
        sublink::run_add(cx, conf.has_ipam, |ipam| plan_add(&conf, &target, &master, ipam, dns.as_ref()))
    }

    fn del(&self, cx: &mut Cx) -> Result<(), CniError> {
        // Only names are needed: a config whose master is gone still deletes.
        let network = cx.conf.require_name()?.to_string();
        let temp = sublink::temp_name(KIND, &network, &cx.env.container_id, &cx.env.ifname);
        sublink::run_del(cx, Some(temp))
    }

    fn check(&self, cx: &mut Cx) -> Result<(), CniError> {
        let conf = MacvlanConf::from_cx(cx)?;
        let netns = cx.netns_path()?;
        let name = master_name(cx, &conf, &netns)?;
        let master = ExpectMaster { name: &name, in_container: conf.link_in_container };
        sublink::run_check(cx, KIND, KIND, Some(master), |seen| {
            sublink::check_info_str(seen, KIND, "mode", conf.mode.as_str())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Netns, Op};

    fn conf() -> MacvlanConf {
        MacvlanConf {
            master: Some("eth0".into()),
            mode: MacvlanMode::Bridge,
            mtu: None,
            mac: None,
            link_in_container: false,
            bcqueuelen: None,
            has_ipam: false,
        }
    }

    fn target() -> Target<'static> {
        Target { network: "net", id: "c1", ifname: "eth0", netns: std::path::Path::new("/run/netns/c1"), host_id: "h" }
    }

    fn master() -> Master {
        Master { name: "eth0".into(), ifindex: 2, mtu: 1500, mac: "52:54:00:00:00:01".into() }
    }

    #[test]
    fn created_on_the_host_into_the_container_and_renamed_there() {
        let (plan, result) = plan_add(&conf(), &target(), &master(), None, None).unwrap();
        let ctr = Netns::Container("/run/netns/c1".into());
        assert_eq!(plan.steps[0].ns, Netns::Host);
        let Op::LinkAdd(LinkAdd::Macvlan { name: tmp, netns, .. }) = &plan.steps[0].op else { panic!() };
        assert_eq!(netns.as_deref(), Some(std::path::Path::new("/run/netns/c1")));
        // The undo of the create deletes the temporary name in the container, where the
        // link is, whichever later step fails.
        assert_eq!(plan.steps[0].undo, Some(Op::LinkDel { dev: tmp.clone() }));
        assert_eq!(plan.steps[0].undo_ns, Some(ctr.clone()));
        let rename = plan.steps.iter().find(|s| matches!(&s.op, Op::LinkSet(l) if l.name.is_some())).unwrap();
        assert_eq!(rename.ns, ctr);
        assert_eq!(rename.undo, Some(Op::LinkDel { dev: "eth0".into() }));
        assert_eq!(result.interfaces.len(), 1);
        assert_eq!(result.interfaces[0].sandbox, "/run/netns/c1");
    }

    #[test]
    fn mtu_above_the_master_is_refused_and_passthru_takes_the_master_mac() {
        let c = MacvlanConf { mtu: Some(9000), ..conf() };
        assert_eq!(plan_add(&c, &target(), &master(), None, None).unwrap_err().code, 7);
        let c = MacvlanConf { mode: MacvlanMode::Passthru, ..conf() };
        let (_, r) = plan_add(&c, &target(), &master(), None, None).unwrap();
        assert_eq!(r.interfaces[0].mac, "52:54:00:00:00:01");
    }
}
