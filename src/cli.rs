//! The multi-call front door: `bridge`, `host-local`, … (argv[0]), or `ipcni <plugin>`,
//! plus `ipcni install DIR` and `ipcni --help`. Raw argv → typed `Invocation`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::skel::{self, Mode, Plugin};

#[derive(Debug)]
pub enum Invocation {
    Plugin {
        plugin: &'static dyn Plugin,
        mode: Mode,
    },
    Install {
        dir: PathBuf,
    },
    /// `ipcni net CMD NET [NETNS]`: drive a config list as cnitool does.
    Net {
        command: crate::spec::Command,
        net: String,
        netns: String,
        mode: Mode,
        valid: Option<Vec<(String, String)>>,
    },
    Help,
    Version,
}

impl std::fmt::Debug for dyn Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

const USAGE: &str = "usage:
  <plugin> [--dry-run[=text|json]]         run as a CNI plugin (argv[0] is the plugin name)
  ipcni <plugin> [--dry-run[=text|json]]   the same, naming the plugin
  ipcni install DIR                        link every plugin name to this binary in DIR
  ipcni net add|check|del NET NETNS [--dry-run[=text|json]]
  ipcni net status NET
  ipcni net gc NET [--valid CONTAINERID/IFNAME]...
                                           run a network config list as cnitool does:
                                           NETCONFPATH (default /etc/cni/net.d), CNI_PATH
                                           (default /opt/cni/bin), CNI_ARGS, CAP_ARGS (JSON),
                                           CNI_IFNAME (default eth0), CNI_CONTAINERID
                                           (default cnitool's, from the netns path),
                                           CNI_CACHE_DIR (default /var/lib/cni)
  ipcni --help | --version

IPCNI_DRY_RUN=text|json does what --dry-run does, for callers that pass no arguments.";

fn plugin_names() -> String {
    crate::plugins::all().iter().map(|p| p.name()).collect::<Vec<_>>().join(", ")
}

pub fn parse(argv: &[String], dry_env: Option<&str>) -> Result<Invocation, String> {
    let argv0 = argv.first().map(|a| Path::new(a).file_name().and_then(|n| n.to_str()).unwrap_or("")).unwrap_or("");
    let (name, rest) = if argv0 == "ipcni" || crate::plugins::lookup(argv0).is_none() {
        match argv.get(1).map(String::as_str) {
            None | Some("--help" | "-h" | "help") => return Ok(Invocation::Help),
            Some("--version" | "-V") => return Ok(Invocation::Version),
            Some("net") => return parse_net(&argv[2..], dry_env),
            Some("install") => {
                return match argv.get(2) {
                    Some(dir) if argv.len() == 3 => Ok(Invocation::Install { dir: dir.into() }),
                    _ => Err("usage: ipcni install DIR".into()),
                };
            }
            Some(name) => (name, &argv[2..]),
        }
    } else {
        (argv0, &argv[1..])
    };
    let plugin =
        crate::plugins::lookup(name).ok_or_else(|| format!("unknown plugin {name:?} (plugins: {})", plugin_names()))?;
    let mut mode = Mode::from_flag(dry_env)?;
    for arg in rest {
        mode = match arg.as_str() {
            "--dry-run" => Mode::DryRunText,
            a if a.starts_with("--dry-run=") => Mode::from_flag(Some(&a["--dry-run=".len()..]))?,
            other => return Err(format!("unexpected argument {other:?}\n{USAGE}")),
        };
    }
    Ok(Invocation::Plugin { plugin, mode })
}

fn parse_net(args: &[String], dry_env: Option<&str>) -> Result<Invocation, String> {
    use crate::spec::Command;
    let usage = || format!("usage: ipcni net add|check|del|gc|status NET [NETNS]\n{USAGE}");
    let mut positional = Vec::new();
    let mut mode = Mode::from_flag(dry_env)?;
    let mut valid: Option<Vec<(String, String)>> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--dry-run" => mode = Mode::DryRunText,
            d if d.starts_with("--dry-run=") => mode = Mode::from_flag(Some(&d["--dry-run=".len()..]))?,
            "--valid" => {
                let v = it.next().ok_or("--valid takes CONTAINERID/IFNAME")?;
                let (id, ifname) = v.split_once('/').ok_or("--valid takes CONTAINERID/IFNAME")?;
                valid.get_or_insert_with(Vec::new).push((id.to_string(), ifname.to_string()));
            }
            other if other.starts_with('-') => return Err(format!("unexpected option {other:?}\n{}", usage())),
            other => positional.push(other.to_string()),
        }
    }
    let command = match positional.first().map(String::as_str) {
        Some("add") => Command::Add,
        Some("check") => Command::Check,
        Some("del") => Command::Del,
        Some("gc") => Command::Gc,
        Some("status") => Command::Status,
        _ => return Err(usage()),
    };
    let net = positional.get(1).cloned().ok_or_else(usage)?;
    let netns = match (command, positional.get(2)) {
        (Command::Add | Command::Check | Command::Del, Some(p)) => p.clone(),
        (Command::Add | Command::Check | Command::Del, None) => return Err(usage()),
        (_, Some(p)) => p.clone(),
        (_, None) => String::new(),
    };
    if positional.len() > 3 {
        return Err(usage());
    }
    Ok(Invocation::Net { command, net, netns, mode, valid })
}

