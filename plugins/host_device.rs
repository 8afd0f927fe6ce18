//! host-device: moves an existing host link into the container under CNI_IFNAME, and
//! back under its original name on DEL (reference §3.6).
//!
//! Config: exactly one of `device` (name), `hwaddr` (MAC), `kernelpath` (a
//! /sys/devices/… path whose `net/` holds the device) or `pciBusID`
//! (/sys/bus/pci/devices/<id>/net/, or …/virtio*/net/); `runtimeConfig.deviceID`
//! replaces `pciBusID` (a PCI address, or an auxiliary-bus device under
//! /sys/bus/auxiliary/devices/<id>/net/). Optional `ipam`. A PCI device bound to a
//! userspace driver (vfio-pci, uio_pci_generic, igb_uio) is DPDK mode: nothing moves, and
//! the IPAM addresses are returned, not configured.
//!
//! ADD observes the host namespace (`ip -j -d link show`, sysfs), then plans:
//! 1. the attachment's state file (`exec::state`): the original name and MAC, written
//!    before anything moves, so a DEL without prevResult still knows the name;
//! 2. if the device is up, `ip link set dev ORIG down` (undone by `up`: a failed ADD
//!    leaves the device as it found it);
//! 3. `ip link set dev ORIG name $IF netns $NETNS alias ORIG`: the kernel moves and
//!    renames it under one lock, so nothing on the host (udev, NetworkManager) sees a
//!    half-renamed device, and a device of the same name in the container is no conflict
//!    (the reference uses a temporary namespace for the same reasons). The alias keeps
//!    the reference's convention, so the reference's DEL can move it back too. Its undo
//!    runs in the container: `ip link set dev $IF name ORIG netns <the plugin's netns>`;
//! 4. addresses and routes from IPAM, or just `up`.
//!
//! DEL: the device goes back to the plugin's own namespace under its original name,
//! taken from the state file, else from the alias. When the container renamed it, it is
//! found by the MAC the state file recorded (plugins#766). Every "already gone" case
//! succeeds: no netns (the device left with it), no device, no state file. The state file
//! is removed once the device is back or gone, and kept when CNI_NETNS is empty (a later
//! DEL with the namespace can still move the device). IPAM DEL runs whatever happened.
//! GC removes the state files of attachments not in `cni.dev/valid-attachments`; it
//! cannot move devices back (it has no namespace to take them from).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::shared::iface;
use super::shared::sublink;
use crate::exec::{apply, observe, state};
use crate::plan::{LinkSet, Netns, Op, Plan, Tolerate};
use crate::skel::{Cx, NetnsState, Plugin};
use crate::spec::{CniError, CniResult, Dns, Interface, code};
use crate::validate;

pub struct HostDevice;

const PLUGIN: &str = "host-device";
const SYS_PCI: &str = "/sys/bus/pci/devices";
const SYS_AUX: &str = "/sys/bus/auxiliary/devices";
/// Drivers that make a PCI network device a DPDK device.
const USERSPACE_DRIVERS: [&str; 3] = ["vfio-pci", "uio_pci_generic", "igb_uio"];

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawConf {
    device: Option<String>,
    hwaddr: Option<String>,
    kernelpath: Option<String>,
    #[serde(rename = "pciBusID")]
    pci_bus_id: Option<String>,
}

/// How the device is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Name(String),
    HwAddr(String),
    KernelPath(PathBuf),
    Pci(String),
    Auxiliary(String),
}

/// The validated host-device configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDeviceConf {
    pub selector: Selector,
    pub has_ipam: bool,
}

fn is_pci_address(s: &str) -> bool {
    // domain:bus:device.function, e.g. 0000:00:1f.6
    let b = s.as_bytes();
    let hex = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_hexdigit);
    b.len() == 12
        && hex(0..4)
        && b[4] == b':'
        && hex(5..7)
        && b[7] == b':'
        && hex(8..10)
        && b[10] == b'.'
        && (b'0'..=b'7').contains(&b[11])
}

