//! The runtime side: what cnitool (libcni) does, as `ipcni net add|check|del|gc|status`.
//! Loads a network configuration list, derives each plugin's config (name, cniVersion,
//! prevResult, runtimeConfig from CAP_ARGS for declared capabilities), runs the plugins
//! in order (DEL in reverse), and keeps libcni's result cache so CHECK and DEL get
//! prevResult. Plugins found to be ipcni itself run in-process.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use serde_json::{Map, Value, json};

use crate::skel::{self, Mode};
use crate::spec::{CniError, Command, Version, code};
use crate::validate;

/// A network configuration list, as loaded from NETCONFPATH.
#[derive(Debug, Clone)]
pub struct NetworkList {
    pub name: String,
    pub version: Version,
    pub disable_check: bool,
    pub disable_gc: bool,
    pub plugins: Vec<Map<String, Value>>,
    /// Where it came from, for messages.
    pub source: PathBuf,
    pub bytes: Vec<u8>,
}

fn bool_key(obj: &Map<String, Value>, key: &str) -> Result<bool, CniError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        // libcni also takes the strings "true" / "false".
        Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
        Some(other) => Err(CniError::config(format!("{key:?} must be a boolean, not {other}"))),
    }
}

/// The highest of `cniVersions` ∪ {`cniVersion`} that ipcni speaks (libcni's rule).
fn pick_version(obj: &Map<String, Value>) -> Result<Version, CniError> {
    let mut candidates: Vec<&str> = Vec::new();
    if let Some(v) = obj.get("cniVersion").and_then(Value::as_str) {
        candidates.push(v);
    }
    if let Some(list) = obj.get("cniVersions").and_then(Value::as_array) {
        candidates.extend(list.iter().filter_map(Value::as_str));
    }
    if candidates.is_empty() {
        return Ok(Version::V010);
    }
    candidates
        .iter()
        .filter_map(|v| Version::parse(v))
        .max()
        .ok_or_else(|| CniError::incompatible_version(format!("no supported cniVersion among {candidates:?}")))
}

impl NetworkList {
    pub fn parse(bytes: &[u8], source: &Path) -> Result<NetworkList, CniError> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| CniError::decode(format!("{}: invalid JSON: {e}", source.display())))?;
        let obj = v.as_object().ok_or_else(|| CniError::decode(format!("{}: not a JSON object", source.display())))?;
        let name = obj.get("name").and_then(Value::as_str).unwrap_or("").to_string();
        validate::network_name(&name).map_err(|e| CniError::config(format!("{}: {e}", source.display())))?;
        let version = pick_version(obj)?;
        let plugins = match obj.get("plugins") {
            Some(Value::Array(list)) => list
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    p.as_object()
                        .cloned()
                        .ok_or_else(|| CniError::config(format!("{}: plugins[{i}] is not an object", source.display())))
                })
                .collect::<Result<Vec<_>, _>>()?,
            // A single-plugin .conf: the object itself is the plugin.
            None if obj.contains_key("type") => vec![obj.clone()],
            _ => return Err(CniError::config(format!("{}: no \"plugins\"", source.display()))),
        };
        if plugins.is_empty() {
            return Err(CniError::config(format!("{}: \"plugins\" is empty", source.display())));
        }
        for (i, p) in plugins.iter().enumerate() {
            let t = p.get("type").and_then(Value::as_str).unwrap_or("");
            validate::plugin_type(t)
                .map_err(|e| CniError::config(format!("{}: plugins[{i}].type: {e}", source.display())))?;
        }
        Ok(NetworkList {
            name,
            version,
            disable_check: bool_key(obj, "disableCheck")?,
            disable_gc: bool_key(obj, "disableGC")?,
            plugins,
            source: source.to_path_buf(),
            bytes: bytes.to_vec(),
        })
    }

    /// libcni's lookup: `*.conflist` in lexical order, then `*.conf` / `*.json`; plugin
    /// objects from `<dir>/<name>/*.conf` are appended unless `loadOnlyInlinedPlugins`.
    pub fn load(dir: &Path, name: &str) -> Result<NetworkList, CniError> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| CniError::io(format!("NETCONFPATH {}: {e}", dir.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        let by_ext = |ext: &[&str]| -> Vec<PathBuf> {
            files
                .iter()
                .filter(|p| p.extension().and_then(|e| e.to_str()).is_some_and(|e| ext.contains(&e)))
                .cloned()
                .collect()
        };
        for path in by_ext(&["conflist"]).into_iter().chain(by_ext(&["conf", "json"])) {
            let Ok(bytes) = std::fs::read(&path) else { continue };
            let Ok(v) = serde_json::from_slice::<Value>(&bytes) else { continue };
            if v.get("name").and_then(Value::as_str) != Some(name) {
                continue;
            }
            let mut list = NetworkList::parse(&bytes, &path)?;
            let only_inlined =
                v.as_object().map(|o| bool_key(o, "loadOnlyInlinedPlugins")).transpose()?.unwrap_or(false);
            if !only_inlined && path.extension().is_some_and(|e| e == "conflist") {
                list.plugins.extend(extra_plugins(&dir.join(name))?);
            }
            return Ok(list);
        }
        Err(CniError::config(format!("no network named {name:?} in {}", dir.display())))
    }
}

