//! Side-by-side benchmark of ipcni and the reference Go plugins (Debian's
//! containernetworking-plugins in /usr/lib/cni), inside throwaway network namespaces.
//!
//! It is its own launcher: every plugin run is a fork/exec it waits for with wait4(2), so
//! peak RSS (ru_maxrss, which covers the waited-for descendants: `ip`, `nsenter`, …) and
//! CPU time are the plugin's own, not a parent interpreter's.
//!
//!   ipcni-bench [--iterations N] [--cases a,b,…] [--ipcni DIR] [--reference DIR]
//!               [--scale N] [--parallel N]
//!
//! Not part of the test suite's pass/fail: it prints a table and ratios. Run as root.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[derive(Clone, Debug)]
struct Run {
    wall: Duration,
    cpu: Duration,
    maxrss_kib: i64,
    ok: bool,
    processes: Option<u32>,
    stdout: String,
    stderr: String,
}

struct Env<'a> {
    command: &'a str,
    id: &'a str,
    netns: &'a str,
    ifname: &'a str,
    cni_path: &'a Path,
}

/// Runs `plugin` with the CNI env and `config` on stdin; waits with wait4 for rusage.
fn run_plugin(plugin: &Path, env: &Env, config: &str) -> Run {
    let mut cmd = Command::new(plugin);
    cmd.env("CNI_COMMAND", env.command)
        .env("CNI_CONTAINERID", env.id)
        .env("CNI_NETNS", env.netns)
        .env("CNI_IFNAME", env.ifname)
        .env("CNI_PATH", env.cni_path)
        .env("CNI_ARGS", "IgnoreUnknown=1")
        .env("IPCNI_COUNT_PROCESSES", "1");
    launch(cmd, config.as_bytes())
}

/// `ip -batch -` fed `lines`, in the network namespace at `netns` (joined with setns
/// between fork and exec, as ipcni's executor does) or in the host namespace: the
/// process-and-kernel floor of a plan, without any plugin logic.
fn run_batch(netns: Option<&str>, lines: &str) -> Run {
    let mut cmd = Command::new("ip");
    cmd.args(["-batch", "-"]);
    if let Some(path) = netns {
        let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        let fd = file.as_raw_fd();
        // The fd must outlive the fork; leaking one fd per floor run is harmless here.
        std::mem::forget(file);
        // SAFETY: only setns(2), async-signal-safe, runs between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                if libc::setns(fd, libc::CLONE_NEWNET) == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
            });
        }
    }
    launch(cmd, lines.as_bytes())
}

/// Spawns `cmd` with `input` on stdin and waits with wait4 for its rusage.
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which std cannot see
fn launch(mut cmd: Command, input: &[u8]) -> Run {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    // Read pipes in threads so a chatty plugin never blocks on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).ok();
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err, &mut s).ok();
        s
    });
    let mut status = 0;
    // SAFETY: wait4 on our own child's pid with valid out-pointers.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall = start.elapsed();
    assert_eq!(rc, pid, "wait4");
    let stdout = t_out.join().unwrap();
    let stderr = t_err.join().unwrap();
    let tv = |t: libc::timeval| Duration::from_micros(t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64);
    let processes = stderr.lines().find_map(|l| l.strip_prefix("ipcni: processes: ")?.trim().parse().ok());
    Run {
        wall,
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        maxrss_kib: ru.ru_maxrss,
        ok: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        processes,
        stdout,
        stderr,
    }
}

fn sh(args: &[&str]) {
    let st = Command::new(args[0]).args(&args[1..]).status().expect("run");
    assert!(st.success(), "{args:?} failed");
}