/// A sysfs entry name from the config: one path component, printable, no specials.
fn sysfs_name(s: &str, field: &str) -> Result<String, CniError> {
    if s == "." || s == ".." || s.starts_with('-') || s.chars().any(|c| c == '/' || c.is_whitespace() || c.is_control())
    {
        return Err(CniError::config(format!("host-device: {field} {s:?} is not a device name")));
    }
    Ok(s.to_string())
}

fn kernel_path(s: &str) -> Result<PathBuf, CniError> {
    let p = Path::new(s);
    let bad = |why: &str| CniError::config(format!("host-device: \"kernelpath\" {s:?} {why}"));
    if !s.starts_with("/sys/devices/") {
        return Err(bad("must be absolute and begin with /sys/devices/"));
    }
    if p.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(bad("must not contain \"..\""));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("contains whitespace"));
    }
    Ok(p.to_path_buf())
}

impl HostDeviceConf {
    fn from_parts(raw: RawConf, device_id: Option<&str>, has_ipam: bool) -> Result<HostDeviceConf, CniError> {
        let set = |v: Option<String>| v.filter(|s| !s.is_empty());
        let (device, hwaddr, kernelpath) = (set(raw.device), set(raw.hwaddr), set(raw.kernelpath));
        // runtimeConfig.deviceID (a device plugin's allocation) replaces pciBusID.
        let pci = device_id.filter(|s| !s.is_empty()).map(str::to_string).or(set(raw.pci_bus_id));
        let from_runtime = device_id.is_some_and(|s| !s.is_empty());
        let given = [device.is_some(), hwaddr.is_some(), kernelpath.is_some(), pci.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(CniError::config(
                "host-device: specify exactly one of \"device\", \"hwaddr\", \"kernelpath\" or \"pciBusID\" \
                 (or runtimeConfig.deviceID)",
            ));
        }
        let selector = if let Some(d) = device {
            validate::ifname(&d).map_err(|e| CniError::config(format!("host-device: \"device\": {e}")))?;
            Selector::Name(d)
        } else if let Some(m) = hwaddr {
            Selector::HwAddr(names_mac(&m)?)
        } else if let Some(k) = kernelpath {
            Selector::KernelPath(kernel_path(&k)?)
        } else {
            let id = pci.expect("one is set");
            if is_pci_address(&id) {
                Selector::Pci(id.to_ascii_lowercase())
            } else if from_runtime {
                Selector::Auxiliary(sysfs_name(&id, "runtimeConfig.deviceID")?)
            } else {
                return Err(CniError::config(format!(
                    "host-device: \"pciBusID\" {id:?} is not a PCI address (domain:bus:device.function, e.g. 0000:00:1f.6)"
                )));
            }
        };
        Ok(HostDeviceConf { selector, has_ipam })
    }

    pub fn from_cx(cx: &Cx) -> Result<HostDeviceConf, CniError> {
        let raw: RawConf = cx.conf.plugin()?;
        let device_id = match cx.conf.runtime_config.get("deviceID") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.as_str()),
            Some(_) => return Err(CniError::config("host-device: runtimeConfig.deviceID must be a string")),
        };
        HostDeviceConf::from_parts(raw, device_id, cx.conf.ipam_type.is_some())
    }
}

fn names_mac(m: &str) -> Result<String, CniError> {
    crate::names::parse_mac(m).map_err(|e| CniError::config(format!("host-device: \"hwaddr\": {e}")))
}

/// What ADD found on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The network device to move.
    Link(Box<observe::Link>),
    /// A PCI device bound to a userspace driver (DPDK): nothing to move.
    Dpdk { pci: String, driver: String },
}

/// The host-side record of one attachment (`exec::state`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The device's name in the host namespace before ADD.
    pub device: String,
    /// Its MAC, to find it in the container if it was renamed there.
    pub hwaddr: String,
    pub network: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
    pub netns: String,
}

/// The identity of one attachment.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub network: &'a str,
    pub id: &'a str,
    pub ifname: &'a str,
    pub netns: &'a Path,
}