fn extra_plugins(dir: &Path) -> Result<Vec<Map<String, Value>>, CniError> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(Vec::new()) };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).map_err(|e| CniError::io(format!("{}: {e}", p.display())))?;
            serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .ok_or_else(|| CniError::decode(format!("{}: not a JSON object", p.display())))
        })
        .collect()
}

/// What one `ipcni net …` call works on.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub cni_args: String,
    /// CAP_ARGS: capability name → value, for runtimeConfig.
    pub capability_args: Map<String, Value>,
}

impl Attachment {
    /// cnitool's container id: `cnitool-` + the first 10 bytes of sha512(netns path).
    pub fn default_container_id(netns: &str) -> String {
        crate::names::hash_with_prefix(28, "cnitool-", netns)
    }
}

/// The plugin config libcni derives for one plugin of the list.
pub fn derive_config(
    list: &NetworkList,
    plugin: &Map<String, Value>,
    prev: Option<&Value>,
    caps: &Map<String, Value>,
    command: Command,
) -> Value {
    let mut obj = plugin.clone();
    obj.insert("cniVersion".into(), list.version.as_str().into());
    obj.insert("name".into(), list.name.clone().into());
    if matches!(command, Command::Add | Command::Del | Command::Check) {
        if let Some(p) = prev {
            obj.insert("prevResult".into(), p.clone());
        }
        let declared = obj.get("capabilities").and_then(Value::as_object).cloned().unwrap_or_default();
        let rc: Map<String, Value> = caps
            .iter()
            .filter(|(k, _)| declared.get(*k).and_then(Value::as_bool) == Some(true))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !rc.is_empty() {
            obj.insert("runtimeConfig".into(), rc.into());
        }
    }
    Value::Object(obj)
}

/// Runs plugins: in-process when the binary in CNI_PATH is ipcni itself, else exec.
pub struct Runner {
    pub cni_path: Vec<PathBuf>,
    pub mode: Mode,
    /// The shell text of each dry-run plan, in order, for printing.
    pub dry_plans: Vec<(String, String)>,
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

impl Runner {
    fn find(&self, plugin_type: &str) -> Result<PathBuf, CniError> {
        self.cni_path.iter().map(|d| d.join(plugin_type)).find(|p| p.is_file()).ok_or_else(|| {
            CniError::invalid_env(format!(
                "CNI_PATH: plugin {plugin_type:?} not found in [{}]",
                self.cni_path.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":")
            ))
        })
    }