/// Enters the throwaway host namespace with a private mount namespace and a sysfs of
/// its own, as `ip netns exec` does, so plugins see the host side they change.
fn enter_host(name: &str) {
    let f = std::fs::File::open(format!("/run/netns/{name}")).expect("open host netns");
    unsafe {
        assert_eq!(libc::unshare(libc::CLONE_NEWNS), 0, "unshare mount ns");
        let root = CString::new("/").unwrap();
        let none = CString::new("none").unwrap();
        assert_eq!(
            libc::mount(
                none.as_ptr(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_SLAVE,
                std::ptr::null()
            ),
            0
        );
        assert_eq!(libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET), 0, "setns host");
        let sys = CString::new("/sys").unwrap();
        let sysfs = CString::new("sysfs").unwrap();
        libc::umount2(sys.as_ptr(), libc::MNT_DETACH);
        assert_eq!(libc::mount(sysfs.as_ptr(), sys.as_ptr(), sysfs.as_ptr(), 0, std::ptr::null()), 0, "mount sysfs");
    }
}

struct Case {
    name: &'static str,
    plugin: &'static str,
    ifname: &'static str,
    config: fn(&str, &Path) -> String,
    /// PATH prefix for the plugin (e.g. a dir where `iptables` is iptables-legacy).
    path_prefix: Option<&'static str>,
    /// The same kernel work as the plugin's plan, as bare `ip -batch` processes (one per
    /// namespace): what no implementation that execs `ip` can beat.
    floor: Option<fn(usize) -> Floor>,
}

/// Batches for the floor of one ADD and its DEL: (in the container?, lines).
struct Floor {
    add: Vec<(bool, String)>,
    del: Vec<(bool, String)>,
}

fn bridge_floor(i: usize) -> Floor {
    let veth = format!("vfloor{i}");
    Floor {
        add: vec![
            (
                false,
                format!(
                    "link add name {veth} type veth peer name eth0 netns @NETNS@\nlink set dev {veth} master benchbr0\nlink set dev {veth} up\n"
                ),
            ),
            (
                true,
                format!(
                    "addr add 10.77.250.{}/16 dev eth0\nlink set dev eth0 up\nroute add default via 10.77.0.1 dev eth0\n",
                    2 + i % 250
                ),
            ),
        ],
        del: vec![(true, "link del dev eth0\n".into())],
    }
}

fn ptp_floor(i: usize) -> Floor {
    let veth = format!("vfloor{i}");
    let ip = format!("10.78.250.{}", 2 + i % 250);
    Floor {
        add: vec![
            (
                false,
                format!(
                    "link add name {veth} type veth peer name eth0 netns @NETNS@\nlink set dev {veth} up\naddr add 10.78.0.1/32 dev {veth}\nroute replace {ip}/32 dev {veth} scope host\n"
                ),
            ),
            (
                true,
                format!(
                    "addr add {ip}/16 dev eth0\nlink set dev eth0 up\nroute del 10.78.0.0/16 dev eth0\nroute add 10.78.0.1/32 dev eth0 src {ip} scope link\nroute add 10.78.0.0/16 via 10.78.0.1 dev eth0 src {ip}\nroute add default via 10.78.0.1 dev eth0\n"
                ),
            ),
        ],
        del: vec![(true, "link del dev eth0\n".into())],
    }
}

fn macvlan_floor(i: usize) -> Floor {
    let tmp = format!("mvfloor{i}");
    Floor {
        add: vec![
            (false, format!("link add link benchup0 name {tmp} netns @NETNS@ type macvlan mode bridge\n")),
            (
                true,
                format!(
                    "link set dev {tmp} name eth0\naddr add 10.79.250.{}/16 dev eth0\nlink set dev eth0 up\n",
                    2 + i % 250
                ),
            ),
        ],
        del: vec![(true, "link del dev eth0\n".into())],
    }
}

/// Runs a floor's batches in order; one Run whose wall and CPU are the sums.
fn run_floor(batches: &[(bool, String)], netns: &str) -> Run {
    let runs: Vec<Run> = batches
        .iter()
        .map(|(in_ctr, lines)| run_batch(in_ctr.then_some(netns), &lines.replace("@NETNS@", netns)))
        .collect();
    combine(&runs)
}

