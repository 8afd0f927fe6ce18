use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::{Value, json};
use tempfile::TempDir;

use super::*;
use crate::spec::{Attachment, CniArgs, CniError, NetConf, code};

fn netconf(v: Value) -> NetConf {
    NetConf::parse(v.to_string().as_bytes()).unwrap()
}

/// A config for network "net" with `ipam` (dataDir filled in) and extra top-level keys.
fn conf_with(dir: &Path, mut ipam: Value, top: Value) -> NetConf {
    ipam["type"] = "host-local".into();
    ipam["dataDir"] = dir.display().to_string().into();
    let mut v = json!({"cniVersion": "1.1.0", "name": "net", "type": "bridge", "ipam": ipam});
    if let Value::Object(extra) = top {
        for (k, val) in extra {
            v[k] = val;
        }
    }
    netconf(v)
}

fn parse_with(dir: &Path, ipam: Value, top: Value, args: &str) -> Result<HostLocal, CniError> {
    HostLocal::from_conf(&conf_with(dir, ipam, top), &CniArgs::parse(args).unwrap())
}

fn host_local(dir: &Path, ipam: Value) -> HostLocal {
    parse_with(dir, ipam, json!({}), "").unwrap()
}

fn ranges(sets: Value) -> Value {
    json!({ "ranges": sets })
}

fn subnet(s: &str) -> Value {
    ranges(json!([[{"subnet": s}]]))
}

fn alloc(hl: &HostLocal, id: &str) -> Result<Vec<String>, CniError> {
    alloc_if(hl, id, "eth0")
}

fn alloc_if(hl: &HostLocal, id: &str, ifname: &str) -> Result<Vec<String>, CniError> {
    let r = allocate(hl, id, ifname, false)?;
    Ok(r.ips.iter().map(|ip| ip.address.to_string()).collect())
}

fn store_of(dir: &Path) -> StoreDir {
    StoreDir(dir.join("net"))
}

fn reservations(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir.join("net"))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().into_string().unwrap()).filter(|n| n.parse::<IpAddr>().is_ok()).collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn config_err(r: Result<HostLocal, CniError>) -> String {
    let e = r.unwrap_err();
    assert_eq!(e.code, code::INVALID_CONFIG, "{e:?}");
    e.msg
}

#[test]
fn default_first_ip_is_dot_2_with_gateway_dot_1() {
    let tmp = TempDir::new().unwrap();
    let hl = host_local(tmp.path(), subnet("10.1.0.0/24"));
    let r = allocate(&hl, "c1", "eth0", false).unwrap();
    assert_eq!(r.ips.len(), 1);
    assert_eq!(r.ips[0].address.to_string(), "10.1.0.2/24");
    assert_eq!(r.ips[0].gateway, Some("10.1.0.1".parse().unwrap()));
    assert_eq!(r.ips[0].interface, None);
    assert!(r.interfaces.is_empty());
    assert_eq!(alloc(&hl, "c2").unwrap(), ["10.1.0.3/24"]);
}

#[test]
fn file_content_is_byte_exact_with_modes() {
    let tmp = TempDir::new().unwrap();
    let hl = host_local(tmp.path(), subnet("10.1.0.0/24"));
    alloc_if(&hl, "abc123", "eth1").unwrap();
    let dir = tmp.path().join("net");
    assert_eq!(fs::read(dir.join("10.1.0.2")).unwrap(), b"abc123\r\neth1");
    assert_eq!(fs::read(dir.join("last_reserved_ip.0")).unwrap(), b"10.1.0.2");
    assert_eq!(fs::metadata(dir.join("lock")).unwrap().len(), 0);
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.join("10.1.0.2")), 0o600);
    assert_eq!(mode(&dir) & 0o700, 0o700);
    assert_eq!(mode(&dir) & 0o022, 0, "the dir is created 0755 (less umask)");
    // no temporary file is left behind
    let names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
}

#[test]
fn round_robin_does_not_reuse_a_just_freed_ip() {
    let tmp = TempDir::new().unwrap();
    let hl = host_local(tmp.path(), subnet("10.1.0.0/24"));
    assert_eq!(alloc(&hl, "a").unwrap(), ["10.1.0.2/24"]);
    assert_eq!(alloc(&hl, "b").unwrap(), ["10.1.0.3/24"]);
    release(&hl.store, "a", "eth0").unwrap();
    assert_eq!(alloc(&hl, "c").unwrap(), ["10.1.0.4/24"]);
    assert_eq!(reservations(tmp.path()), ["10.1.0.3", "10.1.0.4"]);
}

#[test]
fn round_robin_wraps_and_exhaustion_is_code_102() {
    let tmp = TempDir::new().unwrap();
    // .0 network, .1 gateway, .2 .. .6 usable, .7 broadcast
    let hl = host_local(tmp.path(), subnet("10.1.0.0/29"));
    let got: Vec<String> = (0..5).map(|i| alloc(&hl, &format!("c{i}")).unwrap().remove(0)).collect();
    assert_eq!(got, ["10.1.0.2/29", "10.1.0.3/29", "10.1.0.4/29", "10.1.0.5/29", "10.1.0.6/29"]);
    let e = alloc(&hl, "full").unwrap_err();
    assert_eq!(e.code, code::POOL_EXHAUSTED);
    assert_eq!(e.msg, "no IP addresses available in range set: 10.1.0.1-10.1.0.6");
    // after a release in the middle, the walk wraps around to it
    release(&hl.store, "c1", "eth0").unwrap();
    assert_eq!(alloc(&hl, "d").unwrap(), ["10.1.0.3/29"]);
}

