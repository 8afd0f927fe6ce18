//! tap: a persistent tap device made inside the container namespace, for a VM or a
//! userspace network stack running in the container (reference §3.9).
//!
//! Config: `mac`, `mtu`, `multiQueue`, `owner` (uid), `group` (gid), `selinuxContext`
//! (also spelled `selinuxcontext`, as the reference's docs do), `bridge` (an existing
//! bridge inside the container namespace to enslave the tap to), optional `ipam`. The MAC
//! can also come from CNI_ARGS `MAC`, `args.cni.mac` or `runtimeConfig.mac` (the last one
//! given wins); without one a MAC derived from the attachment is set, so the result
//! names it without reading the link back.
//!
//! ADD, all in the container namespace:
//! `ip tuntap add mode tap name $IF [multi_queue] [vnet_hdr] [user U] [group G]`, then
//! `ip link set dev $IF address MAC [mtu M] [master BR] [up]`, then IPAM's addresses and
//! routes. The tap is created under its final name: `ip` runs inside the container
//! namespace, so, unlike the reference's netlink path, no host name can collide with it
//! and no temporary name is needed. `vnet_hdr` is set exactly when the reference sets it
//! (both `owner` and `group` given, no SELinux context); a process attaching to a
//! persistent tap chooses its own flags anyway.
//!
//! `selinuxContext`: the reference sets the exec label of its thread (go-selinux
//! SetExecLabel) and then runs `ip tuntap add`, so the tun device gets the label of the
//! VM that will open it. iproute2 alone cannot do that; ipcni runs the same command under
//! `runcon CONTEXT` (coreutils), which sets that exec label the same way. `runcon` needs
//! an SELinux kernel, so when /sys/fs/selinux is absent ADD fails with code 7 before
//! changing anything, naming the option (the reference fails too, later, when writing
//! /proc/thread-self/attr/exec). The context is never ignored.
//!
//! DEL: `ip link del $IF` in the container (gone is fine), then IPAM DEL.
//! CHECK: the tap is there, is a tap, has the prevResult's MAC, is on `bridge` when set,
//! and has the prevResult's addresses and routes.

use serde::Deserialize;

use super::shared::iface;
use super::shared::sublink::{self, Target};
use crate::exec::{observe, undo_of};
use crate::plan::{LinkAdd, LinkSet, Netns, Op, Plan};
use crate::skel::{Cx, Plugin};
use crate::spec::{CniError, CniResult, Dns, Interface};
use crate::validate;

pub struct Tap;

const PLUGIN: &str = "tap";

/// Where the SELinux filesystem is mounted when SELinux is enabled.
pub const SELINUXFS_ENFORCE: &str = "/sys/fs/selinux/enforce";

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawConf {
    mac: Option<String>,
    mtu: Option<i64>,
    multi_queue: bool,
    owner: Option<i64>,
    group: Option<i64>,
    #[serde(alias = "selinuxcontext")]
    selinux_context: Option<String>,
    bridge: Option<String>,
}

/// The validated tap configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapConf {
    pub mac: Option<String>,
    pub mtu: Option<u32>,
    pub multi_queue: bool,
    pub owner: Option<u32>,
    pub group: Option<u32>,
    pub selinux_context: Option<String>,
    pub bridge: Option<String>,
    pub has_ipam: bool,
}

fn id_field(v: Option<i64>, field: &str) -> Result<Option<u32>, CniError> {
    match v {
        None => Ok(None),
        Some(n) => u32::try_from(n)
            .map(Some)
            .map_err(|_| CniError::config(format!("tap: \"{field}\" {n} is not a valid id (0-4294967295)"))),
    }
}

/// An SELinux context is `user:role:type[:level]`; it becomes one argv word of `runcon`.
fn selinux_context(s: &str) -> Result<String, CniError> {
    let bad = |why: &str| CniError::config(format!("tap: \"selinuxContext\" {s:?} {why}"));
    if s.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\' | '#' | ';')) {
        return Err(bad("contains a character a context cannot have"));
    }
    if s.starts_with('-') {
        return Err(bad("starts with '-'"));
    }
    if s.split(':').count() < 3 || s.split(':').take(3).any(str::is_empty) {
        return Err(bad("is not of the form user:role:type[:level]"));
    }
    Ok(s.to_string())
}

