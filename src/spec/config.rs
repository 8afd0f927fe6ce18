//! The plugin configuration on stdin: the keys every plugin shares. Plugin-specific
//! keys are parsed by each plugin from [`NetConf::raw`].

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::spec::error::CniError;
use crate::spec::result::{CniResult, Dns};
use crate::spec::version::Version;
use crate::validate;

/// One entry of `cni.dev/valid-attachments` (GC).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

#[derive(Debug, Clone)]
pub struct NetConf {
    /// The version as written; a missing cniVersion means 0.1.0.
    pub version: Version,
    pub name: String,
    pub plugin_type: String,
    pub ipam_type: Option<String>,
    pub dns: Option<Dns>,
    pub prev_result: Option<CniResult>,
    pub runtime_config: Map<String, Value>,
    /// GC only: None when the key is absent (then GC keeps everything).
    pub valid_attachments: Option<Vec<Attachment>>,
    /// The whole object, for plugin-specific keys and for delegating to IPAM.
    pub raw: Value,
    /// The exact bytes received, passed unchanged to a delegated plugin.
    pub bytes: Vec<u8>,
}

/// JSON nesting deeper than this is refused before parsing, so hostile input cannot
/// exhaust the stack (serde_json's own limit is 128, this is tighter and explicit).
const MAX_DEPTH: usize = 64;
/// Larger configs are refused: real ones are a few KiB.
pub const MAX_CONFIG_BYTES: usize = 4 << 20;

fn check_depth(bytes: &[u8]) -> Result<(), CniError> {
    let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(CniError::decode(format!("config: JSON nested deeper than {MAX_DEPTH} levels")));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

impl NetConf {
    /// Reads only `cniVersion`, for commands that need nothing else (STATUS, VERSION).
    pub fn parse(bytes: &[u8]) -> Result<NetConf, CniError> {
        if bytes.len() > MAX_CONFIG_BYTES {
            return Err(CniError::decode(format!(
                "config: {} bytes is larger than the {MAX_CONFIG_BYTES}-byte limit",
                bytes.len()
            )));
        }
        check_depth(bytes)?;
        let raw: Value =
            serde_json::from_slice(bytes).map_err(|e| CniError::decode(format!("config: invalid JSON: {e}")))?;
        let obj = raw.as_object().ok_or_else(|| CniError::decode("config: expected a JSON object"))?;
        let version = match obj.get("cniVersion") {
            None | Some(Value::Null) => Version::V010,
            Some(Value::String(s)) if s.is_empty() => Version::V010,
            Some(Value::String(s)) => Version::negotiate(s)?,
            Some(_) => return Err(CniError::decode("config: \"cniVersion\" must be a string")),
        };
        let string = |key: &str| -> Result<String, CniError> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(CniError::config(format!("config: {key:?} must be a string"))),
            }
        };
        let name = string("name")?;
        let plugin_type = string("type")?;
        // It names a binary in CNI_PATH and prefixes messages and log lines.
        if !plugin_type.is_empty() {
            validate::plugin_type(&plugin_type).map_err(|e| CniError::config(format!("type: {e}")))?;
        }
        let ipam_type = match obj.get("ipam") {
            None | Some(Value::Null) => None,
            Some(Value::Object(ipam)) => match ipam.get("type") {
                None | Some(Value::Null) => None,
                Some(Value::String(t)) if t.is_empty() => None,
                Some(Value::String(t)) => {
                    validate::plugin_type(t).map_err(|e| CniError::config(format!("ipam.type: {e}")))?;
                    Some(t.clone())
                }
                Some(_) => return Err(CniError::config("config: \"ipam.type\" must be a string")),
            },
            Some(_) => return Err(CniError::config("config: \"ipam\" must be an object")),
        };
        let dns = match obj.get("dns") {
            None | Some(Value::Null) => None,
            Some(v) => {
                Some(serde_json::from_value(v.clone()).map_err(|e| CniError::config(format!("config: \"dns\": {e}")))?)
            }
        };
        let prev_result = match obj.get("prevResult") {
            None | Some(Value::Null) => None,
            Some(v) => Some(CniResult::parse(v, version)?),
        };
        let runtime_config = match obj.get("runtimeConfig") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(CniError::config("config: \"runtimeConfig\" must be an object")),
        };
        let valid_attachments = match obj.get("cni.dev/valid-attachments").or(obj.get("cni.dev/attachments")) {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                serde_json::from_value(v.clone())
                    .map_err(|e| CniError::config(format!("config: \"cni.dev/valid-attachments\": {e}")))?,
            ),
        };
        Ok(NetConf {
            version,
            name,
            plugin_type,
            ipam_type,
            dns,
            prev_result,
            runtime_config,
            valid_attachments,
            raw,
            bytes: bytes.to_vec(),
        })
    }

    /// The network name, validated: it names directories and firewall comments.
    pub fn require_name(&self) -> Result<&str, CniError> {
        validate::network_name(&self.name).map_err(|e| CniError::config(format!("config: \"name\": {e}")))?;
        Ok(&self.name)
    }

    /// Deserializes the plugin-specific view of the config, naming the bad key on error.
    pub fn plugin<T: DeserializeOwned>(&self) -> Result<T, CniError> {
        from_value_named(&self.raw).map_err(|e| CniError::config(format!("{} config: {e}", self.plugin_type)))
    }

    /// `args.cni.<key>`, the conventions' place for runtime metadata.
    pub fn args_cni(&self, key: &str) -> Option<&Value> {
        self.raw.get("args")?.get("cni")?.get(key)
    }
}