pub fn state_path(network: &str, id: &str, ifname: &str) -> PathBuf {
    state::attachment_path(PLUGIN, network, id, ifname)
}

fn first_link(obs: &mut dyn observe::Observer, names: &[String]) -> Result<Option<observe::Link>, CniError> {
    for n in names {
        if validate::ifname(n).is_err() {
            continue;
        }
        if let Some(l) = observe::link_addrs(obs, &Netns::Host, n)? {
            return Ok(Some(l));
        }
    }
    Ok(None)
}

/// Finds the device in the host namespace. Pure reads through the observer.
pub fn find(obs: &mut dyn observe::Observer, sel: &Selector) -> Result<Found, CniError> {
    let not_found = |what: String| CniError::config(format!("host-device: {what}"));
    match sel {
        Selector::Name(n) => observe::link_addrs(obs, &Netns::Host, n)?
            .map(|l| Found::Link(Box::new(l)))
            .ok_or_else(|| not_found(format!("device {n:?} does not exist in the host namespace"))),
        Selector::HwAddr(mac) => observe::links(obs, &Netns::Host)?
            .into_iter()
            .find(|l| l.address.eq_ignore_ascii_case(mac))
            .map(|l| Found::Link(Box::new(l)))
            .ok_or_else(|| not_found(format!("no link in the host namespace has MAC {mac}"))),
        Selector::KernelPath(p) => {
            let dir = p.join("net");
            let names = obs.list_dir(&dir)?.unwrap_or_default();
            first_link(obs, &names)?
                .map(|l| Found::Link(Box::new(l)))
                .ok_or_else(|| not_found(format!("no network device under {}", dir.display())))
        }
        Selector::Pci(id) => {
            let dev = Path::new(SYS_PCI).join(id);
            if let Some(target) = obs.read_link(&dev.join("driver"))? {
                let driver = target.rsplit('/').next().unwrap_or_default().to_string();
                if USERSPACE_DRIVERS.contains(&driver.as_str()) {
                    return Ok(Found::Dpdk { pci: id.clone(), driver });
                }
            }
            let mut names = obs.list_dir(&dev.join("net"))?;
            if names.is_none() {
                // virtio: the netdev hangs off the virtio device under the PCI device.
                for entry in obs.list_dir(&dev)?.unwrap_or_default() {
                    if entry.starts_with("virtio") && !entry.contains('/') {
                        names = obs.list_dir(&dev.join(&entry).join("net"))?;
                        if names.is_some() {
                            break;
                        }
                    }
                }
            }
            first_link(obs, &names.unwrap_or_default())?
                .map(|l| Found::Link(Box::new(l)))
                .ok_or_else(|| not_found(format!("no network device for PCI device {id}")))
        }
        Selector::Auxiliary(id) => {
            let dir = Path::new(SYS_AUX).join(id).join("net");
            let names = obs.list_dir(&dir)?.unwrap_or_default();
            first_link(obs, &names)?
                .map(|l| Found::Link(Box::new(l)))
                .ok_or_else(|| not_found(format!("no network device for auxiliary device {id}")))
        }
    }
}