impl TapConf {
    /// Validates the tap keys of `raw` (the whole config object); `mac` is the runtime's
    /// MAC request, already resolved against the config's.
    fn from_raw(raw: RawConf, mac: Option<String>, has_ipam: bool) -> Result<TapConf, CniError> {
        let mtu = match raw.mtu {
            None | Some(0) => None,
            Some(m) if (68..=65535).contains(&m) => Some(m as u32),
            Some(m) => return Err(CniError::config(format!("tap: \"mtu\" {m} is out of range 68-65535"))),
        };
        let bridge = match raw.bridge.filter(|b| !b.is_empty()) {
            None => None,
            Some(b) => {
                validate::ifname(&b).map_err(|e| CniError::config(format!("tap: \"bridge\": {e}")))?;
                Some(b)
            }
        };
        let selinux_context = match raw.selinux_context.filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(selinux_context(&s)?),
        };
        Ok(TapConf {
            mac,
            mtu,
            multi_queue: raw.multi_queue,
            owner: id_field(raw.owner, "owner")?,
            group: id_field(raw.group, "group")?,
            selinux_context,
            bridge,
            has_ipam,
        })
    }

    pub fn from_cx(cx: &Cx) -> Result<TapConf, CniError> {
        let raw: RawConf = cx.conf.plugin()?;
        let mac = sublink::requested_mac(cx, PLUGIN, raw.mac.as_deref())?;
        TapConf::from_raw(raw, mac, cx.conf.ipam_type.is_some())
    }

    /// The reference creates through netlink, with IFF_VNET_HDR, exactly in this case.
    fn vnet_hdr(&self) -> bool {
        self.owner.is_some() && self.group.is_some() && self.selinux_context.is_none()
    }
}

/// What ADD observed before planning.
#[derive(Debug, Clone, Default)]
pub struct TapState {
    /// `bridge` as found in the container namespace (None: absent).
    pub bridge: Option<observe::Link>,
    /// Whether SELinux is enabled (only asked when a context is configured).
    pub selinux_enabled: bool,
}