    /// Runs one plugin command; Ok(stdout) on success.
    pub fn invoke(&mut self, att: &Attachment, command: Command, config: &Value) -> Result<String, CniError> {
        let plugin_type = config.get("type").and_then(Value::as_str).unwrap_or("").to_string();
        let bin = self.find(&plugin_type)?;
        let stdin = serde_json::to_vec(config).expect("config serializes");
        let path = self.cni_path.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":");
        let (netns, ifname, id) = if command == Command::Version || matches!(command, Command::Gc | Command::Status) {
            (String::new(), String::new(), String::new())
        } else {
            (att.netns.clone(), att.ifname.clone(), att.container_id.clone())
        };
        let vars: BTreeMap<String, String> = [
            ("CNI_COMMAND", command.as_str().to_string()),
            ("CNI_CONTAINERID", id),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", ifname),
            ("CNI_ARGS", att.cni_args.clone()),
            ("CNI_PATH", path),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let me = std::env::current_exe().ok();
        let builtin =
            crate::plugins::lookup(&plugin_type).filter(|_| me.as_deref().is_some_and(|m| same_file(m, &bin)));
        let mode = if self.mode.is_dry() { Mode::DryRunJson } else { Mode::Real };
        let (stdout, ok) = match builtin {
            Some(plugin) => {
                let mut all = vars.clone();
                for (k, v) in std::env::vars() {
                    all.entry(k).or_insert(v);
                }
                let out = skel::run(plugin, &all, &mut stdin.as_slice(), mode);
                eprint!("{}", out.stderr);
                (out.stdout, out.exit_code == 0)
            }
            None => {
                if self.mode.is_dry() && command != Command::Version {
                    return Err(CniError::config(format!(
                        "dry-run: plugin {} is not ipcni, so what it would do cannot be known without running it",
                        bin.display()
                    )));
                }
                let mut child = Process::new(&bin)
                    .envs(&vars)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .map_err(|e| CniError::new(code::DELEGATE_FAILED, format!("running {}: {e}", bin.display())))?;
                {
                    use std::io::Write;
                    let _ = child.stdin.take().expect("piped").write_all(&stdin);
                }
                let out = child
                    .wait_with_output()
                    .map_err(|e| CniError::new(code::DELEGATE_FAILED, format!("waiting for {}: {e}", bin.display())))?;
                (String::from_utf8_lossy(&out.stdout).into_owned(), out.status.success())
            }
        };
        if !ok {
            return Err(plugin_error(&plugin_type, &stdout));
        }
        if self.mode.is_dry() && builtin.is_some() {
            let v: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
            let shell = v.get("shell").and_then(Value::as_str).unwrap_or("").to_string();
            self.dry_plans.push((format!("{plugin_type} {}", command.as_str()), shell));
            return Ok(v.get("result").filter(|r| !r.is_null()).map(|r| r.to_string()).unwrap_or_default());
        }
        Ok(stdout)
    }
}

fn plugin_error(plugin_type: &str, stdout: &str) -> CniError {
    #[derive(serde::Deserialize)]
    struct E {
        code: u32,
        msg: String,
        #[serde(default)]
        details: String,
    }
    match serde_json::from_str::<E>(stdout) {
        Ok(e) => CniError { code: e.code, msg: format!("{plugin_type}: {}", e.msg), details: e.details },
        Err(_) => CniError::new(code::DELEGATE_FAILED, format!("{plugin_type} failed: {}", stdout.trim())),
    }
}

/// libcni's result cache: `<dir>/results/<net>-<id>-<ifname>`.
pub struct Cache {
    pub dir: PathBuf,
}

impl Cache {
    pub fn from_env() -> Cache {
        let dir = std::env::var_os("CNI_CACHE_DIR").map_or_else(|| PathBuf::from("/var/lib/cni"), PathBuf::from);
        Cache { dir: dir.join("results") }
    }

    fn path(&self, net: &str, att: &Attachment) -> PathBuf {
        self.dir.join(format!("{net}-{}-{}", att.container_id, att.ifname))
    }

    pub fn load(&self, net: &str, att: &Attachment) -> Option<Value> {
        let bytes = std::fs::read(self.path(net, att)).ok()?;
        let v: Value = serde_json::from_slice(&bytes).ok()?;
        v.get("result").cloned()
    }

