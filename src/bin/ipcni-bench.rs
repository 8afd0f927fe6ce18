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
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which std cannot see
fn run_plugin(plugin: &Path, env: &Env, config: &str) -> Run {
    let start = Instant::now();
    let mut child = Command::new(plugin)
        .env("CNI_COMMAND", env.command)
        .env("CNI_CONTAINERID", env.id)
        .env("CNI_NETNS", env.netns)
        .env("CNI_IFNAME", env.ifname)
        .env("CNI_PATH", env.cni_path)
        .env("CNI_ARGS", "IgnoreUnknown=1")
        .env("IPCNI_COUNT_PROCESSES", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", plugin.display()));
    child.stdin.take().unwrap().write_all(config.as_bytes()).unwrap();
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
        },
        Case {
            name: "bridge ipMasq (iptables-nft)",
            plugin: "bridge",
            ifname: "eth0",
            config: |_, d| bridge_conf(r#","ipMasq":true"#, d),
            path_prefix: None,
        },
        Case {
            name: "bridge ipMasq (iptables-legacy)",
            plugin: "bridge",
            ifname: "eth0",
            config: |_, d| bridge_conf(r#","ipMasq":true"#, d),
            path_prefix: Some("legacy"),
        },
        Case {
            name: "bridge ipMasq (nftables)",
            plugin: "bridge",
            ifname: "eth0",
            config: |_, d| bridge_conf(r#","ipMasq":true,"ipMasqBackend":"nftables""#, d),
            path_prefix: None,
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
        },
        Case {
            name: "loopback",
            plugin: "loopback",
            ifname: "lo",
            config: |_, _| r#"{"cniVersion":"1.0.0","name":"lo","type":"loopback"}"#.to_string(),
            path_prefix: None,
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
        }
        unsafe { std::env::set_var("PATH", old_path) };
        if let Some(f) = failed {
            println!("| {} | FAILED: {} | | | | | | | | | | |", case.name, f.replace('\n', " "));
            continue;
        }
        let ours = summarize(&stats["ipcni"].add);
        let ref_add = summarize(&stats["reference"].add);
        let ours_del = summarize(&stats["ipcni"].del);
        let ref_del = summarize(&stats["reference"].del);
        for (label, a, d) in [("ipcni", &ours, &ours_del), ("reference", &ref_add, &ref_del)] {
            let (ra, rd, rr) = if label == "ipcni" {
                (
                    format!("{:.2}", ours.0 / ref_add.0),
                    format!("{:.2}", ours_del.0 / ref_del.0),
                    format!("{:.2}", ours.3.max(ours_del.3) / ref_add.3.max(ref_del.3)),
                )
            } else {
                Default::default()
            };
            println!(
                "| {} | {label} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {ra} | {rd} | {rr} |",
                case.name,
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
    if scale > 0 {
        scale_test(&impls, scale, &tag, &work, &guard);
    }
    if parallel > 0 {
        parallel_test(&impls, parallel, &tag, &work, &guard);
    }
    drop(guard);
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
        let first = median(&mut adds[..10.min(n)].to_vec());
        let last = median(&mut adds[n.saturating_sub(10)..].to_vec());
        println!("| {} | {first:.1} | {last:.1} | {:.2} | {:.1} |", imp.label, last / first, median(&mut dels));
    }
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