/// Several runs of one operation (a chain, a floor) as one: summed times, peak RSS.
fn combine(runs: &[Run]) -> Run {
    Run {
        wall: runs.iter().map(|r| r.wall).sum(),
        cpu: runs.iter().map(|r| r.cpu).sum(),
        maxrss_kib: runs.iter().map(|r| r.maxrss_kib).max().unwrap_or(0),
        ok: runs.iter().all(|r| r.ok),
        processes: runs.iter().map(|r| r.processes).sum(),
        stdout: runs.last().map(|r| r.stdout.clone()).unwrap_or_default(),
        stderr: runs.iter().map(|r| r.stderr.as_str()).collect::<Vec<_>>().join(""),
    }
}

fn bridge_conf(extra: &str, data: &Path) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","name":"benchnet","type":"bridge","bridge":"benchbr0","isGateway":true{extra},
            "ipam":{{"type":"host-local","subnet":"10.77.0.0/16","dataDir":"{}","routes":[{{"dst":"0.0.0.0/0"}}]}}}}"#,
        data.display()
    )
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "bridge+host-local",
            plugin: "bridge",
            ifname: "eth0",
            config: |_, d| bridge_conf("", d),
            path_prefix: None,
            floor: Some(bridge_floor),
        },
        Case {
            name: "bridge ipMasq (iptables-nft)",
            plugin: "bridge",
            ifname: "eth0",
            config: |_, d| bridge_conf(r#","ipMasq":true"#, d),
            path_prefix: None,
            floor: None,
        },
        Case {
            name: "bridge ipMasq (iptables-legacy)",
            plugin: "bridge",
            ifname: "eth0",
            config: |_, d| bridge_conf(r#","ipMasq":true"#, d),
            path_prefix: Some("legacy"),
            floor: None,
        },
        Case {
            name: "bridge ipMasq (nftables)",
            plugin: "bridge",
            ifname: "eth0",
            config: |_, d| bridge_conf(r#","ipMasq":true,"ipMasqBackend":"nftables""#, d),
            path_prefix: None,
            floor: None,
        },
        Case {
            name: "ptp+host-local",
            plugin: "ptp",
            ifname: "eth0",
            config: |_, d| {
                format!(
                    r#"{{"cniVersion":"1.0.0","name":"benchptp","type":"ptp",
                    "ipam":{{"type":"host-local","subnet":"10.78.0.0/16","dataDir":"{}","routes":[{{"dst":"0.0.0.0/0"}}]}}}}"#,
                    d.display()
                )
            },
            path_prefix: None,
            floor: Some(ptp_floor),
        },
        Case {
            name: "macvlan+host-local",
            plugin: "macvlan",
            ifname: "eth0",
            config: |_, d| {
                format!(
                    r#"{{"cniVersion":"1.0.0","name":"benchmv","type":"macvlan","master":"benchup0","mode":"bridge",
                    "ipam":{{"type":"host-local","subnet":"10.79.0.0/16","dataDir":"{}"}}}}"#,
                    d.display()
                )
            },
            path_prefix: None,
            floor: Some(macvlan_floor),
        },
        Case {
            name: "loopback",
            plugin: "loopback",
            ifname: "lo",
            config: |_, _| r#"{"cniVersion":"1.0.0","name":"lo","type":"loopback"}"#.to_string(),
            path_prefix: None,
            floor: None,
        },
        Case {
            name: "host-local alone",
            plugin: "host-local",
            ifname: "eth0",
            config: |_, d| {
                format!(
                    r#"{{"cniVersion":"1.0.0","name":"benchhl","type":"bridge","ipam":{{"type":"host-local","subnet":"10.80.0.0/16","dataDir":"{}"}}}}"#,
                    d.display()
                )
            },
            path_prefix: None,
            floor: None,
        },
    ]
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