    pub fn store(&self, list: &NetworkList, att: &Attachment, result: &Value) -> Result<(), CniError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| CniError::io(format!("result cache {}: {e}", self.dir.display())))?;
        let entry = json!({
            "kind": "cniCacheV1",
            "containerId": att.container_id,
            "config": base64(&list.bytes),
            "ifName": att.ifname,
            "networkName": list.name,
            "netns": att.netns,
            "cniArgs": att.cni_args.split(';').filter(|p| !p.is_empty()).filter_map(|p| p.split_once('=')).map(|(k, v)| vec![k, v]).collect::<Vec<_>>(),
            "capabilityArgs": att.capability_args,
            "result": result,
        });
        let path = self.path(&list.name, att);
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| CniError::io(format!("{}: {e}", tmp.display())))?;
        use std::io::Write;
        f.write_all(entry.to_string().as_bytes()).map_err(|e| CniError::io(format!("{}: {e}", tmp.display())))?;
        std::fs::rename(&tmp, &path).map_err(|e| CniError::io(format!("{}: {e}", path.display())))
    }

    pub fn remove(&self, net: &str, att: &Attachment) {
        let _ = std::fs::remove_file(self.path(net, att));
    }

    /// Every cached attachment of network `net`: (container id, ifname, netns).
    pub fn attachments(&self, net: &str) -> Vec<(String, String, String)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let v: Value = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
                (v.get("networkName")?.as_str()? == net).then(|| {
                    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    (s("containerId"), s("ifName"), s("netns"))
                })
            })
            .collect()
    }
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// ADD: plugins in order, each with the previous result; on a failure the plugins that
/// ran are DEL'd in reverse (best effort), so nothing is left half-made.
pub fn add(list: &NetworkList, att: &Attachment, runner: &mut Runner, cache: &Cache) -> Result<Value, CniError> {
    let mut prev: Option<Value> = None;
    for (i, plugin) in list.plugins.iter().enumerate() {
        let config = derive_config(list, plugin, prev.as_ref(), &att.capability_args, Command::Add);
        match runner.invoke(att, Command::Add, &config) {
            Ok(out) => {
                prev = Some(serde_json::from_str(&out).map_err(|e| {
                    CniError::decode(format!("plugins[{i}] ({}) printed an invalid result: {e}", config["type"]))
                })?);
            }
            Err(e) => {
                if !runner.mode.is_dry() {
                    for (j, p) in list.plugins[..=i].iter().enumerate().rev() {
                        let config = derive_config(list, p, prev.as_ref(), &att.capability_args, Command::Del);
                        if let Err(de) = runner.invoke(att, Command::Del, &config) {
                            crate::exec::log(&format!("cleanup after failed ADD: plugins[{j}]: {de}"));
                        }
                    }
                }
                return Err(e);
            }
        }
    }
    let result = prev.unwrap_or(Value::Null);
    if !runner.mode.is_dry() {
        cache.store(list, att, &result)?;
    }
    Ok(result)
}

/// Collects errors of commands that keep going (DEL, GC) into one.
fn joined(errors: Vec<CniError>) -> Result<(), CniError> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.into_iter().next().expect("one")),
        _ => Err(CniError::new(errors[0].code, errors.iter().map(|e| e.msg.clone()).collect::<Vec<_>>().join("; "))),
    }
}

/// DEL: plugins in reverse order with the cached result, continuing past failures and
/// reporting them all; the cache entry goes only when every plugin succeeded.
pub fn del(list: &NetworkList, att: &Attachment, runner: &mut Runner, cache: &Cache) -> Result<(), CniError> {
    let cached = if list.version >= Version::V040 { cache.load(&list.name, att) } else { None };
    let mut errors = Vec::new();
    for plugin in list.plugins.iter().rev() {
        let config = derive_config(list, plugin, cached.as_ref(), &att.capability_args, Command::Del);
        if let Err(e) = runner.invoke(att, Command::Del, &config) {
            errors.push(e);
        }
    }
    if errors.is_empty() && !runner.mode.is_dry() {
        cache.remove(&list.name, att);
    }
    joined(errors)
}

pub fn check(list: &NetworkList, att: &Attachment, runner: &mut Runner, cache: &Cache) -> Result<(), CniError> {
    if !list.version.allows_check() {
        return Err(CniError::incompatible_version(format!(
            "configuration version {} does not allow CHECK",
            list.version
        )));
    }
    if list.disable_check {
        return Ok(());
    }
    let cached = cache.load(&list.name, att).ok_or_else(|| {
        CniError::new(code::UNKNOWN_CONTAINER, format!("no cached result for {} on {}", att.container_id, list.name))
    })?;
    for plugin in &list.plugins {
        let config = derive_config(list, plugin, Some(&cached), &att.capability_args, Command::Check);
        runner.invoke(att, Command::Check, &config)?;
    }
    Ok(())
}

/// STATUS (1.1.0 lists): each plugin in order; the first error is the answer.
pub fn status(list: &NetworkList, att: &Attachment, runner: &mut Runner) -> Result<(), CniError> {
    if !list.version.allows_status_and_gc() {
        return Ok(());
    }
    for plugin in &list.plugins {
        let config = derive_config(list, plugin, None, &Map::new(), Command::Status);
        runner.invoke(att, Command::Status, &config)?;
    }
    Ok(())
}

