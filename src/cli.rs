//! The multi-call front door: `bridge`, `host-local`, … (argv[0]), or `ipcni <plugin>`,
//! plus `ipcni install DIR` and `ipcni --help`. Raw argv → typed `Invocation`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::skel::{self, Mode, Plugin};

#[derive(Debug)]
pub enum Invocation {
    Plugin { plugin: &'static dyn Plugin, mode: Mode },
    Install { dir: PathBuf },
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
