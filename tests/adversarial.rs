//! Adversarial inputs against the real binary: `ipcni <plugin> --dry-run` with an env
//! and stdin from the table below. Each case must exit non-zero and print exactly one CNI
//! error object on stdout, with the expected code and a msg that names the offending
//! field or variable.
//!
//! Nothing here can change the host: every run is a dry run (nothing executed, nothing
//! reserved, no lock), CNI_PATH holds no IPAM binary, and every case is refused while
//! parsing or validating, before the plan exists. ADD and CHECK need a CNI_NETNS that is
//! a network namespace other than the test's own, so the config cases point it at a
//! throwaway one held by `unshare --net sleep` (when that cannot run, those cases are
//! skipped and the skip is printed). The test's own namespace is only ever named by the
//! case that checks it is refused (code 8), which skel does before dispatching.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Where CNI_NETNS points.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ns {
    /// A throwaway network namespace that is not the plugin's own.
    Scratch,
    /// Leave CNI_NETNS as the case's env sets it (or unset).
    AsGiven,
}

struct Case {
    name: &'static str,
    plugin: &'static str,
    /// Overrides of the base env; `None` removes the variable.
    env: Vec<(&'static str, Option<String>)>,
    stdin: Vec<u8>,
    ns: Ns,
    code: u32,
    /// Each must appear in msg.
    names: Vec<&'static str>,
}

fn case(
    name: &'static str,
    plugin: &'static str,
    stdin: impl Into<Vec<u8>>,
    code: u32,
    names: &[&'static str],
) -> Case {
    Case { name, plugin, env: Vec::new(), stdin: stdin.into(), ns: Ns::Scratch, code, names: names.to_vec() }
}

impl Case {
    fn env(mut self, k: &'static str, v: &str) -> Case {
        self.env.push((k, Some(v.to_string())));
        if k == "CNI_NETNS" {
            self.ns = Ns::AsGiven;
        }
        self
    }
    fn unset(mut self, k: &'static str) -> Case {
        self.env.push((k, None));
        if k == "CNI_NETNS" {
            self.ns = Ns::AsGiven;
        }
        self
    }
    fn command(self, c: &str) -> Case {
        self.env("CNI_COMMAND", c)
    }
}

fn conf(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

const BRIDGE: &str = r#"{"cniVersion":"1.0.0","name":"net1","type":"bridge","bridge":"cni0","ipam":{"type":"host-local","subnet":"10.77.0.0/24"}}"#;

fn bridge_with(key: &str, value: Value) -> Vec<u8> {
    let mut v: Value = serde_json::from_str(BRIDGE).unwrap();
    v[key] = value;
    conf(v)
}

fn host_local(ipam: Value) -> Vec<u8> {
    let mut ipam = ipam;
    ipam["type"] = "host-local".into();
    conf(json!({"cniVersion": "1.0.0", "name": "net1", "type": "host-local", "ipam": ipam}))
}

fn prev_result() -> Value {
    json!({
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "cni0", "mac": "76:43:e5:95:2c:33"},
            {"name": "veth1", "mac": "42:c0:ec:4a:90:57"},
            {"name": "eth0", "mac": "2a:7a:4a:d5:06:91", "sandbox": "/run/netns/x"}
        ],
        "ips": [{"address": "10.77.0.5/24", "gateway": "10.77.0.1", "interface": 2}]
    })
}

fn portmap(mappings: Value, extra: Value) -> Vec<u8> {
    let mut v = json!({
        "cniVersion": "1.0.0", "name": "net1", "type": "portmap",
        "capabilities": {"portMappings": true},
        "runtimeConfig": {"portMappings": mappings},
        "prevResult": prev_result(),
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    conf(v)
}

fn firewall(extra: Value) -> Vec<u8> {
    let mut v = json!({"cniVersion": "1.0.0", "name": "net1", "type": "firewall", "prevResult": prev_result()});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    conf(v)
}

fn cases(tmp: &Path) -> Vec<Case> {
    let regular = tmp.join("regular-file");
    std::fs::write(&regular, "not a namespace").unwrap();
    let regular = regular.display().to_string();
    let dir = tmp.display().to_string();
    let b = || BRIDGE.as_bytes().to_vec();
    let mut v = vec![
        // --- CNI_IFNAME
        case("ifname-newline", "bridge", b(), 4, &["CNI_IFNAME"]).env("CNI_IFNAME", "eth0\nlink del dev lo"),
        case("ifname-space", "bridge", b(), 4, &["CNI_IFNAME"]).env("CNI_IFNAME", "eth 0"),
        case("ifname-tab", "bridge", b(), 4, &["CNI_IFNAME"]).env("CNI_IFNAME", "eth\t0"),
        case("ifname-slash", "bridge", b(), 4, &["CNI_IFNAME"]).env("CNI_IFNAME", "eth/0"),
        case("ifname-16-bytes", "bridge", b(), 4, &["CNI_IFNAME"]).env("CNI_IFNAME", "0123456789abcdef"),
        case("ifname-leading-dash", "bridge", b(), 4, &["CNI_IFNAME"]).env("CNI_IFNAME", "-eth0"),
        case("ifname-dot", "bridge", b(), 4, &["CNI_IFNAME"]).env("CNI_IFNAME", "."),
        case("ifname-dotdot", "bridge", b(), 4, &["CNI_IFNAME"]).env("CNI_IFNAME", ".."),
        case("ifname-empty", "bridge", b(), 4, &["CNI_IFNAME"]).env("CNI_IFNAME", ""),
        case("ifname-unset", "bridge", b(), 4, &["CNI_IFNAME"]).unset("CNI_IFNAME"),
        case("ifname-semicolon", "bridge", b(), 4, &["CNI_IFNAME"]).env("CNI_IFNAME", "e;ip link del x"),
        case("ifname-hash", "bridge", b(), 4, &["CNI_IFNAME"]).env("CNI_IFNAME", "eth0#x"),
        case("ifname-quote", "bridge", b(), 4, &["CNI_IFNAME"]).env("CNI_IFNAME", "eth\"0"),
        case("ifname-colon", "bridge", b(), 4, &["CNI_IFNAME"]).env("CNI_IFNAME", "eth0:1"),
        case("ifname-del-newline", "bridge", b(), 4, &["CNI_IFNAME"])
            .command("DEL")
            .env("CNI_IFNAME", "eth0\nlink del dev lo"),
        // --- CNI_CONTAINERID
        case("containerid-newline", "bridge", b(), 4, &["CNI_CONTAINERID"]).env("CNI_CONTAINERID", "c1\nx"),
        case("containerid-space", "bridge", b(), 4, &["CNI_CONTAINERID"]).env("CNI_CONTAINERID", "c1 x"),
        case("containerid-slash", "bridge", b(), 4, &["CNI_CONTAINERID"]).env("CNI_CONTAINERID", "../../etc"),
        case("containerid-quote", "portmap", b(), 4, &["CNI_CONTAINERID"]).env("CNI_CONTAINERID", "c\"1"),
        case("containerid-empty", "bridge", b(), 4, &["CNI_CONTAINERID"]).env("CNI_CONTAINERID", ""),
        // --- CNI_NETNS
        case("netns-regular-file", "bridge", b(), 4, &["CNI_NETNS"]).env("CNI_NETNS", &regular),
        case("netns-directory", "bridge", b(), 4, &["CNI_NETNS"]).env("CNI_NETNS", &dir),
        case("netns-nonexistent", "bridge", b(), 3, &["CNI_NETNS"]).env("CNI_NETNS", "/nonexistent/netns/x"),
        case("netns-own", "bridge", b(), 8, &["CNI_NETNS", "own"]).env("CNI_NETNS", "/proc/self/ns/net"),
        case("netns-relative", "bridge", b(), 4, &["CNI_NETNS"]).env("CNI_NETNS", "run/netns/x"),
        case("netns-newline", "bridge", b(), 4, &["CNI_NETNS"]).env("CNI_NETNS", "/run/netns/x\nlink del lo"),
        case("netns-missing-on-add", "bridge", b(), 4, &["CNI_NETNS"]).unset("CNI_NETNS"),
        case("netns-missing-on-check", "bridge", b(), 4, &["CNI_NETNS"]).command("CHECK").unset("CNI_NETNS"),
        // --- CNI_COMMAND, CNI_ARGS
        case("command-bogus", "bridge", b(), 4, &["CNI_COMMAND"]).command("BOGUS"),
        case("command-lowercase", "bridge", b(), 4, &["CNI_COMMAND"]).command("add"),
        case("command-newline", "bridge", b(), 4, &["CNI_COMMAND"]).command("ADD\nDEL"),
        case("args-two-equals", "bridge", b(), 4, &["CNI_ARGS"]).env("CNI_ARGS", "IP=1=2"),
        case("args-no-value", "bridge", b(), 4, &["CNI_ARGS"]).env("CNI_ARGS", "IgnoreUnknown=1;novalue"),
        case("args-empty-key", "bridge", b(), 4, &["CNI_ARGS"]).env("CNI_ARGS", "=x"),
        case("args-payload-after-ip", "host-local", host_local(json!({"subnet": "10.77.0.0/24"})), 4, &["CNI_ARGS"])
            .env("CNI_ARGS", "IgnoreUnknown=1;IP=10.77.0.5;ip link del x"),
        case("args-bad-ip", "host-local", host_local(json!({"subnet": "10.77.0.0/24"})), 7, &["CNI_ARGS", "IP"])
            .env("CNI_ARGS", "IgnoreUnknown=1;IP=10.77.0.5 dev lo"),
        case("args-bad-mac", "bridge", b(), 7, &["MAC"]).env("CNI_ARGS", "IgnoreUnknown=1;MAC=02:00:00:00:00:01#x"),
        // --- stdin
        case("stdin-empty", "bridge", Vec::new(), 6, &["config"]),
        case("stdin-huge-20mb", "bridge", huge_json(20 << 20), 6, &["config", "limit"]),
        case(
            "stdin-deep-nesting",
            "bridge",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
            6,
            &["config", "nested"],
        ),
        case("stdin-deep-nesting-in-key", "bridge", deep_in_key(), 6, &["config", "nested"]),
        case(
            "stdin-invalid-utf8",
            "bridge",
            b"{\"cniVersion\":\"1.0.0\",\"name\":\"n\xff\xfe\"}".to_vec(),
            6,
            &["config"],
        ),
        case("stdin-not-an-object", "bridge", "[]", 6, &["config", "object"]),
        case("stdin-trailing-garbage", "bridge", format!("{BRIDGE} x"), 6, &["config"]),
        case("stdin-nul", "bridge", b"{\"cniVersion\":\"1.0.0\"\0}".to_vec(), 6, &["config"]),
        // --- versions
        case("version-unknown", "bridge", bridge_with("cniVersion", "9.9.9".into()), 1, &["cniVersion", "9.9.9"]),
        case("version-not-a-string", "bridge", bridge_with("cniVersion", json!(1.0)), 6, &["cniVersion"]),
        case("version-prefix", "bridge", bridge_with("cniVersion", "0.3".into()), 1, &["cniVersion"]),
        case("version-missing-check", "bridge", strip_version(BRIDGE), 1, &["cniVersion", "CHECK"]).command("CHECK"),
        case("version-missing-status", "bridge", strip_version(BRIDGE), 1, &["cniVersion", "STATUS"])
            .command("STATUS")
            .unset("CNI_NETNS"),
        case("version-missing-gc", "bridge", strip_version(BRIDGE), 1, &["cniVersion", "GC"])
            .command("GC")
            .unset("CNI_NETNS"),
        case("check-on-0.3.1", "bridge", bridge_with("cniVersion", "0.3.1".into()), 1, &["cniVersion", "CHECK"])
            .command("CHECK"),
        case("status-on-1.0.0", "bridge", b(), 1, &["cniVersion", "STATUS"]).command("STATUS").unset("CNI_NETNS"),
        // --- interface names in config fields
        case("bridge-semicolon-payload", "bridge", bridge_with("bridge", ";ip link del x".into()), 7, &["bridge"]),
        case("bridge-payload-after-name", "bridge", bridge_with("bridge", "br0;ip link del x".into()), 7, &["bridge"]),
        case("bridge-newline", "bridge", bridge_with("bridge", "br0\nlink del dev lo".into()), 7, &["bridge"]),
        case("bridge-space", "bridge", bridge_with("bridge", "br 0".into()), 7, &["bridge"]),
        case("bridge-16-bytes", "bridge", bridge_with("bridge", "0123456789abcdef".into()), 7, &["bridge"]),
        case("bridge-leading-dash", "bridge", bridge_with("bridge", "-br0".into()), 7, &["bridge"]),
        case("bridge-dotdot", "bridge", bridge_with("bridge", "..".into()), 7, &["bridge"]),
        case("bridge-slash", "bridge", bridge_with("bridge", "br/0".into()), 7, &["bridge"]),
        case("bridge-hash", "bridge", bridge_with("bridge", "br0#".into()), 7, &["bridge"]),
        case("bridge-not-a-string", "bridge", bridge_with("bridge", json!(["cni0"])), 7, &["bridge"]),
        case("bridge-mtu-negative", "bridge", bridge_with("mtu", json!(-1)), 7, &["mtu"]),
        case("bridge-mtu-huge", "bridge", bridge_with("mtu", json!(1u64 << 40)), 7, &["mtu"]),
        case("bridge-vlan-4095", "bridge", bridge_with("vlan", json!(4095)), 7, &["vlan"]),
        case("network-name-slash", "bridge", bridge_with("name", "../../etc".into()), 7, &["name"]),
        case("network-name-quote", "bridge", bridge_with("name", "n\" -j ACCEPT".into()), 7, &["name"]),
        case("ipam-type-path", "bridge", bridge_with("ipam", json!({"type": "../../bin/sh"})), 7, &["ipam.type"]),
        case(
            "macvlan-master-space",
            "macvlan",
            conf(json!({"cniVersion": "1.0.0", "name": "n", "type": "macvlan", "master": "eth0 up"})),
            7,
            &["master"],
        ),
        case(
            "ipvlan-master-dash",
            "ipvlan",
            conf(json!({"cniVersion": "1.0.0", "name": "n", "type": "ipvlan", "master": "-eth0"})),
            7,
            &["master"],
        ),
        case(
            "vlan-master-newline",
            "vlan",
            conf(
                json!({"cniVersion": "1.0.0", "name": "n", "type": "vlan", "master": "eth0\nlink del lo", "vlanId": 5}),
            ),
            7,
            &["master"],
        ),
        case(
            "host-device-device-semicolon",
            "host-device",
            conf(json!({"cniVersion": "1.0.0", "name": "n", "type": "host-device", "device": "x;ip link del y"})),
            7,
            &["device"],
        ),
        case(
            "vxlan-dev-space",
            "vxlan",
            conf(json!({"cniVersion": "1.0.0", "name": "n", "type": "vxlan", "vni": 5, "dev": "a b"})),
            7,
            &["dev"],
        ),
        // --- host-local ranges
        case(
            "host-local-overlapping-range-sets",
            "host-local",
            host_local(json!({"ranges": [[{"subnet": "10.77.0.0/24"}], [{"subnet": "10.77.0.0/25"}]]})),
            7,
            &["ranges", "overlap"],
        ),
        case(
            "host-local-overlapping-ranges-in-a-set",
            "host-local",
            host_local(json!({"ranges": [[{"subnet": "10.77.0.0/24"}, {"subnet": "10.77.0.128/25"}]]})),
            7,
            &["ranges", "overlap"],
        ),
        case("host-local-subnet-32", "host-local", host_local(json!({"subnet": "10.77.0.5/32"})), 7, &["subnet"]),
        case("host-local-subnet-0", "host-local", host_local(json!({"subnet": "0.0.0.0/0"})), 7, &["subnet"]),
        case("host-local-subnet-v6-128", "host-local", host_local(json!({"subnet": "fd00::1/128"})), 7, &["subnet"]),
        case("host-local-subnet-v6-0", "host-local", host_local(json!({"subnet": "::/0"})), 7, &["subnet"]),
        case(
            "host-local-range-start-outside",
            "host-local",
            host_local(json!({"subnet": "10.77.0.0/24", "rangeStart": "10.78.0.5"})),
            7,
            &["rangeStart"],
        ),
        case(
            "host-local-range-end-outside",
            "host-local",
            host_local(json!({"ranges": [[{"subnet": "10.77.0.0/24", "rangeEnd": "10.76.0.5"}]]})),
            7,
            &["rangeEnd"],
        ),
        case(
            "host-local-subnet-host-bits",
            "host-local",
            host_local(json!({"subnet": "10.77.0.5/24"})),
            7,
            &["subnet"],
        ),
        case(
            "host-local-datadir-is-a-file-status",
            "host-local",
            {
                let mut c: Value =
                    serde_json::from_slice(&host_local(json!({"subnet": "10.77.0.0/24", "dataDir": regular}))).unwrap();
                c["cniVersion"] = "1.1.0".into();
                conf(c)
            },
            50,
            &["dataDir"],
        )
        .command("STATUS")
        .env("CNI_NETNS", ""),
        // What broke: STATUS said ready with no `ip` to run (an interface plugin can do
        // nothing without it).
        case(
            "status-without-ip-in-path",
            "loopback",
            br#"{"cniVersion":"1.1.0","name":"lo","type":"loopback"}"#.to_vec(),
            50,
            &["`ip`", "PATH"],
        )
        .command("STATUS")
        .env("CNI_NETNS", "")
        .env("PATH", "/nonexistent"),
        // --- portmap
        case(
            "portmap-host-port-too-big",
            "portmap",
            portmap(json!([{"hostPort": 70000, "containerPort": 80, "protocol": "tcp"}]), json!({})),
            7,
            &["hostPort"],
        ),
        case(
            "portmap-container-port-zero",
            "portmap",
            portmap(json!([{"hostPort": 8080, "containerPort": 0, "protocol": "tcp"}]), json!({})),
            7,
            &["containerPort"],
        ),
        case(
            "portmap-container-port-negative",
            "portmap",
            portmap(json!([{"hostPort": 8080, "containerPort": -1, "protocol": "tcp"}]), json!({})),
            7,
            &["containerPort"],
        ),
        case(
            "portmap-container-port-too-big",
            "portmap",
            portmap(json!([{"hostPort": 8080, "containerPort": 65536, "protocol": "tcp"}]), json!({})),
            7,
            &["containerPort"],
        ),
        case(
            "portmap-host-ip-not-an-address",
            "portmap",
            portmap(json!([{"hostPort": 8080, "containerPort": 80, "hostIP": "10.0.0.1 -j ACCEPT"}]), json!({})),
            7,
            &["hostIP"],
        ),
        case(
            "portmap-host-ip-out-of-range",
            "portmap",
            portmap(json!([{"hostPort": 8080, "containerPort": 80, "hostIP": "300.1.1.1"}]), json!({})),
            7,
            &["hostIP"],
        ),
        case(
            "portmap-protocol-injection",
            "portmap",
            portmap(json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp -j ACCEPT"}]), json!({})),
            7,
            &["protocol"],
        ),
        case(
            "portmap-conditions-with-space",
            "portmap",
            portmap(json!([{"hostPort": 8080, "containerPort": 80}]), json!({"conditionsV4": ["-s 10.0.0.1"]})),
            7,
            &["conditionsV4"],
        ),
        case(
            "portmap-conditions-comment",
            "portmap",
            portmap(json!([{"hostPort": 8080, "containerPort": 80}]), json!({"conditionsV4": ["#", "x"]})),
            7,
            &["conditionsV4"],
        ),
        case(
            "portmap-conditions-newline",
            "portmap",
            portmap(json!([{"hostPort": 8080, "containerPort": 80}]), json!({"conditionsV6": ["-s\n-F"]})),
            7,
            &["conditionsV6"],
        ),
        case(
            "portmap-conditions-nft-block",
            "portmap",
            portmap(
                json!([{"hostPort": 8080, "containerPort": 80}]),
                json!({"backend": "nftables", "conditionsV4": ["}", ";", "flush", "ruleset"]}),
            ),
            7,
            &["conditionsV4"],
        ),
        case(
            "portmap-external-chain-quote",
            "portmap",
            portmap(json!([{"hostPort": 8080, "containerPort": 80}]), json!({"externalSetMarkChain": "X\" -j DROP"})),
            7,
            &["externalSetMarkChain"],
        ),
        case(
            "portmap-mark-bit-out-of-range",
            "portmap",
            portmap(json!([{"hostPort": 8080, "containerPort": 80}]), json!({"markMasqBit": 32})),
            7,
            &["markMasqBit"],
        ),
        case(
            "portmap-backend-injection",
            "portmap",
            portmap(json!([{"hostPort": 8080, "containerPort": 80}]), json!({"backend": "nftables; flush ruleset"})),
            7,
            &["backend"],
        ),
        // --- firewall
        case(
            "firewall-admin-chain-quote",
            "firewall",
            firewall(json!({"iptablesAdminChainName": "CNI-ADMIN\" -j ACCEPT -m comment --comment \""})),
            7,
            &["iptablesAdminChainName"],
        ),
        case(
            "firewall-admin-chain-newline",
            "firewall",
            firewall(json!({"iptablesAdminChainName": "CNI-ADMIN\n-F"})),
            7,
            &["iptablesAdminChainName"],
        ),
        case(
            "firewall-admin-chain-too-long",
            "firewall",
            firewall(json!({"iptablesAdminChainName": "A".repeat(29)})),
            7,
            &["iptablesAdminChainName"],
        ),
        case(
            "firewall-backend-injection",
            "firewall",
            firewall(json!({"backend": "iptables\n*filter"})),
            7,
            &["backend"],
        ),
        case(
            "firewall-name-comment-injection",
            "firewall",
            firewall(json!({"name": "net\" ; flush ruleset ; \""})),
            7,
            &["name"],
        ),
        case(
            "firewall-bridge-name-from-prevresult",
            "firewall",
            firewall(json!({
                "ingressPolicy": "same-bridge",
                "prevResult": {
                    "cniVersion": "1.0.0",
                    "interfaces": [{"name": "cni0\" accept ; flush ruleset ; \""}],
                    "ips": [{"address": "10.77.0.5/24"}]
                }
            })),
            7,
            &["bridge"],
        ),
        // --- tuning
        case(
            "tuning-sysctl-traversal",
            "tuning",
            conf(json!({
                "cniVersion": "1.0.0", "name": "n", "type": "tuning",
                "sysctl": {"net/ipv4/../../../../etc/passwd": "x"}, "prevResult": prev_result()
            })),
            7,
            &["sysctl"],
        ),
        case(
            "tuning-sysctl-not-net",
            "tuning",
            conf(json!({
                "cniVersion": "1.0.0", "name": "n", "type": "tuning",
                "sysctl": {"kernel.core_pattern": "|/bin/sh"}, "prevResult": prev_result()
            })),
            7,
            &["sysctl"],
        ),
        case(
            "tuning-sysctl-value-newline",
            "tuning",
            conf(json!({
                "cniVersion": "1.0.0", "name": "n", "type": "tuning",
                "sysctl": {"net.ipv4.conf.eth0.rp_filter": "1\n2"}, "prevResult": prev_result()
            })),
            7,
            &["sysctl"],
        ),
    ];
    v.sort_by_key(|c| c.name);
    v
}

fn huge_json(size: usize) -> Vec<u8> {
    let mut s = String::from(r#"{"cniVersion":"1.0.0","name":"n","type":"bridge","pad":""#);
    s.push_str(&"x".repeat(size));
    s.push_str("\"}");
    s.into_bytes()
}

fn deep_in_key() -> Vec<u8> {
    format!(
        r#"{{"cniVersion":"1.0.0","name":"n","type":"bridge","x":{}{}}}"#,
        "{\"a\":".repeat(200),
        "1".to_string() + &"}".repeat(200)
    )
    .into_bytes()
}

fn strip_version(conf: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_str(conf).unwrap();
    v.as_object_mut().unwrap().remove("cniVersion");
    serde_json::to_vec(&v).unwrap()
}

/// A network namespace that is not ours, alive as long as the child sleeps.
struct Scratch {
    child: Child,
    path: String,
}

impl Scratch {
    fn new() -> Option<Scratch> {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "300"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let path = format!("/proc/{}/ns/net", child.id());
        let mut s = Scratch { child, path };
        // Wait until unshare has made the namespace (the link then differs from ours).
        let own = std::fs::read_link("/proc/self/ns/net").ok()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = s.child.try_wait() {
                return None;
            }
            if std::fs::read_link(&s.path).is_ok_and(|l| l != own) {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(c: &Case, scratch: Option<&str>) -> Run {
    let mut env: Vec<(&str, Option<String>)> = vec![
        ("CNI_COMMAND", Some("ADD".into())),
        ("CNI_CONTAINERID", Some("ctr1".into())),
        ("CNI_IFNAME", Some("eth0".into())),
        ("CNI_PATH", Some("/nonexistent".into())),
        ("CNI_ARGS", Some("IgnoreUnknown=1".into())),
        ("CNI_NETNS", scratch.map(str::to_string)),
    ];
    for (k, v) in &c.env {
        env.retain(|(x, _)| x != k);
        env.push((k, v.clone()));
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipcni"));
    cmd.args([c.plugin, "--dry-run"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in &env {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let mut child = cmd.spawn().expect("spawn ipcni");
    let mut stdin = child.stdin.take().unwrap();
    let bytes = c.stdin.clone();
    // The plugin stops reading past its size limit: a broken pipe is expected then.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&bytes);
    });
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let mut stdout = Vec::new();
    let _ = out.read_to_end(&mut stdout);
    let status = child.wait().unwrap();
    let _ = writer.join();
    let stderr = reader.join().unwrap();
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

fn check(c: &Case, r: &Run) -> Result<u32, String> {
    if r.code == Some(0) || r.code.is_none() {
        return Err(format!("exit status {:?}", r.code));
    }
    let mut docs = serde_json::Deserializer::from_str(&r.stdout).into_iter::<Value>();
    let err = match docs.next() {
        Some(Ok(v)) => v,
        _ => return Err("stdout is not a JSON error object".into()),
    };
    if docs.next().is_some() || !r.stdout.ends_with('\n') || r.stdout.trim_end().contains('\n') {
        return Err("stdout holds more than one line / JSON document".into());
    }
    let obj = err.as_object().ok_or("stdout is not a JSON object")?;
    let code = obj.get("code").and_then(Value::as_u64).ok_or("no numeric code")? as u32;
    let msg = obj.get("msg").and_then(Value::as_str).ok_or("no msg")?;
    if code != c.code {
        return Err(format!("code {code}, expected {}", c.code));
    }
    if msg.trim().is_empty() {
        return Err("empty msg".into());
    }
    if let Some(n) = c.names.iter().find(|n| !msg.contains(*n)) {
        return Err(format!("msg does not name {n:?}"));
    }
    if msg.len() > 4096 {
        return Err(format!("msg is {} bytes: hostile input echoed whole", msg.len()));
    }
    Ok(code)
}

#[test]
fn adversarial_inputs_are_refused_with_the_right_error() {
    let tmp = tempfile::tempdir().unwrap();
    let scratch = Scratch::new();
    if scratch.is_none() {
        let _ = writeln!(
            std::io::stderr(),
            "adversarial: cannot make a throwaway netns (unshare --net): cases needing one are skipped"
        );
    }
    let mut failures = Vec::new();
    let mut per_code = std::collections::BTreeMap::<u32, usize>::new();
    let (mut ran, mut skipped) = (0, 0);
    let all = cases(tmp.path());
    let mut names = std::collections::BTreeSet::new();
    for c in &all {
        assert!(names.insert(c.name), "duplicate case name {}", c.name);
        let ns = match (c.ns, &scratch) {
            (Ns::Scratch, Some(s)) => Some(s.path.as_str()),
            (Ns::Scratch, None) => {
                skipped += 1;
                continue;
            }
            (Ns::AsGiven, _) => None,
        };
        let r = run(c, ns);
        ran += 1;
        match check(c, &r) {
            Ok(code) => *per_code.entry(code).or_default() += 1,
            Err(why) => failures.push(format!(
                "{} ({} {}): {why}\n  stdout: {}\n  stderr: {}",
                c.name,
                c.plugin,
                c.env.iter().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>().join(" "),
                r.stdout.chars().take(600).collect::<String>(),
                r.stderr.chars().take(600).collect::<String>()
            )),
        }
    }
    let codes: Vec<String> = per_code.iter().map(|(c, n)| format!("code {c}: {n}")).collect();
    // Straight to the stream, past the test harness's capture.
    let _ = writeln!(std::io::stderr(), "adversarial: {ran} cases run, {skipped} skipped; {}", codes.join(", "));
    assert!(failures.is_empty(), "{} adversarial case(s) failed:\n{}", failures.len(), failures.join("\n"));
}