/// The ADD plan and its result. Pure: no I/O.
pub fn plan_add(
    target: &Target,
    found: &Found,
    ipam: Option<&CniResult>,
    dns: Option<&Dns>,
) -> Result<(Plan, CniResult), CniError> {
    let mut plan = Plan::new();
    let link = match found {
        Found::Link(l) => l,
        Found::Dpdk { .. } => {
            // Nothing moves; the addresses are for the DPDK application to use.
            let mut result = CniResult::default();
            if let Some(ipam) = ipam {
                if ipam.ips.is_empty() {
                    return Err(CniError::config("host-device: IPAM plugin returned missing IP config"));
                }
                result.ips = ipam.ips.clone();
                result.routes = ipam.routes.clone();
                result.dns = ipam.dns.clone();
                for ip in &mut result.ips {
                    ip.interface = None;
                }
            }
            if let Some(d) = dns.filter(|d| !d.is_empty()) {
                result.dns = d.clone();
            }
            return Ok((plan, result));
        }
    };
    let orig = &link.ifname;
    // The kernel allows names ipcni cannot put in a batch line: the configured device
    // is then unusable, which is not a bug (code 999 says it would be).
    validate::ifname(orig).map_err(|e| CniError::config(format!("host-device: the device's current name: {e}")))?;
    let host = Netns::Host;
    let ctr = Netns::Container(target.netns.to_path_buf());
    let record = Record {
        device: orig.clone(),
        hwaddr: link.address.clone(),
        network: target.network.to_string(),
        container_id: target.id.to_string(),
        ifname: target.ifname.to_string(),
        netns: target.netns.display().to_string(),
    };
    let write = Op::StateWrite {
        path: state_path(target.network, target.id, target.ifname),
        contents: serde_json::to_string(&record).expect("record serializes"),
    };
    plan.push(&host, write.clone()).undo(crate::exec::undo_of(&write).expect("state undo"));
    if link.is_up() {
        plan.push(&host, Op::LinkSet(LinkSet { up: Some(false), ..LinkSet::dev(orig) }))
            .undo(Op::LinkSet(LinkSet::up(orig)));
    }
    let move_in = LinkSet {
        name: Some(target.ifname.to_string()),
        netns: Some(ctr.clone()),
        alias: Some(orig.clone()),
        ..LinkSet::dev(orig)
    };
    // A rollback gives the device back its alias as it was: none (cleared with an empty
    // alias), or the old one when it is a plain token; text that could break a batch
    // line is not put back (the device then keeps its name as alias, as after a DEL).
    let old_alias = match link.ifalias.as_deref() {
        None | Some("") => Some(String::new()),
        Some(a) if validate::rule_token(a).is_ok() => Some(a.to_string()),
        Some(_) => None,
    };
    let move_back =
        LinkSet { name: Some(orig.clone()), netns: Some(Netns::Host), alias: old_alias, ..LinkSet::dev(target.ifname) };
    plan.push(&host, Op::LinkSet(move_in)).undo_in(&ctr, Op::LinkSet(move_back));
    let iface = Interface {
        name: target.ifname.to_string(),
        mac: link.address.clone(),
        sandbox: target.netns.display().to_string(),
        ..Interface::default()
    };
    let result = sublink::plan_addresses(&mut plan, PLUGIN, target.netns, target.ifname, iface, ipam, dns)?;
    Ok((plan, result))
}

/// What DEL found: the state record, and the device in the container.
#[derive(Debug, Clone, Default)]
pub struct DelState {
    pub record: Option<Record>,
    /// The device to move back, by its current name in the container.
    pub device: Option<observe::Link>,
}

/// The DEL plan (without IPAM). Pure: no I/O.
pub fn plan_del(target_netns: &NetnsState, ifname: &str, state_file: &Path, st: &DelState) -> Result<Plan, CniError> {
    let mut plan = Plan::new();
    let remove_state = |plan: &mut Plan| {
        if st.record.is_some() {
            plan.push(&Netns::Host, Op::StateRemove { path: state_file.to_path_buf() }).tolerate(Tolerate::Missing);
        }
    };
    match target_netns {
        // The runtime may still call DEL with the namespace: keep what it will need.
        NetnsState::Unset => {}
        // The device left with the namespace: a physical one is back in the initial
        // namespace, a virtual one is gone. Nothing can be moved.
        NetnsState::Gone(_) => remove_state(&mut plan),
        NetnsState::Present(p) => {
            if let Some(dev) = &st.device {
                let orig = match (&st.record, dev.ifalias.as_deref().filter(|a| !a.is_empty())) {
                    (Some(r), _) => r.device.clone(),
                    (None, Some(alias)) => alias.to_string(),
                    (None, None) => {
                        return Err(CniError::new(
                            code::IO_FAILURE,
                            format!(
                                "host-device: no state file {} and {ifname} has no alias: its original name is unknown",
                                state_file.display()
                            ),
                        ));
                    }
                };
                validate::ifname(&orig)
                    .map_err(|e| CniError::new(code::IO_FAILURE, format!("host-device: original name: {e}")))?;
                let back = LinkSet { name: Some(orig), netns: Some(Netns::Host), ..LinkSet::dev(&dev.ifname) };
                plan.push(&Netns::Container(p.clone()), Op::LinkSet(back)).tolerate(Tolerate::Missing);
            }
            remove_state(&mut plan);
        }
    }
    Ok(plan)
}

