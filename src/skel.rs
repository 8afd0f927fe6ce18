//! The CNI entry point shared by every plugin: reads the environment and stdin,
//! validates them, dispatches to the plugin, and turns the outcome into stdout JSON and
//! an exit code. Nothing but the result or error JSON is written to stdout.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::delegate::{Delegator, Ipam};
use crate::exec::lock::HostLock;
use crate::exec::observe::{Observer, RealObserver};
use crate::exec::real::RealExecutor;
use crate::exec::{DryRun, Executor};
use crate::spec::{CniEnv, CniError, CniResult, Command, NetConf, Version, code};

/// What an invocation does with its plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Real,
    /// Print the plan as shell lines; change nothing, reserve nothing.
    DryRunText,
    /// Print `{"plan": [...], "result": ...}`.
    DryRunJson,
}

impl Mode {
    /// `--dry-run`, `--dry-run=json`, or the same in `IPCNI_DRY_RUN` (for callers that
    /// cannot pass arguments, such as a runtime).
    pub fn from_flag(value: Option<&str>) -> Result<Mode, String> {
        match value {
            None => Ok(Mode::Real),
            Some("" | "1" | "text" | "true") => Ok(Mode::DryRunText),
            Some("json") => Ok(Mode::DryRunJson),
            Some("0" | "false") => Ok(Mode::Real),
            Some(other) => Err(format!("--dry-run takes text or json, not {other:?}")),
        }
    }
    pub fn is_dry(self) -> bool {
        self != Mode::Real
    }
}

/// The state of CNI_NETNS as found before anything runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetnsState {
    /// CNI_NETNS was empty (DEL, GC, STATUS).
    Unset,
    /// The path no longer exists (DEL after the runtime removed the namespace).
    Gone(PathBuf),
    Present(PathBuf),
}

impl NetnsState {
    pub fn path(&self) -> Option<&Path> {
        match self {
            NetnsState::Present(p) => Some(p),
            _ => None,
        }
    }
}

/// Everything a plugin command gets: the parsed input and the I/O it may use, all
/// behind traits so the same plugin code runs for real, dry-run and golden tests.
pub struct Cx<'a> {
    pub env: &'a CniEnv,
    pub conf: &'a NetConf,
    pub netns: NetnsState,
    pub obs: &'a mut dyn Observer,
    pub exec: &'a mut dyn Executor,
    pub ipam: &'a mut dyn Ipam,
    /// A per-host seed for derived MACs, so two hosts never derive the same bridge or
    /// container MAC for the same names (/etc/machine-id).
    pub host_id: &'a str,
    /// A dry run: nothing may change, no lock is taken, nothing is reserved.
    pub dry_run: bool,
}

impl Cx<'_> {
    /// A host-wide lock, or none when the executor changes nothing.
    pub fn lock(&self, name: &str) -> Result<Option<HostLock>, CniError> {
        if self.dry_run { Ok(None) } else { HostLock::acquire(name).map(Some) }
    }

    /// The container namespace path; ADD and CHECK always have one.
    pub fn netns_path(&self) -> Result<PathBuf, CniError> {
        self.netns.path().map(Path::to_path_buf).ok_or_else(|| CniError::invalid_env("CNI_NETNS is required"))
    }
}

pub trait Plugin: Sync {
    fn name(&self) -> &'static str;
    fn about(&self) -> &'static str;
    fn versions(&self) -> &'static [Version] {
        &Version::ALL
    }
    /// Whether the plugin needs iproute2's `ip` (every plugin but the IPAM ones); STATUS
    /// then reports a missing or broken `ip` as code 50.
    fn needs_ip(&self) -> bool {
        true
    }
    fn add(&self, cx: &mut Cx) -> Result<CniResult, CniError>;
    fn del(&self, cx: &mut Cx) -> Result<(), CniError>;
    fn check(&self, cx: &mut Cx) -> Result<(), CniError>;
    /// Default: ready, unless the delegated IPAM plugin says otherwise.
    fn status(&self, cx: &mut Cx) -> Result<(), CniError> {
        match &cx.conf.ipam_type {
            Some(_) => cx.ipam.status(cx.env, cx.conf),
            None => Ok(()),
        }
    }
    /// Default: forward to IPAM, which holds the only per-attachment state.
    fn gc(&self, cx: &mut Cx) -> Result<(), CniError> {
        match &cx.conf.ipam_type {
            Some(_) => cx.ipam.gc(cx.env, cx.conf),
            None => Ok(()),
        }
    }
}

/// What the process prints and how it exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i32,
}

fn version_json(plugin: &dyn Plugin) -> String {
    let list: Vec<&str> = plugin.versions().iter().map(|v| v.as_str()).collect();
    format!("{}\n", serde_json::json!({"cniVersion": Version::LATEST.as_str(), "supportedVersions": list}))
}

