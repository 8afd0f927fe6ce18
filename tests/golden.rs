//! Golden plan tests: one folder per case under tests/golden/, holding
//!   config.json    the plugin config (stdin); `@DATADIR@` is replaced by a temp dir
//!   env            KEY=VALUE lines: CNI_* variables, PLUGIN=<name>, NETNS_STATE=gone
//!   observed.json  the answers of every state query (`ip -j …`, `iptables -S`, `nft -j …`)
//!   store/         optional host-local reservation files copied into the data dir
//!   expected.txt   the plan as shell lines, then the result or error JSON
//! Run with IPCNI_BLESS=1 to rewrite expected.txt; read the diff before committing it.
//! IPCNI_GOLDEN=PREFIX limits both tests (and blessing) to the cases whose name starts so.
//! Every ADD case is also run with a failure injected at each step in turn, checking
//! that the error names the step and that each completed step is undone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ipcni::delegate::Delegator;
use ipcni::exec::Recording;
use ipcni::exec::observe::FixtureObserver;
use ipcni::plan::{Netns, Op};
use ipcni::skel::{Io, NetnsState, dispatch};
use ipcni::spec::{CniEnv, Command, NetConf};

struct Case {
    name: String,
    env: BTreeMap<String, String>,
    config: Vec<u8>,
    observed: FixtureObserver,
    store: Option<PathBuf>,
}

fn load(dir: &Path, data_dir: &Path) -> Case {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{}/{f}: {e}", dir.display()));
    let env = read("env")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("{}: bad env line {l:?}", dir.display()));
            (k.to_string(), v.to_string())
        })
        .collect();
    let config = read("config.json").replace("@DATADIR@", &data_dir.display().to_string()).into_bytes();
    let observed = match std::fs::read_to_string(dir.join("observed.json")) {
        Ok(s) => FixtureObserver::from_json(&serde_json::from_str(&s).expect("observed.json parses")).expect("fixture"),
        Err(_) => FixtureObserver::default(),
    };
    let store = Some(dir.join("store")).filter(|p| p.is_dir());
    Case { name: dir.file_name().unwrap().to_string_lossy().into(), env, config, observed, store }
}

fn prepare_store(case: &Case, conf: &NetConf, data_dir: &Path) {
    let Some(src) = &case.store else { return };
    let dst = data_dir.join(&conf.name);
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        // Reservation files hold "<id>\r\n<ifname>"; the fixture writes them as two lines.
        let text = std::fs::read_to_string(entry.path()).unwrap();
        std::fs::write(dst.join(entry.file_name()), text.trim_end().replace('\n', "\r\n")).unwrap();
    }
}

/// Runs a case with `exec`; returns the rendered outcome.
fn run(case: &Case, exec: &mut Recording, data_dir: &Path) -> (String, Result<Option<String>, ipcni::spec::CniError>) {
    let plugin_name = case.env.get("PLUGIN").expect("env has PLUGIN=");
    let plugin = ipcni::plugins::lookup(plugin_name).expect("known plugin");
    let env = CniEnv::from_map(&case.env).expect("env is valid").expect("CNI_COMMAND set");
    let conf = NetConf::parse(&case.config);
    let conf = match conf {
        Ok(c) => c,
        Err(e) => return (String::new(), Err(e)),
    };
    prepare_store(case, &conf, data_dir);
    let netns = match (&env.netns, case.env.get("NETNS_STATE").map(String::as_str)) {
        (None, _) => NetnsState::Unset,
        (Some(p), Some("gone")) => NetnsState::Gone(p.clone()),
        (Some(p), _) => NetnsState::Present(p.clone()),
    };
    let mut obs = case.observed.clone();
    // ADD plans as a dry run (nothing reserved); DEL, GC and CHECK act on the case's
    // temp store so the listing shows what they released.
    let dry_run = !matches!(env.command, Command::Del | Command::Gc | Command::Check);
    let mut ipam = Delegator::new(dry_run);
    let io = Io { obs: &mut obs, exec, ipam: &mut ipam, host_id: "golden-host", dry_run };
    let out = dispatch(plugin, &env, &conf, netns, io);
    let mut text = String::new();
    if !obs.asked.is_empty() {
        text.push_str("# observed:\n");
        for q in &obs.asked {
            text.push_str(&format!("#   {q}\n"));
        }
    }
    (text, out)
}