fn read_record(cx: &mut Cx, path: &Path) -> Result<Option<Record>, CniError> {
    let Some(text) = cx.obs.read_file(path)? else { return Ok(None) };
    match serde_json::from_str(&text) {
        Ok(r) => Ok(Some(r)),
        Err(e) => {
            crate::exec::log(&format!("host-device: ignoring unreadable state file {}: {e}", path.display()));
            Ok(None)
        }
    }
}

fn observe_del(cx: &mut Cx, record: Option<Record>) -> Result<DelState, CniError> {
    let NetnsState::Present(p) = &cx.netns else { return Ok(DelState { record, device: None }) };
    let ctr = Netns::Container(p.clone());
    let mut device = observe::link_addrs(cx.obs, &ctr, &cx.env.ifname)?;
    if device.is_none()
        && let Some(r) = &record
        && !r.hwaddr.is_empty()
    {
        // Renamed in the container: the MAC still says which link it is.
        device = observe::links(cx.obs, &ctr)?.into_iter().find(|l| l.address.eq_ignore_ascii_case(&r.hwaddr));
    }
    Ok(DelState { record, device })
}

fn join_errors(errors: Vec<CniError>) -> Result<(), CniError> {
    let mut errors = errors;
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(CniError::new(errors[0].code, errors.iter().map(|e| e.msg.clone()).collect::<Vec<_>>().join("; "))),
    }
}