const NSFS_MAGIC: i64 = 0x6e73_6673;
const PROC_SUPER_MAGIC: i64 = 0x9fa0;
/// ioctl(NS_GET_NSTYPE): which kind of namespace an nsfs fd is.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// Checks CNI_NETNS the way the reference does (exists, is nsfs/proc), plus that it is a
/// network namespace and not the plugin's own.
fn inspect_netns(path: &Path, allow_own: bool) -> Result<NetnsState, CniError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(NetnsState::Gone(path.into())),
        Err(e) => return Err(CniError::invalid_env(format!("CNI_NETNS {}: {e}", path.display()))),
    };
    // SAFETY: statfs on a valid fd into a zeroed struct.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut fs) } != 0 {
        return Err(CniError::invalid_env(format!(
            "CNI_NETNS {}: statfs: {}",
            path.display(),
            std::io::Error::last_os_error()
        )));
    }
    let magic = fs.f_type as i64;
    if magic != NSFS_MAGIC && magic != PROC_SUPER_MAGIC {
        return Err(CniError::invalid_env(format!(
            "CNI_NETNS {} is not a network namespace (filesystem magic {magic:#x})",
            path.display()
        )));
    }
    // SAFETY: ioctl on a valid fd; NS_GET_NSTYPE takes no argument.
    let nstype = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE) };
    if nstype != libc::CLONE_NEWNET {
        return Err(CniError::invalid_env(format!("CNI_NETNS {} is not a network namespace", path.display())));
    }
    if !allow_own {
        let own =
            std::fs::metadata("/proc/self/ns/net").map_err(|e| CniError::io(format!("/proc/self/ns/net: {e}")))?;
        let target = file.metadata().map_err(|e| CniError::io(format!("CNI_NETNS {}: {e}", path.display())))?;
        if own.dev() == target.dev() && own.ino() == target.ino() {
            return Err(CniError::new(
                code::INVALID_NETNS,
                format!("CNI_NETNS {} is the plugin's own network namespace", path.display()),
            ));
        }
    }
    Ok(NetnsState::Present(path.into()))
}

fn check_version_allows(plugin: &dyn Plugin, conf: &NetConf, command: Command) -> Result<(), CniError> {
    if !plugin.versions().contains(&conf.version) {
        return Err(CniError::incompatible_version(format!(
            "{} does not support cniVersion {} (supported: {})",
            plugin.name(),
            conf.version,
            plugin.versions().iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    let ok = match command {
        Command::Check => conf.version.allows_check(),
        Command::Status | Command::Gc => conf.version.allows_status_and_gc(),
        _ => true,
    };
    if !ok {
        let given = match conf.raw.get("cniVersion") {
            Some(serde_json::Value::String(v)) if !v.is_empty() => format!("config cniVersion {v}"),
            _ => format!("config without cniVersion ({})", conf.version),
        };
        return Err(CniError::incompatible_version(format!("{given} does not allow {}", command.as_str())));
    }
    Ok(())
}

/// Runs one CNI invocation. `vars` is the process environment, `stdin` the config.
pub fn run(plugin: &dyn Plugin, vars: &BTreeMap<String, String>, stdin: &mut dyn std::io::Read, mode: Mode) -> Outcome {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_inner(plugin, vars, stdin, mode)));
    match outcome {
        Ok(o) => o,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            let e = CniError::internal(format!("internal error (a bug in ipcni): {msg}"));
            Outcome { stdout: e.to_json(None) + "\n", stderr: String::new(), exit_code: 1 }
        }
    }
}

fn run_inner(
    plugin: &dyn Plugin,
    vars: &BTreeMap<String, String>,
    stdin: &mut dyn std::io::Read,
    mode: Mode,
) -> Outcome {
    let fail = |e: CniError, version: Option<Version>| Outcome {
        stdout: e.to_json(version.map(Version::as_str)) + "\n",
        stderr: String::new(),
        exit_code: 1,
    };
    let env = match CniEnv::from_map(vars) {
        Ok(Some(env)) => env,
        Ok(None) => {
            let versions: Vec<&str> = plugin.versions().iter().map(|v| v.as_str()).collect();
            return Outcome {
                stdout: String::new(),
                stderr: format!("{}\nCNI protocol versions supported: {}\n", plugin.about(), versions.join(", ")),
                exit_code: 0,
            };
        }
        Err(e) => return fail(e, None),
    };
    if env.command == Command::Version {
        return Outcome { stdout: version_json(plugin), stderr: String::new(), exit_code: 0 };
    }
    let mut bytes = Vec::new();
    let limit = crate::spec::config::MAX_CONFIG_BYTES as u64 + 1;
    if let Err(e) = std::io::Read::read_to_end(&mut std::io::Read::take(stdin, limit), &mut bytes) {
        return fail(CniError::io(format!("reading config from stdin: {e}")), None);
    }
    let conf = match NetConf::parse(&bytes) {
        Ok(c) => c,
        Err(e) => return fail(e, None),
    };
    let version = Some(conf.version);
    let allow_own = matches!(vars.get("CNI_NETNS_OVERRIDE").map(String::as_str), Some("1" | "true"));
    let netns = match &env.netns {
        None => NetnsState::Unset,
        Some(p) => match inspect_netns(p, allow_own) {
            Ok(NetnsState::Gone(p)) if env.command != Command::Del => {
                return fail(
                    CniError::new(code::UNKNOWN_CONTAINER, format!("CNI_NETNS {} does not exist", p.display())),
                    version,
                );
            }
            Ok(s) => s,
            Err(e) => return fail(e, version),
        },
    };
    crate::exec::trace(|| format!("{} {:?} parsed", plugin.name(), env.command));
    let mut real_exec = RealExecutor::new();
    let mut dry = DryRun::default();
    let exec: &mut dyn Executor = if mode.is_dry() { &mut dry } else { &mut real_exec };
    let mut obs = RealObserver::default();
    let mut ipam = Delegator::new(mode.is_dry());
    let host_id = read_host_id();
    let io = Io { obs: &mut obs, exec, ipam: &mut ipam, host_id: &host_id, dry_run: mode.is_dry() };
    let outcome = dispatch(plugin, &env, &conf, netns, io);
    crate::exec::session::close_all();
    crate::exec::trace(|| "done".into());
    if std::env::var_os("IPCNI_COUNT_PROCESSES").is_some() {
        let sessions = crate::exec::session::spawned();
        crate::exec::log(&format!("processes: {}", real_exec.processes + obs.processes + ipam.processes + sessions));
    }
    match (outcome, mode) {
        (Err(e), _) => fail(e, version),
        (Ok(result), Mode::Real) => {
            Outcome { stdout: result.map(|r| r + "\n").unwrap_or_default(), stderr: String::new(), exit_code: 0 }
        }
        (Ok(result), Mode::DryRunText) => {
            let mut out = dry.plan.to_shell();
            if let Some(r) = result {
                out.push_str("# result:\n");
                for line in r.lines() {
                    out.push_str("#   ");
                    out.push_str(line);
                    out.push('\n');
                }
            }
            Outcome { stdout: out, stderr: String::new(), exit_code: 0 }
        }
        (Ok(result), Mode::DryRunJson) => {
            let result: serde_json::Value =
                result.and_then(|r| serde_json::from_str(&r).ok()).unwrap_or(serde_json::Value::Null);
            let v = serde_json::json!({"plan": dry.plan.to_json(), "shell": dry.plan.to_shell(), "result": result});
            Outcome {
                stdout: serde_json::to_string_pretty(&v).expect("json") + "\n",
                stderr: String::new(),
                exit_code: 0,
            }
        }
    }
}

/// /etc/machine-id, else the boot id: stable per host, different between hosts.
fn read_host_id() -> String {
    ["/etc/machine-id", "/proc/sys/kernel/random/boot_id"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()))
        .unwrap_or_default()
}