/// `serde_json::from_value`, with the path of the value it rejects in front of the
/// message (`ipam.ranges[0]: invalid type: …`): serde names a missing field, but not the
/// field whose value has the wrong type.
pub fn from_value_named<T: DeserializeOwned>(v: &Value) -> Result<T, String> {
    let err = match serde_json::from_value(v.clone()) {
        Ok(t) => return Ok(t),
        Err(e) => e.to_string(),
    };
    match blame::<T>(v, &err) {
        Some(path) if !err.contains(&format!("`{path}`")) => Err(format!("{path}: {err}")),
        _ => Err(err),
    }
}

/// The path of the value `T` rejects in `root` with `original`, found by removing one
/// key or element at a time, outermost first: removing the culprit makes that error go
/// (deserialization succeeds, or fails for another reason such as the key now missing).
/// A wrong-typed key fails while it is read, before serde looks for missing ones, so
/// removing an innocent key, required or not, leaves `original` as it was.
/// Bounded, so a huge hostile document costs a fixed number of attempts.
fn blame<T: DeserializeOwned>(root: &Value, original: &str) -> Option<String> {
    const ATTEMPTS: usize = 64;
    let mut path: Vec<Result<String, usize>> = Vec::new();
    let mut attempts = 0;
    'descend: loop {
        let mut node = root;
        for seg in &path {
            node = match seg {
                Ok(k) => &node[k.as_str()],
                Err(i) => &node[*i],
            };
        }
        let children: Vec<Result<String, usize>> = match node {
            Value::Object(m) => m.keys().cloned().map(Ok).collect(),
            Value::Array(a) => (0..a.len()).map(Err).collect(),
            _ => break,
        };
        for child in children {
            attempts += 1;
            if attempts > ATTEMPTS {
                break 'descend;
            }
            let mut candidate = root.clone();
            let mut parent = &mut candidate;
            for seg in &path {
                parent = match seg {
                    Ok(k) => &mut parent[k.as_str()],
                    Err(i) => &mut parent[*i],
                };
            }
            match (&child, parent) {
                (Ok(k), Value::Object(m)) => {
                    m.remove(k);
                }
                (Err(i), Value::Array(a)) => {
                    a.remove(*i);
                }
                _ => continue,
            }
            if serde_json::from_value::<T>(candidate).map_err(|e| e.to_string()).err().as_deref() != Some(original) {
                path.push(child);
                continue 'descend;
            }
        }
        break;
    }
    if path.is_empty() {
        return None;
    }
    let mut out = String::new();
    for seg in &path {
        match seg {
            Ok(k) if out.is_empty() => out.push_str(k),
            Ok(k) => {
                out.push('.');
                out.push_str(k);
            }
            Err(i) => out.push_str(&format!("[{i}]")),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What broke: `"ipMasq": "yes"` gave "invalid type: string \"yes\", expected a
    /// boolean" without saying which key.
    #[test]
    fn a_wrong_typed_key_is_named_with_its_path() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Range {
            subnet: String,
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        #[serde(rename_all = "camelCase")]
        struct Conf {
            name: String,
            #[serde(default)]
            ip_masq: bool,
            #[serde(default)]
            ranges: Vec<Vec<Range>>,
        }
        let named = |j: &str| from_value_named::<Conf>(&serde_json::from_str(j).unwrap()).unwrap_err();
        let e = named(r#"{"name":"n","ipMasq":"yes"}"#);
        assert!(e.starts_with("ipMasq: invalid type: string \"yes\""), "{e}");
        let e = named(r#"{"ipMasq":"yes"}"#);
        assert!(e.starts_with("ipMasq: "), "a missing required key does not hide the culprit: {e}");
        let e = named(r#"{"name":"n","ranges":[[{"subnet":"a"}],[{"subnet":"b"},{"subnet":7}]]}"#);
        assert!(e.starts_with("ranges[1][1].subnet: invalid type: integer `7`"), "{e}");
        let e = named(r#"{"ipMasq":true}"#);
        assert_eq!(e, "missing field `name`", "serde names a missing key itself");
        let huge = format!(r#"{{"name":"n","ranges":[{}[{{"subnet":1}}]]}}"#, "[],".repeat(10_000));
        assert!(named(&huge).starts_with("ranges"), "the search is bounded, not skipped");
    }

    #[test]
    fn missing_version_means_010() {
        let c = NetConf::parse(br#"{"name":"n","type":"bridge"}"#).unwrap();
        assert_eq!(c.version, Version::V010);
    }

    #[test]
    fn unknown_version_is_code_1_and_bad_json_code_6() {
        assert_eq!(NetConf::parse(br#"{"cniVersion":"9.9.9"}"#).unwrap_err().code, 1);
        assert_eq!(NetConf::parse(b"{").unwrap_err().code, 6);
        assert_eq!(NetConf::parse(b"[]").unwrap_err().code, 6);
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(NetConf::parse(deep.as_bytes()).unwrap_err().code, 6);
        // brackets inside strings do not count
        let s = format!(r#"{{"cniVersion":"1.0.0","name":"{}"}}"#, "[".repeat(1000));
        assert!(NetConf::parse(s.as_bytes()).is_ok());
    }

    #[test]
    fn gc_accepts_both_attachment_keys() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"n","cni.dev/attachments":[{"containerID":"a","ifname":"eth0"}]}"#,
        )
        .unwrap();
        assert_eq!(c.valid_attachments.unwrap()[0].container_id, "a");
        let c = NetConf::parse(br#"{"cniVersion":"1.1.0","name":"n"}"#).unwrap();
        assert!(c.valid_attachments.is_none());
    }

    #[test]
    fn bad_ipam_type_is_config_error() {
        let e = NetConf::parse(br#"{"cniVersion":"1.0.0","ipam":{"type":"../x"}}"#).unwrap_err();
        assert_eq!(e.code, 7);
    }

    /// What broke: a `type` holding a newline reached stderr log lines unescaped (they
    /// start with it), so a config could forge a log line.
    #[test]
    fn a_type_that_is_no_binary_name_is_refused() {
        for bad in [r#""bridge\nipcni: forged""#, r#""../bridge""#, r#""a b""#] {
            let json = format!(r#"{{"cniVersion":"1.0.0","name":"n","type":{bad}}}"#);
            let e = NetConf::parse(json.as_bytes()).unwrap_err();
            assert_eq!((e.code, e.msg.starts_with("type: ")), (7, true), "{bad}: {}", e.msg);
        }
    }
}