/// GC as libcni: a full DEL for every cached attachment of the network not in `valid`,
/// then (1.1.0 lists) GC to every plugin with the valid list, when one was given.
pub fn gc(
    list: &NetworkList,
    valid: Option<&[(String, String)]>,
    template: &Attachment,
    runner: &mut Runner,
    cache: &Cache,
) -> Result<(), CniError> {
    if list.disable_gc {
        return Ok(());
    }
    let mut errors = Vec::new();
    for (id, ifname, netns) in cache.attachments(&list.name) {
        if valid.is_some_and(|v| v.iter().any(|(vi, vf)| *vi == id && *vf == ifname)) {
            continue;
        }
        let att = Attachment { container_id: id, ifname, netns, ..template.clone() };
        if let Err(e) = del(list, &att, runner, cache) {
            errors.push(e);
        }
    }
    if list.version.allows_status_and_gc() {
        for plugin in &list.plugins {
            let mut config = derive_config(list, plugin, None, &Map::new(), Command::Gc);
            if let Some(v) = valid {
                let list: Vec<Value> = v.iter().map(|(id, ifn)| json!({"containerID": id, "ifname": ifn})).collect();
                config["cni.dev/valid-attachments"] = list.clone().into();
                config["cni.dev/attachments"] = list.into();
            }
            if let Err(e) = runner.invoke(template, Command::Gc, &config) {
                errors.push(e);
            }
        }
    }
    joined(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(json: &str) -> NetworkList {
        NetworkList::parse(json.as_bytes(), Path::new("test.conflist")).unwrap()
    }

    #[test]
    fn highest_supported_version_wins() {
        let l = list(
            r#"{"cniVersion":"0.4.0","cniVersions":["1.0.0","1.1.0","9.0.0"],"name":"n","plugins":[{"type":"bridge"}]}"#,
        );
        assert_eq!(l.version, Version::V110);
    }

    #[test]
    fn runtime_config_only_for_declared_capabilities() {
        let l = list(
            r#"{"cniVersion":"1.1.0","name":"n","plugins":[{"type":"bridge"},{"type":"portmap","capabilities":{"portMappings":true,"mac":false}}]}"#,
        );
        let caps: Map<String, Value> =
            serde_json::from_str(r#"{"portMappings":[{"hostPort":8080}],"mac":"x","bandwidth":{}}"#).unwrap();
        let c0 = derive_config(&l, &l.plugins[0], None, &caps, Command::Add);
        assert!(c0.get("runtimeConfig").is_none());
        let c1 = derive_config(&l, &l.plugins[1], Some(&json!({"cniVersion":"1.1.0"})), &caps, Command::Add);
        assert_eq!(c1["runtimeConfig"], json!({"portMappings":[{"hostPort":8080}]}));
        assert_eq!(c1["name"], "n");
        assert_eq!(c1["prevResult"]["cniVersion"], "1.1.0");
        let gc = derive_config(&l, &l.plugins[1], Some(&json!({})), &caps, Command::Gc);
        assert!(gc.get("prevResult").is_none() && gc.get("runtimeConfig").is_none());
    }

    #[test]
    fn single_plugin_conf_is_a_list_of_one_and_bad_types_are_refused() {
        let l = list(r#"{"cniVersion":"1.0.0","name":"n","type":"bridge"}"#);
        assert_eq!(l.plugins.len(), 1);
        let e = NetworkList::parse(br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../x"}]}"#, Path::new("t"));
        assert_eq!(e.unwrap_err().code, 7);
        let e = NetworkList::parse(br#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#, Path::new("t"));
        assert_eq!(e.unwrap_err().code, 7);
    }

    #[test]
    fn container_id_is_cnitools() {
        let id = Attachment::default_container_id("/run/netns/x");
        assert_eq!(id.len(), 28);
        assert!(id.starts_with("cnitool-"));
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn load_prefers_conflist_and_appends_plugin_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("10-a.conf"), r#"{"cniVersion":"1.0.0","name":"net","type":"loopback"}"#)
            .unwrap();
        std::fs::write(
            dir.path().join("20-b.conflist"),
            r#"{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"bridge"}]}"#,
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("net")).unwrap();
        std::fs::write(dir.path().join("net/extra.conf"), r#"{"type":"tuning"}"#).unwrap();
        let l = NetworkList::load(dir.path(), "net").unwrap();
        assert_eq!(l.plugins.len(), 2);
        assert_eq!(l.plugins[1]["type"], "tuning");
        assert_eq!(NetworkList::load(dir.path(), "none").unwrap_err().code, 7);
    }
}