fn render(case: &Case, data_dir: &Path) -> String {
    let mut exec = Recording::default();
    let (mut text, out) = run(case, &mut exec, data_dir);
    text.push_str("# plan:\n");
    text.push_str(&ipcni::plan::Plan { steps: exec.steps }.to_shell());
    match out {
        Ok(Some(r)) => text.push_str(&format!("# result:\n{r}\n")),
        Ok(None) => text.push_str("# ok\n"),
        Err(e) => text.push_str(&format!("# error:\n{}\n", e.to_json(None))),
    }
    text.push_str(&store_listing(data_dir));
    text.replace(&data_dir.display().to_string(), "@DATADIR@")
}

/// The host-local store after the run, when the case has one: what DEL and GC left.
fn store_listing(data_dir: &Path) -> String {
    let mut out = String::new();
    let Ok(nets) = std::fs::read_dir(data_dir) else { return out };
    for net in nets.flatten() {
        let mut files: Vec<String> = std::fs::read_dir(net.path())
            .unwrap()
            .flatten()
            .map(|f| {
                let content = std::fs::read_to_string(f.path()).unwrap_or_default();
                format!("#   {} = {:?}", f.file_name().to_string_lossy(), content)
            })
            .collect();
        files.sort();
        out.push_str(&format!("# store {}:\n{}\n", net.file_name().to_string_lossy(), files.join("\n")));
    }
    out
}

fn case_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let only = std::env::var("IPCNI_GOLDEN").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("env").is_file())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&only)))
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn golden_plans() {
    let bless = std::env::var_os("IPCNI_BLESS").is_some();
    let mut failures = Vec::new();
    let dirs = case_dirs();
    assert!(!dirs.is_empty(), "no golden case matches IPCNI_GOLDEN");
    for dir in dirs {
        let tmp = tempfile::tempdir().unwrap();
        let case = load(&dir, tmp.path());
        let actual = render(&case, tmp.path());
        let path = dir.join("expected.txt");
        if bless {
            std::fs::write(&path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        if expected != actual {
            failures.push(format!("--- {} expected\n{expected}\n+++ actual\n{actual}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden case(s) differ (IPCNI_BLESS=1 rewrites):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Fault injection over every ADD plan: fail step k; the error names step k and every
/// earlier step that has an undo is undone, newest first, and nothing else runs.
#[test]
fn failed_add_undoes_completed_steps_at_every_step() {
    let mut checked = 0;
    let mut per_plugin: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for dir in case_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let case = load(&dir, tmp.path());
        if case.env.get("CNI_COMMAND").map(String::as_str) != Some("ADD") {
            continue;
        }
        let mut full = Recording::default();
        let (_, ok) = run(&case, &mut full, tmp.path());
        if ok.is_err() {
            continue;
        }
        let steps = full.steps;
        let tally = per_plugin.entry(case.env["PLUGIN"].clone()).or_default();
        tally.0 += 1;
        tally.1 += steps.len();
        for k in 0..steps.len() {
            let tmp = tempfile::tempdir().unwrap();
            let case = load(&dir, tmp.path());
            let mut exec = Recording::failing_at(k);
            let (_, out) = run(&case, &mut exec, tmp.path());
            let err = out.expect_err("injected failure must fail ADD");
            assert_eq!(err.code, 100, "{}: step {k}", case.name);
            assert!(err.msg.contains("injected failure"), "{}: {}", case.name, err.msg);
            let expected_undo: Vec<Op> = steps[..k].iter().rev().filter_map(|s| s.undo.clone()).collect();
            let ran: Vec<Op> = exec.steps[k..].iter().map(|s| s.op.clone()).collect();
            assert_eq!(ran, expected_undo, "{}: rollback after failing step {k}", case.name);
            // Links, and addresses on host links, created before k must have an undo;
            // container addresses go with the container link.
            for s in &steps[..k] {
                if matches!(s.op, Op::LinkAdd(_)) || (s.ns == Netns::Host && matches!(s.op, Op::AddrAdd { .. })) {
                    assert!(s.undo.is_some(), "{}: {:?} has no undo", case.name, s.op);
                }
            }
            checked += 1;
        }
    }
    let tally: Vec<String> =
        per_plugin.iter().map(|(p, (cases, points))| format!("{p} {points} in {cases} cases")).collect();
    eprintln!("fault points injected: {checked} in all; {}", tally.join(", "));
    if std::env::var_os("IPCNI_GOLDEN").is_none() {
        assert!(checked > 50, "only {checked} fault points checked");
    }
}