impl Plugin for HostDevice {
    fn name(&self) -> &'static str {
        "host-device"
    }
    fn about(&self) -> &'static str {
        "CNI host-device plugin (ipcni)"
    }

    fn add(&self, cx: &mut Cx) -> Result<CniResult, CniError> {
        let conf = HostDeviceConf::from_cx(cx)?;
        let network = cx.conf.require_name()?.to_string();
        let netns = cx.netns_path()?;
        let found = find(cx.obs, &conf.selector)?;
        let (id, ifname) = (cx.env.container_id.clone(), cx.env.ifname.clone());
        let target = Target { network: &network, id: &id, ifname: &ifname, netns: &netns };
        let dns = cx.conf.dns.clone();
        sublink::run_add(cx, conf.has_ipam, |ipam| plan_add(&target, &found, ipam, dns.as_ref()))
    }

    fn del(&self, cx: &mut Cx) -> Result<(), CniError> {
        // DEL needs no selector: the state file and the container say everything.
        let network = cx.conf.require_name()?.to_string();
        let path = state_path(&network, &cx.env.container_id, &cx.env.ifname);
        let mut errors = Vec::new();
        let planned = read_record(cx, &path)
            .and_then(|record| observe_del(cx, record))
            .and_then(|st| plan_del(&cx.netns, &cx.env.ifname, &path, &st));
        if let Err(e) = planned.and_then(|plan| apply(cx.exec, &plan)) {
            errors.push(e);
        }
        if cx.conf.ipam_type.is_some()
            && let Err(e) = cx.ipam.del(cx.env, cx.conf)
        {
            errors.push(e);
        }
        join_errors(errors)
    }

    fn check(&self, cx: &mut Cx) -> Result<(), CniError> {
        HostDeviceConf::from_cx(cx)?;
        let netns = cx.netns_path()?;
        let prev =
            cx.conf.prev_result.clone().ok_or_else(|| CniError::config("host-device: CHECK requires prevResult"))?;
        if cx.conf.ipam_type.is_some() {
            cx.ipam.check(cx.env, cx.conf)?;
        }
        let ifname = cx.env.ifname.clone();
        let Some(idx) = prev.sandbox_interface(&ifname) else {
            // DPDK mode: nothing was moved, so there is nothing in the container to check.
            if prev.interfaces.is_empty() {
                return Ok(());
            }
            return Err(CniError::check(format!("host-device: prevResult has no sandboxed interface {ifname:?}")));
        };
        let want = &prev.interfaces[idx];
        if want.sandbox != netns.display().to_string() {
            return Err(CniError::check(format!(
                "host-device: interface {ifname} is in sandbox {}, not CNI_NETNS {}",
                want.sandbox,
                netns.display()
            )));
        }
        let ctr = Netns::Container(netns.clone());
        let link = observe::link_addrs(cx.obs, &ctr, &ifname)?
            .ok_or_else(|| CniError::check(format!("host-device: container interface {ifname} is missing")))?;
        if !want.mac.is_empty() && !want.mac.eq_ignore_ascii_case(&link.address) {
            return Err(CniError::check(format!(
                "host-device: container interface {ifname} has MAC {}, expected {}",
                link.address, want.mac
            )));
        }
        let v4 = observe::routes(cx.obs, &ctr, &ifname, false)?;
        let v6 = if prev.ips.iter().any(|i| i.address.is_ipv6()) || prev.routes.iter().any(|r| r.dst.is_ipv6()) {
            observe::routes(cx.obs, &ctr, &ifname, true)?
        } else {
            Vec::new()
        };
        iface::check_configured(&link, &v4, &v6, idx, &prev)
    }

    fn gc(&self, cx: &mut Cx) -> Result<(), CniError> {
        let network = cx.conf.require_name()?.to_string();
        let mut errors = Vec::new();
        if let Some(valid) = cx.conf.valid_attachments.clone() {
            let dir = state::network_dir(PLUGIN, &network);
            let listed = cx.obs.list_dir(&dir);
            let planned = listed.map(|names| {
                let mut plan = Plan::new();
                for name in names.unwrap_or_default() {
                    let Some((id, ifname)) = state::parse_file_name(&name) else { continue };
                    if !valid.iter().any(|a| a.container_id == id && a.ifname == ifname) {
                        plan.push(&Netns::Host, Op::StateRemove { path: dir.join(&name) }).tolerate(Tolerate::Missing);
                    }
                }
                plan
            });
            if let Err(e) = planned.and_then(|plan| apply(cx.exec, &plan)) {
                errors.push(e);
            }
        }
        if cx.conf.ipam_type.is_some()
            && let Err(e) = cx.ipam.gc(cx.env, cx.conf)
        {
            errors.push(e);
        }
        join_errors(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(v: serde_json::Value, device_id: Option<&str>) -> Result<HostDeviceConf, CniError> {
        let raw: RawConf = serde_json::from_value(v).map_err(|e| CniError::config(e.to_string()))?;
        HostDeviceConf::from_parts(raw, device_id, false)
    }

    #[test]
    fn exactly_one_selector() {
        assert_eq!(conf(serde_json::json!({"device": "ens3"}), None).unwrap().selector, Selector::Name("ens3".into()));
        assert_eq!(
            conf(serde_json::json!({"hwaddr": "0A:58:0A:01:00:01"}), None).unwrap().selector,
            Selector::HwAddr("0a:58:0a:01:00:01".into())
        );
        assert_eq!(conf(serde_json::json!({}), None).unwrap_err().code, 7);
        assert_eq!(conf(serde_json::json!({"device": "a", "hwaddr": "02:00:00:00:00:01"}), None).unwrap_err().code, 7);
        // empty strings are unset, as in the reference
        assert_eq!(
            conf(serde_json::json!({"device": "", "pciBusID": "0000:00:03.0"}), None).unwrap().selector,
            Selector::Pci("0000:00:03.0".into())
        );
    }

    #[test]
    fn device_id_replaces_pci_bus_id_and_may_be_auxiliary() {
        let c = conf(serde_json::json!({"pciBusID": "0000:00:03.0"}), Some("0000:AF:00.1")).unwrap();
        assert_eq!(c.selector, Selector::Pci("0000:af:00.1".into()));
        let c = conf(serde_json::json!({}), Some("mlx5_core.sf.4")).unwrap();
        assert_eq!(c.selector, Selector::Auxiliary("mlx5_core.sf.4".into()));
        assert_eq!(conf(serde_json::json!({"device": "x"}), Some("0000:00:03.0")).unwrap_err().code, 7);
        assert_eq!(conf(serde_json::json!({}), Some("../../etc")).unwrap_err().code, 7);
        assert_eq!(conf(serde_json::json!({"pciBusID": "00:03.0"}), None).unwrap_err().code, 7);
    }

    #[test]
    fn kernelpath_must_stay_under_sys_devices() {
        let ok = conf(serde_json::json!({"kernelpath": "/sys/devices/pci0000:00/0000:00:03.0"}), None).unwrap();
        assert_eq!(ok.selector, Selector::KernelPath("/sys/devices/pci0000:00/0000:00:03.0".into()));
        for bad in ["sys/devices/x", "/sys/class/net/eth0", "/sys/devices/../../etc", "/sys/devices/a b"] {
            assert_eq!(conf(serde_json::json!({"kernelpath": bad}), None).unwrap_err().code, 7, "{bad}");
        }
    }

    #[test]
    fn pci_addresses_have_the_sysfs_shape() {
        assert!(is_pci_address("0000:00:1f.6"));
        assert!(!is_pci_address("0000:00:1f.8"));
        assert!(!is_pci_address("00:1f.6"));
        assert!(!is_pci_address("0000:00:1f.6/.."));
    }

    #[test]
    fn rollback_of_the_move_restores_the_alias_the_device_had() {
        let netns = PathBuf::from("/run/netns/c1");
        let target = Target { network: "n", id: "c", ifname: "net1", netns: &netns };
        let undo_alias = |ifalias: Option<&str>| {
            let link = observe::Link { ifname: "hd0".into(), ifalias: ifalias.map(String::from), ..Default::default() };
            let (plan, _) = plan_add(&target, &Found::Link(Box::new(link)), None, None).unwrap();
            let step = plan.steps.iter().find(|s| matches!(&s.op, Op::LinkSet(l) if l.netns.is_some())).unwrap();
            let Some(Op::LinkSet(back)) = &step.undo else { panic!("move has no undo") };
            assert_eq!(step.undo_ns, Some(Netns::Container(netns.clone())));
            back.alias.clone()
        };
        // The move sets alias=hd0; a failed ADD must not leave it on a device that had none.
        assert_eq!(undo_alias(None), Some(String::new()));
        assert_eq!(undo_alias(Some("uplink")), Some("uplink".into()));
        assert_eq!(undo_alias(Some("two words")), None);
    }

    #[test]
    fn del_without_state_uses_the_alias_and_refuses_to_guess() {
        let p = PathBuf::from("/run/netns/c1");
        let dev = observe::Link { ifname: "eth0".into(), ifalias: Some("ens3".into()), ..observe::Link::default() };
        let st = DelState { record: None, device: Some(dev) };
        let plan = plan_del(&NetnsState::Present(p.clone()), "eth0", Path::new("/s/c1@eth0.json"), &st).unwrap();
        assert_eq!(
            plan.to_shell(),
            "nsenter --net=/run/netns/c1 ip link set dev eth0 name ens3 netns /proc/self/fd/3 3</proc/self/ns/net  # may already be gone\n"
        );
        let st = DelState { record: None, device: Some(observe::Link { ifname: "eth0".into(), ..Default::default() }) };
        assert!(plan_del(&NetnsState::Present(p), "eth0", Path::new("/s/c1@eth0.json"), &st).is_err());
    }
}
