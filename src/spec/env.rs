//! The CNI_* environment: parsed from a plain map so it can be tested without a process.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::spec::error::CniError;
use crate::validate;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    pub fn parse(s: &str) -> Result<Command, CniError> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            other => return Err(CniError::invalid_env(format!("unknown CNI_COMMAND: {other}"))),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Status => "STATUS",
            Command::Gc => "GC",
        }
    }

    fn needs_container(self) -> bool {
        matches!(self, Command::Add | Command::Del | Command::Check)
    }
}

/// `CNI_ARGS` as ordered key/value pairs. Unknown keys are ignored, whatever
/// `IgnoreUnknown` says: every plugin of a chain gets the same CNI_ARGS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs(pub Vec<(String, String)>);

impl CniArgs {
    pub fn parse(s: &str) -> Result<CniArgs, CniError> {
        let mut pairs = Vec::new();
        for pair in s.split(';').filter(|p| !p.is_empty()) {
            let mut kv = pair.split('=');
            match (kv.next(), kv.next(), kv.next()) {
                (Some(k), Some(v), None) if !k.is_empty() => pairs.push((k.to_string(), v.to_string())),
                _ => {
                    return Err(CniError::invalid_env(format!("CNI_ARGS: invalid pair {pair:?}: expected KEY=VALUE")));
                }
            }
        }
        Ok(CniArgs(pairs))
    }

    /// The last value given for `key` (keys are case-sensitive, as in the reference).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// The validated CNI environment of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    pub command: Command,
    pub container_id: String,
    /// None when CNI_NETNS is unset or empty (allowed for DEL, GC, STATUS).
    pub netns: Option<PathBuf>,
    pub ifname: String,
    pub args: CniArgs,
    pub path: Vec<PathBuf>,
}

impl CniEnv {
    /// Returns Ok(None) when CNI_COMMAND is unset: the caller prints the about text.
    pub fn from_map(vars: &BTreeMap<String, String>) -> Result<Option<CniEnv>, CniError> {
        let get = |k: &str| vars.get(k).map(String::as_str).unwrap_or("");
        let command = match vars.get("CNI_COMMAND") {
            None => return Ok(None),
            Some(c) if c.is_empty() => return Ok(None),
            Some(c) => Command::parse(c)?,
        };
        if command == Command::Version {
            // libcni passes dummy values for VERSION; nothing else is read.
            return Ok(Some(CniEnv {
                command,
                container_id: String::new(),
                netns: None,
                ifname: String::new(),
                args: CniArgs::default(),
                path: Vec::new(),
            }));
        }
        let mut missing = Vec::new();
        if command.needs_container() {
            for key in ["CNI_CONTAINERID", "CNI_IFNAME"] {
                if get(key).is_empty() {
                    missing.push(key);
                }
            }
            if matches!(command, Command::Add | Command::Check) && get("CNI_NETNS").is_empty() {
                missing.push("CNI_NETNS");
            }
        }
        if command == Command::Gc && get("CNI_PATH").is_empty() {
            missing.push("CNI_PATH");
        }
        if !missing.is_empty() {
            return Err(CniError::invalid_env(format!("required env variables [{}] missing", missing.join(","))));
        }
        let container_id = get("CNI_CONTAINERID").to_string();
        let ifname = get("CNI_IFNAME").to_string();
        if command.needs_container() {
            validate::container_id(&container_id)
                .map_err(|e| CniError::invalid_env(format!("CNI_CONTAINERID: {e}")))?;
            validate::ifname(&ifname).map_err(|e| CniError::invalid_env(format!("CNI_IFNAME: {e}")))?;
        }
        let netns = match get("CNI_NETNS") {
            "" => None,
            p if command.needs_container() => {
                validate::netns_path(p).map_err(|e| CniError::invalid_env(format!("CNI_NETNS: {e}")))?;
                Some(PathBuf::from(p))
            }
            _ => None,
        };
        let path = get("CNI_PATH").split(':').filter(|p| !p.is_empty()).map(PathBuf::from).collect();
        Ok(Some(CniEnv { command, container_id, netns, ifname, args: CniArgs::parse(get("CNI_ARGS"))?, path }))
    }

    /// The plain environment form, for delegating to another plugin binary.
    pub fn to_vars(&self, command: Command) -> Vec<(String, String)> {
        let netns = self.netns.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        let args = self.args.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(";");
        let path = self.path.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":");
        vec![
            ("CNI_COMMAND".into(), command.as_str().into()),
            ("CNI_CONTAINERID".into(), self.container_id.clone()),
            ("CNI_NETNS".into(), netns),
            ("CNI_IFNAME".into(), self.ifname.clone()),
            ("CNI_ARGS".into(), args),
            ("CNI_PATH".into(), path),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<Option<CniEnv>, CniError> {
        CniEnv::from_map(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn unset_command_means_about_text() {
        assert_eq!(env(&[]).unwrap(), None);
    }

    #[test]
    fn unknown_command_is_code_4_naming_it() {
        let e = env(&[("CNI_COMMAND", "GET")]).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (4, "unknown CNI_COMMAND: GET"));
    }

    #[test]
    fn add_lists_every_missing_variable() {
        let e = env(&[("CNI_COMMAND", "ADD")]).unwrap_err();
        assert_eq!(e.code, 4);
        assert_eq!(e.msg, "required env variables [CNI_CONTAINERID,CNI_IFNAME,CNI_NETNS] missing");
    }

    #[test]
    fn del_without_netns_is_fine() {
        let e = env(&[("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "c1"), ("CNI_IFNAME", "eth0")]).unwrap().unwrap();
        assert_eq!(e.netns, None);
    }

    #[test]
    fn bad_ifname_and_container_id_are_code_4() {
        let base = [("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "c1")];
        for bad in ["eth0\nip link del lo", "a b", "-eth0", "a/b", "0123456789abcdef", "..", "e:1"] {
            let mut v = base.to_vec();
            v.push(("CNI_IFNAME", bad));
            assert_eq!(env(&v).unwrap_err().code, 4, "{bad:?}");
        }
        let e = env(&[("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "-x"), ("CNI_IFNAME", "eth0")]);
        assert_eq!(e.unwrap_err().code, 4);
    }

    #[test]
    fn cni_args_keep_unknown_keys_and_reject_malformed_pairs() {
        let a = CniArgs::parse("IgnoreUnknown=1;K8S_POD_NAME=web;MAC=02:00:00:00:00:01").unwrap();
        assert_eq!(a.get("MAC"), Some("02:00:00:00:00:01"));
        assert_eq!(a.get("mac"), None);
        assert_eq!(CniArgs::parse("IP=1=2").unwrap_err().code, 4);
        assert_eq!(CniArgs::parse("").unwrap(), CniArgs::default());
    }

    #[test]
    fn gc_needs_cni_path() {
        assert_eq!(env(&[("CNI_COMMAND", "GC")]).unwrap_err().code, 4);
        assert!(env(&[("CNI_COMMAND", "GC"), ("CNI_PATH", "/opt/cni/bin")]).unwrap().is_some());
    }
}