/// Refuses what the host or the container cannot give (ADD checks this before IPAM runs,
/// so a refusal allocates nothing). Pure.
pub fn check_state(conf: &TapConf, state: &TapState) -> Result<(), CniError> {
    if conf.selinux_context.is_some() && !state.selinux_enabled {
        return Err(CniError::config(format!(
            "tap: \"selinuxContext\" is set but SELinux is not enabled on this host ({SELINUXFS_ENFORCE} is \
             absent): the tap is created by `runcon CONTEXT ip tuntap add`, which needs an SELinux kernel; \
             remove \"selinuxContext\" or enable SELinux"
        )));
    }
    if let Some(br) = &conf.bridge {
        match &state.bridge {
            None => {
                return Err(CniError::config(format!("tap: bridge {br:?} does not exist in the container namespace")));
            }
            Some(l) if l.kind() != "bridge" => {
                return Err(CniError::config(format!(
                    "tap: {br:?} in the container namespace is a {:?}, not a bridge",
                    l.kind()
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The ADD plan and its result. Pure: no I/O.
pub fn plan_add(
    conf: &TapConf,
    target: &Target,
    state: &TapState,
    ipam: Option<&CniResult>,
    dns: Option<&Dns>,
) -> Result<(Plan, CniResult), CniError> {
    check_state(conf, state)?;
    let ifname = target.ifname;
    let ctr = Netns::Container(target.netns.to_path_buf());
    let mac = conf.mac.clone().unwrap_or_else(|| sublink::derived_mac(PLUGIN, target));
    let mut plan = Plan::new();
    let add = Op::LinkAdd(LinkAdd::Tuntap {
        name: ifname.to_string(),
        multi_queue: conf.multi_queue,
        vnet_hdr: conf.vnet_hdr(),
        owner: conf.owner,
        group: conf.group,
        selinux_context: conf.selinux_context.clone(),
    });
    plan.push(&ctr, add.clone()).undo(undo_of(&add).expect("link undo"));
    // With addresses, `up` comes after them (plan_configure), as for the veth plugins.
    let up = if conf.has_ipam { None } else { Some(true) };
    plan.push(
        &ctr,
        Op::LinkSet(LinkSet {
            mac: Some(mac.clone()),
            mtu: conf.mtu,
            master: conf.bridge.clone(),
            up,
            ..LinkSet::dev(ifname)
        }),
    );
    let mut result = CniResult {
        interfaces: vec![Interface {
            name: ifname.to_string(),
            mac,
            mtu: conf.mtu,
            sandbox: target.netns.display().to_string(),
            ..Interface::default()
        }],
        ..CniResult::default()
    };
    if let Some(ipam) = ipam {
        if ipam.ips.is_empty() {
            return Err(CniError::config("tap: IPAM plugin returned missing IP config"));
        }
        result.ips = ipam.ips.clone();
        result.routes = ipam.routes.clone();
        result.dns = ipam.dns.clone();
        for ip in &mut result.ips {
            ip.interface = Some(0);
        }
        // No DAD wait: a tap has no carrier until something opens it.
        iface::plan_dad_and_arp(&mut plan, &ctr, ifname, false);
        iface::plan_configure(&mut plan, &ctr, ifname, 0, &result, false)?;
    }
    if let Some(d) = dns.filter(|d| !d.is_empty()) {
        result.dns = d.clone();
    }
    Ok((plan, result))
}

fn observe_state(cx: &mut Cx, conf: &TapConf, netns: &std::path::Path) -> Result<TapState, CniError> {
    let bridge = match &conf.bridge {
        Some(br) => observe::link_addrs(cx.obs, &Netns::Container(netns.to_path_buf()), br)?,
        None => None,
    };
    let selinux_enabled =
        conf.selinux_context.is_some() && cx.obs.read_file(std::path::Path::new(SELINUXFS_ENFORCE))?.is_some();
    Ok(TapState { bridge, selinux_enabled })
}

impl Plugin for Tap {
    fn name(&self) -> &'static str {
        "tap"
    }
    fn about(&self) -> &'static str {
        "CNI tap plugin (ipcni)"
    }

    fn add(&self, cx: &mut Cx) -> Result<CniResult, CniError> {
        let conf = TapConf::from_cx(cx)?;
        let network = cx.conf.require_name()?.to_string();
        let netns = cx.netns_path()?;
        let state = observe_state(cx, &conf, &netns)?;
        check_state(&conf, &state)?;
        let (id, ifname, host_id) = (cx.env.container_id.clone(), cx.env.ifname.clone(), cx.host_id.to_string());
        let target = Target { network: &network, id: &id, ifname: &ifname, netns: &netns, host_id: &host_id };
        let dns = cx.conf.dns.clone();
        sublink::run_add(cx, conf.has_ipam, |ipam| plan_add(&conf, &target, &state, ipam, dns.as_ref()))
    }

    fn del(&self, cx: &mut Cx) -> Result<(), CniError> {
        sublink::run_del(cx, None)
    }

    fn check(&self, cx: &mut Cx) -> Result<(), CniError> {
        let conf = TapConf::from_cx(cx)?;
        sublink::run_check(cx, PLUGIN, "tun", None, |seen| {
            sublink::check_info_str(seen, PLUGIN, "type", "tap")?;
            if let Some(br) = &conf.bridge
                && seen.link.master.as_deref() != Some(br.as_str())
            {
                return Err(CniError::check(format!("tap: {} is not on bridge {br}", seen.link.ifname)));
            }
            if let Some(m) = conf.mtu
                && seen.link.mtu != m
            {
                return Err(CniError::check(format!(
                    "tap: {} has MTU {}, expected {m}",
                    seen.link.ifname, seen.link.mtu
                )));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(v: serde_json::Value) -> Result<TapConf, CniError> {
        let raw: RawConf = serde_json::from_value(v).map_err(|e| CniError::config(e.to_string()))?;
        TapConf::from_raw(raw, None, false)
    }

    #[test]
    fn options_validate() {
        let c = conf(serde_json::json!({"mtu": 9000, "multiQueue": true, "owner": 107, "group": 0, "bridge": "br0"}))
            .unwrap();
        assert_eq!((c.mtu, c.multi_queue, c.owner, c.group), (Some(9000), true, Some(107), Some(0)));
        assert!(c.vnet_hdr());
        assert!(!conf(serde_json::json!({"owner": 1})).unwrap().vnet_hdr());
        for bad in [
            serde_json::json!({"mtu": 20}),
            serde_json::json!({"owner": -1}),
            serde_json::json!({"group": 4294967296u64}),
            serde_json::json!({"bridge": "br 0"}),
            serde_json::json!({"selinuxContext": "svirt_t"}),
            serde_json::json!({"selinuxContext": "a:b:c d"}),
            serde_json::json!({"multiQueue": "yes"}),
        ] {
            assert_eq!(conf(bad.clone()).unwrap_err().code, 7, "{bad}");
        }
    }

    #[test]
    fn selinux_context_accepts_both_spellings() {
        let c = conf(serde_json::json!({"selinuxcontext": "system_u:system_r:svirt_t:s0:c1,c2"})).unwrap();
        assert_eq!(c.selinux_context.as_deref(), Some("system_u:system_r:svirt_t:s0:c1,c2"));
        assert!(!c.vnet_hdr());
        let c = conf(serde_json::json!({"selinuxContext": "u:r:t"})).unwrap();
        assert_eq!(c.selinux_context.as_deref(), Some("u:r:t"));
    }

    #[test]
    fn selinux_context_without_selinux_is_refused_before_any_step() {
        let c = conf(serde_json::json!({"selinuxContext": "u:r:t:s0"})).unwrap();
        let t = Target {
            network: "n",
            id: "c1",
            ifname: "tap0",
            netns: std::path::Path::new("/run/netns/c1"),
            host_id: "h",
        };
        let e = plan_add(&c, &t, &TapState::default(), None, None).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("SELinux is not enabled"), "{}", e.msg);
        let (plan, _) = plan_add(&c, &t, &TapState { bridge: None, selinux_enabled: true }, None, None)
            .expect("plans with SELinux");
        assert!(plan.to_shell().starts_with("nsenter --net=/run/netns/c1 runcon u:r:t:s0 ip tuntap add"));
    }
}
