//! Delegation to IPAM plugins (spec §4): the delegate gets the same environment (only
//! CNI_COMMAND changes) and the same stdin bytes. When the IPAM type found in CNI_PATH is
//! ipcni itself (or is not in CNI_PATH but ipcni implements it), it runs in-process: no
//! exec, and a dry-run can ask it what it would allocate.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Command as Process, Stdio};

use crate::spec::{CniEnv, CniError, CniResult, Command, NetConf, code};

pub trait Ipam {
    fn add(&mut self, env: &CniEnv, conf: &NetConf) -> Result<CniResult, CniError>;
    fn del(&mut self, env: &CniEnv, conf: &NetConf) -> Result<(), CniError>;
    /// After a failed ADD: releases what the last `add` reserved, but not addresses the
    /// attachment already held before it (a repeated ADD of a live attachment must not
    /// free its address for another container).
    fn undo_add(&mut self, env: &CniEnv, conf: &NetConf) -> Result<(), CniError> {
        self.del(env, conf)
    }
    fn check(&mut self, env: &CniEnv, conf: &NetConf) -> Result<(), CniError>;
    fn status(&mut self, env: &CniEnv, conf: &NetConf) -> Result<(), CniError>;
    fn gc(&mut self, env: &CniEnv, conf: &NetConf) -> Result<(), CniError>;
}

/// IPAM types ipcni implements in-process.
pub trait BuiltinIpam: Sync {
    fn add(&self, env: &CniEnv, conf: &NetConf, dry_run: bool) -> Result<CniResult, CniError>;
    /// Like `add`, also saying whether anything new was reserved.
    fn add_tracked(&self, env: &CniEnv, conf: &NetConf, dry_run: bool) -> Result<(CniResult, bool), CniError> {
        self.add(env, conf, dry_run).map(|r| (r, true))
    }
    fn del(&self, env: &CniEnv, conf: &NetConf) -> Result<(), CniError>;
    fn check(&self, env: &CniEnv, conf: &NetConf) -> Result<(), CniError>;
    fn status(&self, env: &CniEnv, conf: &NetConf) -> Result<(), CniError>;
    fn gc(&self, env: &CniEnv, conf: &NetConf) -> Result<(), CniError>;
}

#[derive(Debug, Default)]
pub struct Delegator {
    dry_run: bool,
    /// Whether the last ADD reserved anything (false when it returned what the
    /// attachment already held).
    last_add_fresh: bool,
    /// Processes started for delegation (for benchmarks).
    pub processes: usize,
}

enum Target {
    Builtin(&'static dyn BuiltinIpam),
    Binary(PathBuf),
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

impl Delegator {
    pub fn new(dry_run: bool) -> Delegator {
        Delegator { dry_run, last_add_fresh: true, processes: 0 }
    }

    fn resolve(&self, env: &CniEnv, conf: &NetConf) -> Result<Target, CniError> {
        let ty = conf.ipam_type.as_deref().ok_or_else(|| CniError::config("config: \"ipam.type\" is required"))?;
        let found = env.path.iter().map(|d| d.join(ty)).find(|p| p.is_file());
        let builtin = crate::plugins::builtin_ipam(ty);
        let me = std::env::current_exe().ok();
        match (found, builtin) {
            (Some(bin), Some(b)) if me.as_deref().is_some_and(|m| same_file(m, &bin)) => Ok(Target::Builtin(b)),
            (Some(bin), _) => Ok(Target::Binary(bin)),
            (None, Some(b)) => Ok(Target::Builtin(b)),
            (None, None) => Err(CniError::invalid_env(format!(
                "CNI_PATH: IPAM plugin {ty:?} not found in [{}]",
                env.path.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":")
            ))),
        }
    }

    fn exec(&mut self, bin: &PathBuf, env: &CniEnv, conf: &NetConf, command: Command) -> Result<String, CniError> {
        if self.dry_run {
            return Err(CniError::config(format!(
                "dry-run: IPAM plugin {} is not ipcni, so what it would do cannot be known without running it",
                bin.display()
            )));
        }
        self.processes += 1;
        let mut child = Process::new(bin)
            .envs(env.to_vars(command))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| CniError::new(code::DELEGATE_FAILED, format!("running IPAM plugin {}: {e}", bin.display())))?;
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("piped");
            let _ = stdin.write_all(&conf.bytes);
        }
        let out = child.wait_with_output().map_err(|e| {
            CniError::new(code::DELEGATE_FAILED, format!("waiting for IPAM plugin {}: {e}", bin.display()))
        })?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            return Ok(stdout);
        }
        // Pass the delegate's own error object up unchanged when it printed one.
        #[derive(serde::Deserialize)]
        struct E {
            code: u32,
            msg: String,
            #[serde(default)]
            details: String,
        }
        match serde_json::from_str::<E>(&stdout) {
            Ok(e) => Err(CniError { code: e.code, msg: e.msg, details: e.details }),
            Err(_) => Err(CniError::new(
                code::DELEGATE_FAILED,
                format!("IPAM plugin {} failed ({}): {}", bin.display(), out.status, stdout.trim()),
            )),
        }
    }
}

impl Ipam for Delegator {
    fn add(&mut self, env: &CniEnv, conf: &NetConf) -> Result<CniResult, CniError> {
        match self.resolve(env, conf)? {
            Target::Builtin(b) => {
                crate::exec::trace(|| format!("ipam {} ADD (in-process)", conf.ipam_type.as_deref().unwrap_or("")));
                let (result, fresh) = b.add_tracked(env, conf, self.dry_run)?;
                crate::exec::trace(|| "ipam ADD done".into());
                self.last_add_fresh = fresh;
                Ok(result)
            }
            Target::Binary(bin) => {
                self.last_add_fresh = true;
                let out = self.exec(&bin, env, conf, Command::Add)?;
                let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| {
                    CniError::decode(format!("IPAM plugin {} printed invalid JSON: {e}", bin.display()))
                })?;
                CniResult::parse(&v, conf.version)
            }
        }
    }
    fn del(&mut self, env: &CniEnv, conf: &NetConf) -> Result<(), CniError> {
        match self.resolve(env, conf)? {
            Target::Builtin(_) | Target::Binary(_) if self.dry_run => Ok(()),
            Target::Builtin(b) => b.del(env, conf),
            Target::Binary(bin) => self.exec(&bin, env, conf, Command::Del).map(|_| ()),
        }
    }
    fn undo_add(&mut self, env: &CniEnv, conf: &NetConf) -> Result<(), CniError> {
        if self.last_add_fresh { self.del(env, conf) } else { Ok(()) }
    }
    fn check(&mut self, env: &CniEnv, conf: &NetConf) -> Result<(), CniError> {
        match self.resolve(env, conf)? {
            Target::Builtin(b) => b.check(env, conf),
            Target::Binary(bin) => self.exec(&bin, env, conf, Command::Check).map(|_| ()),
        }
    }
    fn status(&mut self, env: &CniEnv, conf: &NetConf) -> Result<(), CniError> {
        match self.resolve(env, conf)? {
            Target::Builtin(b) => b.status(env, conf),
            Target::Binary(bin) => self.exec(&bin, env, conf, Command::Status).map(|_| ()),
        }
    }
    fn gc(&mut self, env: &CniEnv, conf: &NetConf) -> Result<(), CniError> {
        match self.resolve(env, conf)? {
            Target::Builtin(_) | Target::Binary(_) if self.dry_run => Ok(()),
            Target::Builtin(b) => b.gc(env, conf),
            Target::Binary(bin) => self.exec(&bin, env, conf, Command::Gc).map(|_| ()),
        }
    }
}