#[test]
fn smallest_v4_subnet_has_one_address() {
    let tmp = TempDir::new().unwrap();
    let hl = host_local(tmp.path(), subnet("10.1.0.0/30"));
    assert_eq!(alloc(&hl, "a").unwrap(), ["10.1.0.2/30"]);
    assert_eq!(alloc(&hl, "b").unwrap_err().code, code::POOL_EXHAUSTED);
}

#[test]
fn dual_stack_gets_one_address_per_range_set() {
    let tmp = TempDir::new().unwrap();
    let hl = host_local(
        tmp.path(),
        ranges(json!([[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00:1::/64", "gateway": "fd00:1::ff"}]])),
    );
    let r = allocate(&hl, "c1", "eth0", false).unwrap();
    let addrs: Vec<String> = r.ips.iter().map(|i| i.address.to_string()).collect();
    assert_eq!(addrs, ["10.1.0.2/24", "fd00:1::1/64"]);
    assert_eq!(r.ips[1].gateway, Some("fd00:1::ff".parse().unwrap()));
    assert_eq!(reservations(tmp.path()), ["10.1.0.2", "fd00:1::1"]);
    let dir = tmp.path().join("net");
    assert_eq!(fs::read(dir.join("last_reserved_ip.1")).unwrap(), b"fd00:1::1");
    assert_eq!(fs::read(dir.join("fd00:1::1")).unwrap(), b"c1\r\neth0");
    release(&hl.store, "c1", "eth0").unwrap();
    assert!(reservations(tmp.path()).is_empty());
}

#[test]
fn range_start_end_and_multiple_ranges_in_a_set() {
    let tmp = TempDir::new().unwrap();
    let hl = host_local(
        tmp.path(),
        ranges(json!([[
            {"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "rangeEnd": "10.1.0.11"},
            {"subnet": "10.2.0.0/24", "rangeStart": "10.2.0.1", "rangeEnd": "10.2.0.2", "gateway": "10.2.0.254"}
        ]])),
    );
    let got: Vec<String> = (0..4).map(|i| alloc(&hl, &format!("c{i}")).unwrap().remove(0)).collect();
    assert_eq!(got, ["10.1.0.10/24", "10.1.0.11/24", "10.2.0.1/24", "10.2.0.2/24"]);
    let e = alloc(&hl, "x").unwrap_err();
    assert_eq!(e.code, code::POOL_EXHAUSTED);
    assert_eq!(e.msg, "no IP addresses available in range set: 10.1.0.10-10.1.0.11,10.2.0.1-10.2.0.2");
    // freeing the first one: the walk goes from 10.2.0.2 back to the first range
    release(&hl.store, "c0", "eth0").unwrap();
    let r = allocate(&hl, "y", "eth0", false).unwrap();
    assert_eq!(r.ips[0].address.to_string(), "10.1.0.10/24");
    assert_eq!(r.ips[0].gateway, Some("10.1.0.1".parse().unwrap()));
}

#[test]
fn gateway_inside_the_range_is_skipped() {
    let tmp = TempDir::new().unwrap();
    let hl = host_local(
        tmp.path(),
        ranges(
            json!([[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.5", "rangeEnd": "10.1.0.7", "gateway": "10.1.0.6"}]]),
        ),
    );
    assert_eq!(alloc(&hl, "a").unwrap(), ["10.1.0.5/24"]);
    assert_eq!(alloc(&hl, "b").unwrap(), ["10.1.0.7/24"]);
    assert_eq!(alloc(&hl, "c").unwrap_err().code, code::POOL_EXHAUSTED);
}

#[test]
fn last_reserved_outside_the_set_starts_at_range_start() {
    let tmp = TempDir::new().unwrap();
    let hl = host_local(tmp.path(), subnet("10.1.0.0/24"));
    let dir = tmp.path().join("net");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("last_reserved_ip.0"), "192.168.9.9").unwrap();
    assert_eq!(alloc(&hl, "a").unwrap(), ["10.1.0.2/24"]);
    fs::write(dir.join("last_reserved_ip.0"), "10.1.0.100\n").unwrap();
    assert_eq!(alloc(&hl, "b").unwrap(), ["10.1.0.101/24"]);
    fs::write(dir.join("last_reserved_ip.0"), "garbage").unwrap();
    assert_eq!(alloc(&hl, "c").unwrap(), ["10.1.0.3/24"]);
}

#[test]
fn requested_ip_from_cni_args() {
    let tmp = TempDir::new().unwrap();
    let hl = parse_with(tmp.path(), subnet("10.1.0.0/24"), json!({}), "IgnoreUnknown=1;IP=10.1.0.50").unwrap();
    assert_eq!(alloc(&hl, "a").unwrap(), ["10.1.0.50/24"]);
    // the same attachment asking again gets it again
    assert_eq!(alloc(&hl, "a").unwrap(), ["10.1.0.50/24"]);
    // someone else asking for it does not
    let e = alloc(&hl, "b").unwrap_err();
    assert_eq!(e.code, code::POOL_EXHAUSTED);
    assert!(e.msg.contains("requested IP address 10.1.0.50 is not available"), "{}", e.msg);
    // round robin continues after the requested address
    let plain = host_local(tmp.path(), subnet("10.1.0.0/24"));
    assert_eq!(alloc(&plain, "c").unwrap(), ["10.1.0.51/24"]);
}

#[test]
fn requested_ips_from_args_and_runtime_config() {
    let tmp = TempDir::new().unwrap();
    let ipam = ranges(json!([[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/64"}]]));
    let top = json!({
        "args": {"cni": {"ips": ["10.1.0.7/24"]}},
        "runtimeConfig": {"ips": ["fd00::7"]}
    });
    let hl = parse_with(tmp.path(), ipam.clone(), top, "").unwrap();
    assert_eq!(alloc(&hl, "a").unwrap(), ["10.1.0.7/24", "fd00::7/64"]);

    // IPv4-mapped IPv6 means IPv4, and a duplicate across sources counts once
    let top = json!({"runtimeConfig": {"ips": ["::ffff:10.1.0.9", "10.1.0.9"]}});
    let hl = parse_with(tmp.path(), ipam.clone(), top, "IP=10.1.0.9").unwrap();
    assert_eq!(alloc(&hl, "b").unwrap(), ["10.1.0.9/24", "fd00::8/64"]);

    // two requests for one range set: the second cannot be placed
    let top = json!({"runtimeConfig": {"ips": ["10.1.0.20", "10.1.0.21"]}});
    let msg = config_err(parse_with(tmp.path(), ipam.clone(), top, ""));
    assert!(msg.contains("runtimeConfig.ips[1]: requested IP 10.1.0.21 cannot be placed"), "{msg}");
    // outside every range set
    let msg = config_err(parse_with(tmp.path(), ipam.clone(), json!({}), "IP=192.168.0.1"));
    assert_eq!(msg, "CNI_ARGS IP: requested IP 192.168.0.1 is not in any range set");
    let msg = config_err(parse_with(tmp.path(), ipam, json!({"args": {"cni": {"ips": ["bogus"]}}}), ""));
    assert_eq!(msg, "args.cni.ips[0]: \"bogus\" is not an IP address");
}

#[test]
fn requested_ip_taken_in_second_set_releases_the_first() {
    let tmp = TempDir::new().unwrap();
    let ipam = ranges(json!([[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.2.0.0/24"}]]));
    let taken = parse_with(tmp.path(), ipam.clone(), json!({}), "IP=10.2.0.5").unwrap();
    assert_eq!(alloc(&taken, "owner").unwrap(), ["10.1.0.2/24", "10.2.0.5/24"]);
    let hl = parse_with(tmp.path(), ipam, json!({}), "IP=10.2.0.5").unwrap();
    assert_eq!(alloc(&hl, "other").unwrap_err().code, code::POOL_EXHAUSTED);
    assert_eq!(reservations(tmp.path()), ["10.1.0.2", "10.2.0.5"]);
}

#[test]
fn requesting_the_gateway_is_rejected() {
    let tmp = TempDir::new().unwrap();
    let msg = config_err(parse_with(tmp.path(), subnet("10.1.0.0/24"), json!({}), "IP=10.1.0.1"));
    assert_eq!(msg, "CNI_ARGS IP: requested IP 10.1.0.1 is the gateway of ipam.ranges[0][0]");
}

#[test]
fn overlapping_ranges_are_rejected() {
    let tmp = TempDir::new().unwrap();
    let across = ranges(json!([[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.1.0.0/16"}]]));
    let msg = config_err(parse_with(tmp.path(), across, json!({}), ""));
    assert!(msg.contains("overlaps"), "{msg}");
    assert!(msg.contains("ipam.ranges[0][0]") && msg.contains("ipam.ranges[1][0]"), "{msg}");
    let within = ranges(json!([[
        {"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "rangeEnd": "10.1.0.20"},
        {"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.20", "rangeEnd": "10.1.0.30"}
    ]]));
    assert!(config_err(parse_with(tmp.path(), within, json!({}), "")).contains("overlaps"));
    // same subnet, disjoint ranges: fine
    let disjoint = ranges(json!([
        [{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "rangeEnd": "10.1.0.20"}],
        [{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.21", "rangeEnd": "10.1.0.30"}]
    ]));
    parse_with(tmp.path(), disjoint, json!({}), "").unwrap();
    // runtimeConfig.ipRanges overlapping the config ranges
    let top = json!({"runtimeConfig": {"ipRanges": [[{"subnet": "10.1.0.128/25"}]]}});
    let msg = config_err(parse_with(tmp.path(), subnet("10.1.0.0/24"), top, ""));
    assert!(msg.contains("runtimeConfig.ipRanges[0][0]"), "{msg}");
}

#[test]
fn range_validation_messages_name_the_field() {
    let tmp = TempDir::new().unwrap();
    let p = |ipam: Value| config_err(parse_with(tmp.path(), ipam, json!({}), ""));
    assert_eq!(
        p(ranges(
            json!([[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.3.0.0/24"}, {"subnet": "10.1.0.0/24", "rangeStart": "10.2.0.5"}]])
        )),
        "ipam.ranges[1][1].rangeStart: 10.2.0.5 is not in subnet 10.1.0.0/24"
    );
    assert_eq!(
        p(subnet("10.1.0.5/24")),
        "ipam.ranges[0][0].subnet: 10.1.0.5/24 has host bits set; the network address is 10.1.0.0/24"
    );
    assert_eq!(p(ranges(json!([[{"rangeStart": "10.1.0.5"}]]))), "ipam.ranges[0][0].subnet: missing");
    assert!(p(subnet("10.1.0.0")).starts_with("ipam.ranges[0][0].subnet: "));
    assert!(p(subnet("10.1/16")).starts_with("ipam.ranges[0][0].subnet: "));
    assert!(p(subnet("10.1.0.0/33")).starts_with("ipam.ranges[0][0].subnet: "));
    assert!(p(subnet("10.1.0.0/-1")).starts_with("ipam.ranges[0][0].subnet: "));
    assert!(p(subnet("10.1.0.0/+8")).starts_with("ipam.ranges[0][0].subnet: "));
    assert_eq!(
        p(ranges(json!([[{"subnet": "10.1.0.0/24", "rangeEnd": "10.1.1.0"}]]))),
        "ipam.ranges[0][0].rangeEnd: 10.1.1.0 is not in subnet 10.1.0.0/24"
    );
    assert_eq!(
        p(ranges(json!([[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.9", "rangeEnd": "10.1.0.8"}]]))),
        "ipam.ranges[0][0].rangeStart: 10.1.0.9 is after rangeEnd 10.1.0.8"
    );
    assert!(
        p(ranges(json!([[{"subnet": "10.1.0.0/24", "gateway": "fd00::1"}]])))
            .starts_with("ipam.ranges[0][0].gateway: fd00::1 is not an IPv4 address")
    );
    assert!(
        p(ranges(json!([[{"subnet": "10.1.0.0/24"}, {"subnet": "fd00::/64"}]]))).contains("mixes address families")
    );
    assert_eq!(p(ranges(json!([[]]))), "ipam.ranges[0]: empty range set");
    assert_eq!(p(ranges(json!({}))), "ipam.ranges: must be a list of range sets");
    assert_eq!(p(ranges(json!([[{"subnet": 5}]]))), "ipam.ranges[0][0].subnet: must be a string");
    assert!(p(json!({})).contains("no IP ranges specified"));
    // legacy subnet fields are named without an index
    assert_eq!(
        p(json!({"subnet": "10.1.0.0/24", "rangeStart": "10.9.0.1"})),
        "ipam.rangeStart: 10.9.0.1 is not in subnet 10.1.0.0/24"
    );
    let c = netconf(json!({"cniVersion": "1.1.0", "name": "net", "ipam": {"subnet": "10.1.0.0/24", "dataDir": "rel"}}));
    let e = HostLocal::from_conf(&c, &CniArgs::default()).unwrap_err();
    assert_eq!((e.code, e.msg.as_str()), (7, "ipam.dataDir: \"rel\" is not an absolute path"));
    assert_eq!(StoreDir::from_conf(&c).unwrap_err().code, 7);
    // no ipam at all
    let c = netconf(json!({"cniVersion": "1.1.0", "name": "net", "type": "bridge"}));
    assert_eq!(HostLocal::from_conf(&c, &CniArgs::default()).unwrap_err().code, code::INVALID_CONFIG);
}

#[test]
fn tiny_and_huge_prefixes_do_not_panic() {
    let tmp = TempDir::new().unwrap();
    for s in ["10.1.0.0/31", "10.1.0.1/32", "fd00::/127", "fd00::1/128"] {
        let msg = config_err(parse_with(tmp.path(), subnet(s), json!({}), ""));
        assert!(msg.contains("too small to allocate from"), "{s}: {msg}");
    }
    // /0 is the whole address space, not a subnet (it gave 0.0.0.2/0)
    for s in ["0.0.0.0/0", "::/0"] {
        let msg = config_err(parse_with(tmp.path(), subnet(s), json!({}), ""));
        assert!(msg.contains("ipam.ranges[0][0].subnet") && msg.contains("whole address space"), "{s}: {msg}");
    }
    // /1 of both families, with the extreme addresses
    let hl = host_local(tmp.path(), subnet("128.0.0.0/1"));
    assert_eq!(alloc(&hl, "a").unwrap(), ["128.0.0.2/1"]);
    let r = &hl.range_sets[0].ranges[0];
    assert_eq!(r.range_end.to_string(), "255.255.255.254");
    let tmp6 = TempDir::new().unwrap();
    let hl = host_local(tmp6.path(), subnet("8000::/1"));
    assert_eq!(hl.range_sets[0].ranges[0].range_end.to_string(), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    assert_eq!(alloc(&hl, "a").unwrap(), ["8000::2/1"]);

    // ranges ending at the all-ones address wrap around without overflow
    for (sub, start, end) in [
        ("128.0.0.0/1", "255.255.255.254", "255.255.255.255"),
        ("8000::/1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", ""),
    ] {
        let tmp = TempDir::new().unwrap();
        let mut range = json!({"subnet": sub, "rangeStart": start});
        if !end.is_empty() {
            range["rangeEnd"] = end.into();
        }
        let hl = host_local(tmp.path(), ranges(json!([[range]])));
        let a = alloc(&hl, "a").unwrap();
        let b = alloc(&hl, "b").unwrap();
        assert_ne!(a, b);
        assert_eq!(alloc(&hl, "c").unwrap_err().code, code::POOL_EXHAUSTED, "{sub}");
        release(&hl.store, "a", "eth0").unwrap();
        assert_eq!(alloc(&hl, "d").unwrap(), a, "{sub}");
    }
    // an IPv4 /30 with explicit all-ones end, and a v4 range at 0.0.0.0
    let tmp = TempDir::new().unwrap();
    let hl = host_local(
        tmp.path(),
        ranges(
            json!([[{"subnet": "255.255.255.252/30", "rangeEnd": "255.255.255.255", "gateway": "255.255.255.252"}]]),
        ),
    );
    assert_eq!(alloc(&hl, "a").unwrap(), ["255.255.255.253/30"]);
    assert_eq!(alloc(&hl, "b").unwrap(), ["255.255.255.254/30"]);
    assert_eq!(alloc(&hl, "c").unwrap(), ["255.255.255.255/30"]);
    assert_eq!(alloc(&hl, "d").unwrap_err().code, code::POOL_EXHAUSTED);
    let hl = host_local(
        tmp.path(),
        ranges(json!([[{"subnet": "0.0.0.0/30", "rangeStart": "0.0.0.0", "gateway": "0.0.0.3"}]])),
    );
    assert_eq!(alloc(&hl, "e").unwrap(), ["0.0.0.0/30"]);
}

#[test]
fn more_than_one_address_per_family_needs_030() {
    let tmp = TempDir::new().unwrap();
    let two_v4 = ranges(json!([[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.2.0.0/24"}]]));
    let mut c = conf_with(tmp.path(), two_v4.clone(), json!({"cniVersion": "0.2.0"}));
    let e = HostLocal::from_conf(&c, &CniArgs::default()).unwrap_err();
    assert_eq!(e.code, code::INVALID_CONFIG);
    assert!(e.msg.contains("more than 1 address per family"), "{}", e.msg);
    c = conf_with(tmp.path(), two_v4, json!({"cniVersion": "0.3.0"}));
    HostLocal::from_conf(&c, &CniArgs::default()).unwrap();
    let dual = ranges(json!([[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/64"}]]));
    c = conf_with(tmp.path(), dual, json!({"cniVersion": "0.2.0"}));
    HostLocal::from_conf(&c, &CniArgs::default()).unwrap();
}

#[test]
fn range_set_order_is_ip_ranges_then_legacy_then_ranges() {
    let tmp = TempDir::new().unwrap();
    let ipam = json!({"subnet": "10.2.0.0/24", "ranges": [[{"subnet": "10.3.0.0/24"}]]});
    let top = json!({"runtimeConfig": {"ipRanges": [[{"subnet": "10.1.0.0/24"}]]}});
    let hl = parse_with(tmp.path(), ipam, top, "").unwrap();
    let labels: Vec<&str> = hl.range_sets.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(labels, ["runtimeConfig.ipRanges[0]", "ipam", "ipam.ranges[0]"]);
    assert_eq!(alloc(&hl, "a").unwrap(), ["10.1.0.2/24", "10.2.0.2/24", "10.3.0.2/24"]);
    let dir = tmp.path().join("net");
    assert_eq!(fs::read_to_string(dir.join("last_reserved_ip.2")).unwrap(), "10.3.0.2");
}

#[test]
fn legacy_keys_are_case_insensitive_like_go() {
    let tmp = TempDir::new().unwrap();
    let hl = host_local(tmp.path(), json!({"Subnet": "10.1.0.0/24", "rangestart": "10.1.0.100"}));
    assert_eq!(alloc(&hl, "a").unwrap(), ["10.1.0.100/24"]);
}

#[test]
fn same_attachment_twice_gets_the_same_address() {
    let tmp = TempDir::new().unwrap();
    let hl = host_local(tmp.path(), ranges(json!([[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/64"}]])));
    let first = alloc(&hl, "a").unwrap();
    assert_eq!(alloc(&hl, "a").unwrap(), first);
    assert_eq!(alloc_if(&hl, "a", "eth1").unwrap(), ["10.1.0.3/24", "fd00::3/64"]);
    assert_eq!(reservations(tmp.path()).len(), 4);
    // dry run agrees
    let r = allocate(&hl, "a", "eth0", true).unwrap();
    assert_eq!(r.ips[0].address.to_string(), first[0]);
}

#[test]
fn release_by_owner_and_legacy_id_only_files() {
    let tmp = TempDir::new().unwrap();
    let hl = host_local(tmp.path(), subnet("10.1.0.0/24"));
    alloc_if(&hl, "a", "eth0").unwrap(); // .2
    alloc_if(&hl, "a", "eth1").unwrap(); // .3
    alloc_if(&hl, "b", "eth0").unwrap(); // .4
    let dir = tmp.path().join("net");
    fs::write(dir.join("10.1.0.50"), "a").unwrap(); // legacy, same id
    fs::write(dir.join("10.1.0.51"), "  c \n").unwrap(); // legacy, whitespace trimmed

    // (id, ifname) files matched: the legacy file of the same id stays
    release(&hl.store, "a", "eth0").unwrap();
    assert_eq!(reservations(tmp.path()), ["10.1.0.3", "10.1.0.4", "10.1.0.50", "10.1.0.51"]);
    release(&hl.store, "a", "eth1").unwrap();
    assert_eq!(reservations(tmp.path()), ["10.1.0.4", "10.1.0.50", "10.1.0.51"]);
    // no (id, ifname) file matches any more: the legacy id-only files go
    release(&hl.store, "a", "eth0").unwrap();
    assert_eq!(reservations(tmp.path()), ["10.1.0.4", "10.1.0.51"]);
    release(&hl.store, "c", "eth0").unwrap();
    assert_eq!(reservations(tmp.path()), ["10.1.0.4"]);
    // nothing matches: success, nothing touched
    release(&hl.store, "zzz", "eth0").unwrap();
    assert_eq!(reservations(tmp.path()), ["10.1.0.4"]);
    // a file as the reference plugin writes it (with trailing whitespace tolerated)
    fs::write(dir.join("fd00::9"), "d\r\neth0\n").unwrap();
    release(&hl.store, "d", "eth0").unwrap();
    assert_eq!(reservations(tmp.path()), ["10.1.0.4"]);
}

#[test]
fn release_and_gc_on_a_missing_directory_succeed_without_creating_it() {
    let tmp = TempDir::new().unwrap();
    let store = store_of(tmp.path());
    release(&store, "a", "eth0").unwrap();
    gc(&store, &[]).unwrap();
    assert!(!store.0.exists());
    assert_eq!(check(&store, "a", "eth0").unwrap_err().code, code::CHECK_MISMATCH);
}

#[test]
fn check_needs_a_reservation() {
    let tmp = TempDir::new().unwrap();
    let hl = host_local(tmp.path(), subnet("10.1.0.0/24"));
    alloc(&hl, "a").unwrap();
    check(&hl.store, "a", "eth0").unwrap();
    let e = check(&hl.store, "a", "eth1").unwrap_err();
    assert_eq!(e.code, code::CHECK_MISMATCH);
    assert_eq!(check(&hl.store, "b", "eth0").unwrap_err().code, 101);
    fs::write(tmp.path().join("net/10.1.0.77"), "legacy").unwrap();
    check(&hl.store, "legacy", "eth0").unwrap();
}

#[test]
fn store_dir_does_not_need_valid_ranges() {
    let tmp = TempDir::new().unwrap();
    let broken = ranges(json!([[{"subnet": "not a subnet"}]]));
    let c = conf_with(tmp.path(), broken, json!({}));
    assert!(HostLocal::from_conf(&c, &CniArgs::default()).is_err());
    assert_eq!(StoreDir::from_conf(&c).unwrap(), store_of(tmp.path()));
    let c = netconf(json!({"cniVersion": "1.0.0", "name": "n1", "ipam": {"type": "host-local"}}));
    assert_eq!(StoreDir::from_conf(&c).unwrap().0, Path::new(DEFAULT_DATA_DIR).join("n1"));
    let c = netconf(json!({"cniVersion": "1.0.0", "name": "../x", "ipam": {}}));
    assert_eq!(StoreDir::from_conf(&c).unwrap_err().code, code::INVALID_CONFIG);
}

#[test]
fn gc_keeps_valid_and_removes_the_rest() {
    let tmp = TempDir::new().unwrap();
    let hl = host_local(tmp.path(), subnet("10.1.0.0/24"));
    alloc_if(&hl, "keep", "eth0").unwrap(); // .2
    alloc_if(&hl, "keep", "eth1").unwrap(); // .3
    alloc_if(&hl, "gone", "eth0").unwrap(); // .4
    let dir = tmp.path().join("net");
    fs::write(dir.join("10.1.0.60"), "keep").unwrap(); // legacy, id valid
    fs::write(dir.join("10.1.0.61"), "gone").unwrap(); // legacy, id not valid
    fs::write(dir.join("10.1.0.62"), "").unwrap(); // torn
    fs::write(dir.join("10.1.0.63"), b"\0\0\0\0").unwrap(); // torn (crash)
    fs::write(dir.join("10.1.0.64"), [0xff, 0xfe, b'x']).unwrap(); // garbled
    fs::write(dir.join(".tmp-1-2-3"), "x\r\ny").unwrap(); // stale temp file
    fs::write(dir.join("notes.txt"), "unknown").unwrap();
    fs::create_dir(dir.join("10.1.0.99")).unwrap(); // not a file
    let valid = [Attachment { container_id: "keep".into(), ifname: "eth0".into() }];
    gc(&hl.store, &valid).unwrap();
    assert_eq!(reservations(tmp.path()), ["10.1.0.2", "10.1.0.60", "10.1.0.99"]);
    for kept in ["lock", "last_reserved_ip.0", "notes.txt"] {
        assert!(dir.join(kept).exists(), "{kept}");
    }
    assert!(!dir.join(".tmp-1-2-3").exists());
    // an empty valid list removes every reservation
    gc(&hl.store, &[]).unwrap();
    assert_eq!(reservations(tmp.path()), ["10.1.0.99"]);
    assert!(dir.join("last_reserved_ip.0").exists());
}

#[test]
fn torn_files_are_reclaimed_by_allocation() {
    let tmp = TempDir::new().unwrap();
    let hl = host_local(tmp.path(), subnet("10.1.0.0/30"));
    let dir = tmp.path().join("net");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("10.1.0.2"), "").unwrap();
    status(&hl).unwrap();
    assert_eq!(alloc(&hl, "a").unwrap(), ["10.1.0.2/30"]);
    assert_eq!(fs::read(dir.join("10.1.0.2")).unwrap(), b"a\r\neth0");
    // a requested address held by a torn file is reclaimed too
    let hl = parse_with(tmp.path(), subnet("10.9.0.0/24"), json!({}), "IP=10.9.0.9").unwrap();
    fs::write(dir.join("10.9.0.9"), "   \n").unwrap();
    assert_eq!(alloc(&hl, "b").unwrap(), ["10.9.0.9/24"]);
}

#[test]
fn status_reports_an_exhausted_pool_with_code_50() {
    let tmp = TempDir::new().unwrap();
    let hl = host_local(tmp.path(), ranges(json!([[{"subnet": "fd00::/64"}], [{"subnet": "10.1.0.0/30"}]])));
    status(&hl).unwrap(); // no directory yet
    assert!(!hl.store.0.exists());
    alloc(&hl, "a").unwrap();
    let e = status(&hl).unwrap_err();
    assert_eq!(e.code, code::PLUGIN_NOT_AVAILABLE);
    assert!(e.msg.contains("ipam.ranges[1]") && e.msg.contains("10.1.0.1-10.1.0.2"), "{}", e.msg);
    release(&hl.store, "a", "eth0").unwrap();
    status(&hl).unwrap();
    // a data dir path that is a file is not usable
    let file = tmp.path().join("file");
    fs::write(&file, "").unwrap();
    let hl = host_local(&file, subnet("10.1.0.0/24"));
    assert_eq!(status(&hl).unwrap_err().code, code::PLUGIN_NOT_AVAILABLE);
}

#[test]
fn dry_run_writes_nothing() {
    let tmp = TempDir::new().unwrap();
    let hl = host_local(tmp.path(), subnet("10.1.0.0/24"));
    let r = allocate(&hl, "a", "eth0", true).unwrap();
    assert_eq!(r.ips[0].address.to_string(), "10.1.0.2/24");
    assert!(!hl.store.0.exists(), "dry run must not create the directory");

    alloc(&hl, "a").unwrap();
    let dir = tmp.path().join("net");
    fs::write(dir.join("10.1.0.3"), "").unwrap(); // torn: would be reclaimed, is not removed
    let before = fs::read_dir(&dir).unwrap().count();
    let r = allocate(&hl, "b", "eth0", true).unwrap();
    assert_eq!(r.ips[0].address.to_string(), "10.1.0.3/24");
    assert_eq!(fs::read_dir(&dir).unwrap().count(), before);
    assert_eq!(fs::read(dir.join("10.1.0.3")).unwrap(), b"");
    assert_eq!(fs::read(dir.join("last_reserved_ip.0")).unwrap(), b"10.1.0.2");
    // nor when the pool is exhausted
    let full = host_local(tmp.path(), subnet("10.1.0.0/30"));
    alloc(&full, "x").unwrap_err(); // .2 held by "a"
    assert_eq!(allocate(&full, "y", "eth0", true).unwrap_err().code, code::POOL_EXHAUSTED);
}

#[test]
fn result_carries_routes_and_resolv_conf() {
    let tmp = TempDir::new().unwrap();
    let resolv = tmp.path().join("resolv.conf");
    fs::write(
        &resolv,
        "# comment\n; other comment\nnameserver 10.0.0.53\nnameserver fd00::53\ndomain example.com\n\
         search a.example b.example\nsearch c.example\noptions ndots:5 edns0\nsortlist 1.2.3.4\nnameserver\n",
    )
    .unwrap();
    let ipam = json!({
        "ranges": [[{"subnet": "10.1.0.0/24"}]],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.0.254", "priority": 10}],
        "resolvConf": resolv.display().to_string(),
    });
    let hl = host_local(tmp.path(), ipam);
    let r = allocate(&hl, "a", "eth0", false).unwrap();
    assert_eq!(r.routes.len(), 2);
    assert_eq!(r.routes[0].dst.to_string(), "0.0.0.0/0");
    assert_eq!(r.routes[0].gw, None);
    assert_eq!(r.routes[1].gw, Some("10.1.0.254".parse().unwrap()));
    assert_eq!(r.routes[1].priority, Some(10));
    assert_eq!(r.dns.nameservers, ["10.0.0.53", "fd00::53"]);
    assert_eq!(r.dns.domain, "example.com");
    assert_eq!(r.dns.search, ["a.example", "b.example", "c.example"]);
    assert_eq!(r.dns.options, ["ndots:5", "edns0"]);

    let missing = tmp.path().join("nope.conf");
    let e = parse_with(
        tmp.path(),
        json!({"subnet": "10.1.0.0/24", "resolvConf": missing.display().to_string()}),
        json!({}),
        "",
    )
    .unwrap_err();
    assert_eq!(e.code, code::INVALID_CONFIG);
    assert!(e.msg.contains(&missing.display().to_string()), "{}", e.msg);
    let msg = config_err(parse_with(
        tmp.path(),
        json!({"subnet": "10.1.0.0/24", "routes": [{"gw": "1.1.1.1"}]}),
        json!({}),
        "",
    ));
    assert_eq!(msg, "ipam.routes[0].dst: missing");
}

#[test]
fn concurrent_allocations_get_distinct_addresses() {
    let tmp = TempDir::new().unwrap();
    let hl = host_local(tmp.path(), ranges(json!([[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/120"}]])));
    let results: Vec<Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let hl = &hl;
                s.spawn(move || alloc(hl, &format!("c{i}")).unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut v4: Vec<&String> = results.iter().map(|r| &r[0]).collect();
    v4.sort();
    v4.dedup();
    assert_eq!(v4.len(), 20);
    let mut v6: Vec<&String> = results.iter().map(|r| &r[1]).collect();
    v6.sort();
    v6.dedup();
    assert_eq!(v6.len(), 20);
    assert_eq!(reservations(tmp.path()).len(), 40);
    // each file names its own owner
    for (i, r) in results.iter().enumerate() {
        let ip = r[0].split('/').next().unwrap();
        assert_eq!(fs::read_to_string(tmp.path().join("net").join(ip)).unwrap(), format!("c{i}\r\neth0"));
    }
    // and concurrent releases leave nothing behind
    std::thread::scope(|s| {
        for i in 0..20 {
            let store = &hl.store;
            s.spawn(move || release(store, &format!("c{i}"), "eth0").unwrap());
        }
    });
    assert!(reservations(tmp.path()).is_empty());
}

#[test]
fn owner_parsing() {
    assert_eq!(Owner::parse(b"abc\r\neth0"), Owner::Attachment { id: "abc".into(), ifname: "eth0".into() });
    assert_eq!(Owner::parse(b" abc \n"), Owner::Legacy { id: "abc".into() });
    assert_eq!(Owner::parse(b""), Owner::Torn);
    assert_eq!(Owner::parse(b"\r\n\t "), Owner::Torn);
    assert_eq!(Owner::parse(b"ab\0c"), Owner::Torn);
    assert_eq!(Owner::parse(&[0xc3, 0x28]), Owner::Torn);
    assert_eq!(Owner::parse(&vec![b'a'; 5000]), Owner::Torn);
}

#[test]
fn invalid_ids_are_refused_before_writing() {
    let tmp = TempDir::new().unwrap();
    let hl = host_local(tmp.path(), subnet("10.1.0.0/24"));
    assert_eq!(allocate(&hl, "a\r\nb", "eth0", false).unwrap_err().code, code::INVALID_ENV);
    assert_eq!(allocate(&hl, "a", "eth 0", false).unwrap_err().code, code::INVALID_ENV);
    assert!(!hl.store.0.exists());
}

#[test]
fn garbage_configs_never_panic() {
    let tmp = TempDir::new().unwrap();
    let values = [
        json!(null),
        json!(1),
        json!("x"),
        json!([]),
        json!([null]),
        json!([[null]]),
        json!([[{"subnet": null}]]),
        json!([[{"subnet": "::/0", "rangeStart": "::", "rangeEnd": "::"}]]),
        json!([[{"subnet": "0.0.0.0/0", "rangeStart": "0.0.0.0", "rangeEnd": "0.0.0.0", "gateway": "0.0.0.0"}]]),
        json!([[{"subnet": "1.2.3.4/999999999999999"}]]),
        json!([[{"subnet": "/"}]]),
        json!([[{"subnet": "::ffff:10.0.0.0/120"}]]),
    ];
    for v in values {
        let _ = parse_with(tmp.path(), json!({"ranges": v.clone()}), json!({}), "");
        let _ = parse_with(tmp.path(), json!({"subnet": "10.0.0.0/8", "routes": v.clone()}), json!({}), "");
        let _ = parse_with(
            tmp.path(),
            subnet("10.0.0.0/8"),
            json!({"runtimeConfig": {"ipRanges": v.clone(), "ips": v}}),
            "",
        );
    }
    // a range whose only address is the gateway is exhausted, not an endless walk
    let hl = host_local(
        tmp.path(),
        ranges(json!([[{"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.1", "rangeEnd": "10.0.0.1"}]])),
    );
    assert_eq!(alloc(&hl, "a").unwrap_err().code, code::POOL_EXHAUSTED);
    assert_eq!(status(&hl).unwrap_err().code, code::PLUGIN_NOT_AVAILABLE);
}

#[test]
fn gateway_outside_the_subnet_is_accepted_as_the_reference_does() {
    // What broke: a hostile-input pass refused it, but ptp setups use an on-link gateway
    // outside the subnet (reached through a host route), and the reference accepts one.
    let tmp = TempDir::new().unwrap();
    for (sub, gw) in [("10.1.0.0/24", "169.254.1.1"), ("fd00:1::/64", "fe80::1")] {
        let hl = host_local(tmp.path(), ranges(json!([[{"subnet": sub, "gateway": gw}]])));
        assert_eq!(hl.range_sets[0].ranges[0].gateway.to_string(), gw);
    }
}