fn p90(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() { f64::NAN } else { v[((v.len() as f64 * 0.9).ceil() as usize).min(v.len()) - 1] }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[derive(Default)]
struct Stats {
    add: Vec<Run>,
    del: Vec<Run>,
}

fn summarize(runs: &[Run]) -> (f64, f64, f64, f64, String) {
    let mut wall: Vec<f64> = runs.iter().map(|r| ms(r.wall)).collect();
    let mut cpu: Vec<f64> = runs.iter().map(|r| ms(r.cpu)).collect();
    let rss = runs.iter().map(|r| r.maxrss_kib).max().unwrap_or(0) as f64 / 1024.0;
    let procs = runs.iter().filter_map(|r| r.processes).max().map_or("-".to_string(), |p| p.to_string());
    (median(&mut wall.clone()), p90(&mut wall), median(&mut cpu), rss, procs)
}

struct Impl {
    label: &'static str,
    dir: PathBuf,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let iterations: usize = get("--iterations").map_or(30, |s| s.parse().expect("--iterations N"));
    let ipcni_dir = PathBuf::from(get("--ipcni").expect("--ipcni DIR (from `ipcni install DIR`)"));
    let ref_dir = PathBuf::from(get("--reference").unwrap_or_else(|| "/usr/lib/cni".into()));
    let wanted: Option<Vec<String>> = get("--cases").map(|s| s.split(',').map(str::to_string).collect());
    let scale: usize = get("--scale").map_or(0, |s| s.parse().expect("--scale N"));
    let parallel: usize = get("--parallel").map_or(0, |s| s.parse().expect("--parallel N"));

    let tag = format!("ipcni-bench-{}", std::process::id());
    let host = format!("{tag}-h");
    let work = tempfile_dir(&tag);
    // Namespaces are made and removed by exact name; the root netns is never changed.
    sh(&["ip", "netns", "add", &host]);
    let ctr = format!("{tag}-c");
    sh(&["ip", "netns", "add", &ctr]);
    let cleanup_names = vec![host.clone(), ctr.clone()];
    let guard = Cleanup { netns: std::cell::RefCell::new(cleanup_names), dir: work.clone() };
    // An "uplink" for macvlan: one end of a veth pair inside the host namespace.
    sh(&["ip", "-n", &host, "link", "add", "benchup0", "type", "veth", "peer", "name", "benchup1"]);
    sh(&["ip", "-n", &host, "link", "set", "benchup0", "up"]);
    sh(&["ip", "-n", &host, "link", "set", "benchup1", "up"]);
    // iptables-legacy for the legacy case, by PATH (the Go plugin execs `iptables` too).
    let legacy = work.join("legacy");
    std::fs::create_dir_all(&legacy).unwrap();
    for t in ["iptables", "ip6tables", "iptables-restore", "ip6tables-restore", "iptables-save", "ip6tables-save"] {
        let _ = std::os::unix::fs::symlink(
            format!("/usr/sbin/{}", t.replacen("tables", "tables-legacy", 1)),
            legacy.join(t),
        );
    }
    enter_host(&host);

    let impls = [Impl { label: "ipcni", dir: ipcni_dir.clone() }, Impl { label: "reference", dir: ref_dir.clone() }];
    let netns_path = format!("/run/netns/{ctr}");
    println!(
        "# {iterations} iterations of ADD then DEL per case, implementations alternating; times in ms, RSS in MiB"
    );
    println!(
        "| case | impl | ADD median | ADD p90 | DEL median | DEL p90 | CPU/ADD | peak RSS | execs/ADD | ADD ratio | DEL ratio | RSS ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for case in cases() {
        if wanted.as_ref().is_some_and(|w| !w.iter().any(|n| case.name.starts_with(n.as_str()))) {
            continue;
        }
        if impls.iter().any(|i| !i.dir.join(case.plugin).exists()) {
            println!("| {} | skipped: {} missing in one implementation | | | | | | | | | | |", case.name, case.plugin);
            continue;
        }
        let old_path = std::env::var("PATH").unwrap_or_default();
        if case.path_prefix.is_some() {
            if !Path::new("/usr/sbin/iptables-legacy").exists() {
                println!("| {} | skipped: iptables-legacy not installed | | | | | | | | | | |", case.name);
                continue;
            }
            unsafe { std::env::set_var("PATH", format!("{}:{old_path}", legacy.display())) };
        }
        let mut stats: BTreeMap<&str, Stats> = BTreeMap::new();
        let mut failed = None;
        for i in 0..iterations + 2 {
            let order: Vec<&Impl> = if i % 2 == 0 { impls.iter().collect() } else { impls.iter().rev().collect() };
            for imp in order {
                let data = work.join(format!("ipam-{}", imp.label));
                let config = (case.config)(case.name, &data);
                let id = format!("bench{i}");
                let env =
                    |command| Env { command, id: &id, netns: &netns_path, ifname: case.ifname, cni_path: &imp.dir };
                let plugin = imp.dir.join(case.plugin);
                let add = run_plugin(&plugin, &env("ADD"), &config);
                let del = run_plugin(&plugin, &env("DEL"), &config);
                if !add.ok || !del.ok {
                    failed = Some(format!(
                        "{} {}: ADD ok={} DEL ok={}: {}{}{}",
                        case.name, imp.label, add.ok, del.ok, add.stdout, del.stdout, add.stderr
                    ));
                    break;
                }
                // The first two rounds warm caches (bridge creation, page cache).
                if i >= 2 {
                    let s = stats.entry(imp.label).or_default();
                    s.add.push(add);
                    s.del.push(del);
                }
            }
            if failed.is_some() {
                break;
            }
            if let Some(floor) = case.floor {
                let f = floor(i);
                let add = run_floor(&f.add, &netns_path);
                let del = run_floor(&f.del, &netns_path);
                if !add.ok || !del.ok {
                    failed = Some(format!("{} floor: {}{}", case.name, add.stderr, del.stderr));
                    break;
                }
                if i >= 2 {
                    let s = stats.entry("floor").or_default();
                    s.add.push(add);
                    s.del.push(del);
                }
            }
        }
        unsafe { std::env::set_var("PATH", old_path) };
        if let Some(f) = failed {
            println!("| {} | FAILED: {} | | | | | | | | | | |", case.name, f.replace('\n', " "));
            continue;
        }
        print_rows(case.name, &stats);
    }
    if wanted.as_ref().is_none_or(|w| w.iter().any(|n| "5-plugin chain".starts_with(n.as_str()))) {
        chain_case(&impls, iterations, &netns_path, &work);
    }
    if scale > 0 {
        scale_test(&impls, scale, &tag, &work, &guard);
    }
    if parallel > 0 {
        parallel_test(&impls, parallel, &tag, &work, &guard);
    }
    drop(guard);
}

/// One table row per implementation; ratios against the reference on every row but its own.
fn print_rows(name: &str, stats: &BTreeMap<&str, Stats>) {
    let summary = |label: &str| stats.get(label).map(|s| (summarize(&s.add), summarize(&s.del)));
    let Some((ref_add, ref_del)) = summary("reference") else { return };
    for label in ["ipcni", "ipcni net", "reference", "floor"] {
        let Some((a, d)) = summary(label) else { continue };
        let (ra, rd, rr) = if label == "reference" {
            Default::default()
        } else {
            (
                format!("{:.2}", a.0 / ref_add.0),
                format!("{:.2}", d.0 / ref_del.0),
                if label == "floor" {
                    String::new()
                } else {
                    format!("{:.2}", a.3.max(d.3) / ref_add.3.max(ref_del.3))
                },
            )
        };
        let label = if label == "floor" { "floor: bare ip -batch" } else { label };
        println!(
            "| {name} | {label} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {ra} | {rd} | {rr} |",
            a.0,
            a.1,
            d.0,
            d.1,
            a.2,
            a.3.max(d.3),
            a.4
        );
    }
}

/// The chain a runtime would run for a pod with a port mapping and a bandwidth limit:
/// bridge → portmap → bandwidth → tuning → firewall, one process per plugin as libcni
/// execs them (prevResult passed along, DEL in reverse with the final result), for both
/// implementations; and `ipcni net add|del`, which runs the same list in one process.
fn chain_case(impls: &[Impl], iterations: usize, netns: &str, work: &Path) {
    let name = "5-plugin chain";
    let data = work.join("chain-ipam");
    let plugins = [
        json!({"type": "bridge", "bridge": "benchbr1", "isGateway": true, "ipMasq": true,
               "ipam": {"type": "host-local", "subnet": "10.82.0.0/16", "dataDir": data, "routes": [{"dst": "0.0.0.0/0"}]}}),
        json!({"type": "portmap", "capabilities": {"portMappings": true}}),
        json!({"type": "bandwidth", "capabilities": {"bandwidth": true}}),
        json!({"type": "tuning", "sysctl": {"net.core.somaxconn": "512"}, "dataDir": work.join("chain-tuning")}),
        json!({"type": "firewall"}),
    ];
    let cap_args = json!({
        "portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}],
        "bandwidth": {"ingressRate": 10_000_000, "ingressBurst": 1_000_000, "egressRate": 10_000_000, "egressBurst": 1_000_000},
    });
    let config_for = |plugin: &Value, prev: Option<&Value>| {
        let mut c = plugin.as_object().unwrap().clone();
        c.insert("cniVersion".into(), json!("1.0.0"));
        c.insert("name".into(), json!("benchchain"));
        let mut rc = serde_json::Map::new();
        for (cap, on) in plugin.get("capabilities").and_then(Value::as_object).into_iter().flatten() {
            if on == &json!(true) && cap_args.get(cap).is_some() {
                rc.insert(cap.clone(), cap_args[cap].clone());
            }
        }
        if !rc.is_empty() {
            c.insert("runtimeConfig".into(), Value::Object(rc));
        }
        if let Some(p) = prev {
            c.insert("prevResult".into(), p.clone());
        }
        Value::Object(c).to_string()
    };
    let confdir = work.join("chain-netconf");
    std::fs::create_dir_all(&confdir).unwrap();
    let list = json!({"cniVersion": "1.0.0", "name": "benchchain", "plugins": plugins});
    std::fs::write(confdir.join("benchchain.conflist"), list.to_string()).unwrap();

    let mut stats: BTreeMap<&str, Stats> = BTreeMap::new();
    for i in 0..iterations + 2 {
        let id = format!("chain{i}");
        let order: Vec<&Impl> = if i % 2 == 0 { impls.iter().collect() } else { impls.iter().rev().collect() };
        for imp in order {
            if plugins.iter().any(|p| !imp.dir.join(p["type"].as_str().unwrap()).exists()) {
                println!("| {name} | skipped: a plugin is missing in {} | | | | | | | | | | |", imp.label);
                return;
            }
            let env = |command| Env { command, id: &id, netns, ifname: "eth0", cni_path: &imp.dir };
            let mut adds = Vec::new();
            let mut prev: Option<Value> = None;
            for p in &plugins {
                let r =
                    run_plugin(&imp.dir.join(p["type"].as_str().unwrap()), &env("ADD"), &config_for(p, prev.as_ref()));
                if !r.ok {
                    println!(
                        "| {name} | FAILED: {} ADD {}: {} {} | | | | | | | | | | |",
                        imp.label,
                        p["type"],
                        r.stdout,
                        r.stderr.replace('\n', " ")
                    );
                    return;
                }
                prev = serde_json::from_str(&r.stdout).ok();
                adds.push(r);
            }
            let mut dels = Vec::new();
            for p in plugins.iter().rev() {
                let r =
                    run_plugin(&imp.dir.join(p["type"].as_str().unwrap()), &env("DEL"), &config_for(p, prev.as_ref()));
                if !r.ok {
                    println!("| {name} | FAILED: {} DEL {}: {} | | | | | | | | | | |", imp.label, p["type"], r.stdout);
                    return;
                }
                dels.push(r);
            }
            if i >= 2 {
                let s = stats.entry(imp.label).or_default();
                s.add.push(combine(&adds));
                s.del.push(combine(&dels));
            }
            if imp.label != "ipcni" {
                continue;
            }
            // The same list through the runtime CLI: one process for the whole chain.
            let net = |verb: &str| {
                let mut cmd = Command::new(imp.dir.join("ipcni"));
                cmd.args(["net", verb, "benchchain", netns])
                    .env("NETCONFPATH", &confdir)
                    .env("CNI_PATH", &imp.dir)
                    .env("CNI_CACHE_DIR", work.join("chain-cache"))
                    .env("CNI_CONTAINERID", format!("net{i}"))
                    .env("CAP_ARGS", cap_args.to_string())
                    .env("IPCNI_COUNT_PROCESSES", "1");
                launch(cmd, b"")
            };
            let (add, del) = (net("add"), net("del"));
            if !add.ok || !del.ok {
                println!(
                    "| {name} | FAILED: ipcni net: {} {} {} | | | | | | | | | | |",
                    add.stdout,
                    add.stderr.replace('\n', " "),
                    del.stderr.replace('\n', " ")
                );
                return;
            }
            if i >= 2 {
                let s = stats.entry("ipcni net").or_default();
                s.add.push(add);
                s.del.push(del);
            }
        }
    }
    print_rows(name, &stats);
}

fn tempfile_dir(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(tag);
    std::fs::create_dir_all(&p).unwrap();
    p
}

struct Cleanup {
    netns: std::cell::RefCell<Vec<String>>,
    dir: PathBuf,
}

impl Cleanup {
    fn add(&self, name: String) {
        self.netns.borrow_mut().push(name);
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for ns in self.netns.borrow().iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Attaches `n` containers to one bridge network one after another; reports the ADD
/// median of the first and the last 10.
fn scale_test(impls: &[Impl], n: usize, tag: &str, work: &Path, guard: &Cleanup) {
    println!("\n# scale: {n} containers attached to one bridge network one after another");
    println!("| impl | ADD median first 10 | ADD median last 10 | last/first | DEL median |");
    println!("|---|---|---|---|---|");
    let names: Vec<String> = (0..n).map(|i| format!("{tag}-s{i}")).collect();
    for name in &names {
        sh(&["ip", "netns", "add", name]);
        guard.add(name.clone());
    }
    for imp in impls {
        let data = work.join(format!("scale-{}", imp.label));
        let config = bridge_conf("", &data).replace("benchbr0", &format!("scale{}", imp.label.len()));
        let plugin = imp.dir.join("bridge");
        let mut adds = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let id = format!("scale{i}");
            let netns = format!("/run/netns/{name}");
            let r = run_plugin(
                &plugin,
                &Env { command: "ADD", id: &id, netns: &netns, ifname: "eth0", cni_path: &imp.dir },
                &config,
            );
            assert!(r.ok, "{} scale ADD {i}: {}", imp.label, r.stdout);
            adds.push(ms(r.wall));
        }
        let mut dels = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let id = format!("scale{i}");
            let netns = format!("/run/netns/{name}");
            let r = run_plugin(
                &plugin,
                &Env { command: "DEL", id: &id, netns: &netns, ifname: "eth0", cni_path: &imp.dir },
                &config,
            );
            assert!(r.ok, "{} scale DEL {i}: {}", imp.label, r.stdout);
            dels.push(ms(r.wall));
        }
        print_scale_row(imp.label, &adds, &mut dels);
    }
    // The floor: the same kernel work as bare `ip -batch` processes, on a bridge of its
    // own, so the growth that no implementation can avoid (the kernel's) shows beside
    // the plugins'.
    sh(&["ip", "link", "add", "name", "scalefloor", "type", "bridge"]);
    sh(&["ip", "link", "set", "dev", "scalefloor", "up"]);
    let (mut adds, mut dels) = (Vec::new(), Vec::new());
    for (i, name) in names.iter().enumerate() {
        let netns = format!("/run/netns/{name}");
        let mut f = bridge_floor(i);
        for (_, lines) in &mut f.add {
            *lines = lines.replace("benchbr0", "scalefloor");
        }
        let r = run_floor(&f.add, &netns);
        assert!(r.ok, "floor scale ADD {i}: {}", r.stderr);
        adds.push(ms(r.wall));
    }
    for (i, name) in names.iter().enumerate() {
        let r = run_floor(&bridge_floor(i).del, &format!("/run/netns/{name}"));
        assert!(r.ok, "floor scale DEL {i}: {}", r.stderr);
        dels.push(ms(r.wall));
    }
    sh(&["ip", "link", "del", "dev", "scalefloor"]);
    print_scale_row("floor: bare ip -batch", &adds, &mut dels);
}

fn print_scale_row(label: &str, adds: &[f64], dels: &mut [f64]) {
    let n = adds.len();
    let first = median(&mut adds[..10.min(n)].to_vec());
    let last = median(&mut adds[n.saturating_sub(10)..].to_vec());
    println!("| {label} | {first:.1} | {last:.1} | {:.2} | {:.1} |", last / first, median(dels));
}

/// `n` ADDs at once, then `n` DELs at once: batch wall time, distinct addresses.
fn parallel_test(impls: &[Impl], n: usize, tag: &str, work: &Path, guard: &Cleanup) {
    println!("\n# parallel: {n} ADDs at once, then {n} DELs at once");
    println!("| impl | ADD batch wall | DEL batch wall | distinct addresses | reservations left |");
    println!("|---|---|---|---|---|");
    let names: Vec<String> = (0..n).map(|i| format!("{tag}-p{i}")).collect();
    for name in &names {
        sh(&["ip", "netns", "add", name]);
        guard.add(name.clone());
    }
    for imp in impls {
        let data = work.join(format!("par-{}", imp.label));
        let config = bridge_conf("", &data).replace("benchbr0", &format!("par{}", imp.label.len()));
        let plugin = imp.dir.join("bridge");
        let run_all = |command: &'static str| {
            let start = Instant::now();
            let results: Vec<Run> = std::thread::scope(|s| {
                let handles: Vec<_> = names
                    .iter()
                    .enumerate()
                    .map(|(i, name)| {
                        let (plugin, config, dir) = (&plugin, &config, &imp.dir);
                        s.spawn(move || {
                            let id = format!("par{i}");
                            let netns = format!("/run/netns/{name}");
                            run_plugin(
                                plugin,
                                &Env { command, id: &id, netns: &netns, ifname: "eth0", cni_path: dir },
                                config,
                            )
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            (start.elapsed(), results)
        };
        let (add_wall, adds) = run_all("ADD");
        let failures = adds.iter().filter(|r| !r.ok).count();
        let mut addrs: Vec<String> = adds
            .iter()
            .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r.stdout).ok())
            .filter_map(|v| v["ips"][0]["address"].as_str().map(str::to_string))
            .collect();
        addrs.sort();
        addrs.dedup();
        let (del_wall, dels) = run_all("DEL");
        let del_failures = dels.iter().filter(|r| !r.ok).count();
        let left = std::fs::read_dir(data.join("benchnet"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().parse::<std::net::IpAddr>().is_ok())
                    .count()
            })
            .unwrap_or(0);
        println!(
            "| {} | {:.0} ms ({failures} failed) | {:.0} ms ({del_failures} failed) | {} of {n} | {left} |",
            imp.label,
            ms(add_wall),
            ms(del_wall),
            addrs.len()
        );
    }
}