/// The I/O a command may use, behind traits (real, dry-run, or test fixtures).
pub struct Io<'a> {
    pub obs: &'a mut dyn Observer,
    pub exec: &'a mut dyn Executor,
    pub ipam: &'a mut dyn Ipam,
    pub host_id: &'a str,
    pub dry_run: bool,
}

/// STATUS: `ip` runs and answers in this namespace. Every namespace has `lo`, so no
/// answer for it means `ip` could not run (a missing tool reads as a missing object).
fn ip_usable(obs: &mut dyn Observer) -> Result<(), CniError> {
    let unusable =
        |why: String| CniError::new(code::PLUGIN_NOT_AVAILABLE, format!("iproute2's `ip` is not usable: {why}"));
    match crate::exec::observe::link_addrs(obs, &crate::plan::Netns::Host, "lo") {
        Ok(Some(_)) => Ok(()),
        Ok(None) => {
            Err(unusable("`ip -j -d addr show dev lo` could not run (is `ip` in PATH?) or found no loopback".into()))
        }
        Err(e) => Err(unusable(e.msg)),
    }
}

/// Runs the command and renders a result (ADD only) in the config's version.
pub fn dispatch(
    plugin: &dyn Plugin,
    env: &CniEnv,
    conf: &NetConf,
    netns: NetnsState,
    io: Io,
) -> Result<Option<String>, CniError> {
    check_version_allows(plugin, conf, env.command)?;
    let Io { obs, exec, ipam, host_id, dry_run } = io;
    let mut cx = Cx { env, conf, netns, obs, exec, ipam, host_id, dry_run };
    match env.command {
        Command::Add => {
            let result = plugin.add(&mut cx)?;
            let v = result.to_value(conf.version)?;
            Ok(Some(serde_json::to_string_pretty(&v).expect("result serializes")))
        }
        Command::Del => plugin.del(&mut cx).map(|_| None),
        Command::Check => plugin.check(&mut cx).map(|_| None),
        Command::Status => {
            if plugin.needs_ip() {
                ip_usable(cx.obs)?;
            }
            plugin.status(&mut cx).map(|_| None)
        }
        Command::Gc => plugin.gc(&mut cx).map(|_| None),
        Command::Version => Ok(Some(version_json(plugin))),
    }
}