/// Runs `ipcni net …`; returns the exit code.
fn run_net(
    command: crate::spec::Command,
    net: &str,
    netns: &str,
    mode: Mode,
    valid: Option<Vec<(String, String)>>,
) -> Result<(), crate::spec::CniError> {
    use crate::runtime::{self, Attachment, Cache, NetworkList, Runner};
    use crate::spec::{CniError, Command};
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let confdir = PathBuf::from(env("NETCONFPATH").unwrap_or_else(|| "/etc/cni/net.d".into()));
    let list = NetworkList::load(&confdir, net)?;
    let cni_path: Vec<PathBuf> = env("CNI_PATH")
        .unwrap_or_else(|| "/opt/cni/bin".into())
        .split(':')
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect();
    let netns = if netns.is_empty() {
        String::new()
    } else {
        std::path::absolute(netns).map_err(|e| CniError::invalid_env(format!("{netns}: {e}")))?.display().to_string()
    };
    let capability_args = match env("CAP_ARGS") {
        None => serde_json::Map::new(),
        Some(s) => serde_json::from_str(&s).map_err(|e| CniError::decode(format!("CAP_ARGS: {e}")))?,
    };
    let att = Attachment {
        container_id: env("CNI_CONTAINERID").unwrap_or_else(|| Attachment::default_container_id(&netns)),
        netns,
        ifname: env("CNI_IFNAME").unwrap_or_else(|| "eth0".into()),
        cni_args: env("CNI_ARGS").unwrap_or_default(),
        capability_args,
    };
    let mut runner = Runner { cni_path, mode, dry_plans: Vec::new() };
    let cache = Cache::from_env();
    let outcome = match command {
        Command::Add => runtime::add(&list, &att, &mut runner, &cache).map(Some),
        Command::Del => runtime::del(&list, &att, &mut runner, &cache).map(|_| None),
        Command::Check => runtime::check(&list, &att, &mut runner, &cache).map(|_| None),
        Command::Status => runtime::status(&list, &att, &mut runner).map(|_| None),
        Command::Gc => runtime::gc(&list, valid.as_deref(), &att, &mut runner, &cache).map(|_| None),
        Command::Version => Ok(None),
    };
    if mode.is_dry() {
        for (what, shell) in &runner.dry_plans {
            println!("# --- {what}");
            print!("{shell}");
        }
    }
    if let Some(result) = outcome? {
        let text = serde_json::to_string_pretty(&result).expect("json");
        if mode.is_dry() {
            println!("# result:");
            text.lines().for_each(|l| println!("#   {l}"));
        } else {
            println!("{text}");
        }
    }
    Ok(())
}

/// Links every plugin name in `dir` to the running binary (symlinks, replacing old ones).
pub fn install(dir: &Path) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding this binary: {e}"))?;
    let exe = exe.canonicalize().map_err(|e| format!("{}: {e}", exe.display()))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let target = dir.join("ipcni");
    if target.canonicalize().ok().as_deref() != Some(exe.as_path()) {
        let tmp = dir.join(".ipcni.tmp");
        let _ = std::fs::remove_file(&tmp);
        std::fs::copy(&exe, &tmp).map_err(|e| format!("copying to {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &target).map_err(|e| format!("{}: {e}", target.display()))?;
    }
    for p in crate::plugins::all() {
        let link = dir.join(p.name());
        let tmp = dir.join(format!(".{}.tmp", p.name()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink("ipcni", &tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &link).map_err(|e| format!("{}: {e}", link.display()))?;
    }
    Ok(())
}

/// Runs the process: returns the exit code. Only CNI output goes to stdout.
pub fn main() -> i32 {
    crate::exec::trace(|| "start".into());
    let argv: Vec<String> = std::env::args().collect();
    let dry_env = std::env::var("IPCNI_DRY_RUN").ok();
    match parse(&argv, dry_env.as_deref()) {
        Err(e) => {
            eprintln!("ipcni: {e}");
            2
        }
        Ok(Invocation::Help) => {
            eprintln!(
                "ipcni {}: CNI plugins that plan iproute2 steps\n{USAGE}\nplugins: {}",
                env!("CARGO_PKG_VERSION"),
                plugin_names()
            );
            0
        }
        Ok(Invocation::Version) => {
            println!("ipcni {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Ok(Invocation::Net { command, net, netns, mode, valid }) => match run_net(command, &net, &netns, mode, valid) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("ipcni net {}: {e} (code {})", command.as_str().to_lowercase(), e.code);
                1
            }
        },
        Ok(Invocation::Install { dir }) => match install(&dir) {
            Ok(()) => {
                eprintln!("ipcni: installed {} plugins in {}", crate::plugins::all().len(), dir.display());
                0
            }
            Err(e) => {
                eprintln!("ipcni: install: {e}");
                1
            }
        },
        Ok(Invocation::Plugin { plugin, mode }) => {
            let vars: BTreeMap<String, String> =
                std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect();
            let out = skel::run(plugin, &vars, &mut std::io::stdin().lock(), mode);
            use std::io::Write;
            let _ = std::io::stderr().write_all(out.stderr.as_bytes());
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(out.stdout.as_bytes());
            let _ = stdout.flush();
            out.exit_code
        }
    }
}
