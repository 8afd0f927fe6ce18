//! Validation of names and paths that end up as tokens of an `ip -batch` line, an
//! iptables-restore script or an nft script. Anything that could end a token, start a
//! comment or a quote, or start a new line is refused, so no config value can smuggle
//! a second command into a batch.

/// Characters that iproute2's batch tokenizer, iptables-restore or nft treat specially.
fn is_unsafe_char(c: char) -> bool {
    c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\' | '#' | ';' | '{' | '}')
}

/// A Linux interface name, as the kernel's dev_valid_name plus the batch-safety rules.
pub fn ifname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("interface name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("interface name {name:?} is not allowed"));
    }
    if name.starts_with('-') {
        return Err(format!("interface name {name:?} starts with '-'"));
    }
    if let Some(c) = name.chars().find(|&c| c == '/' || c == ':' || is_unsafe_char(c)) {
        return Err(format!("interface name {name:?} contains {c:?}"));
    }
    if name.len() > 15 {
        return Err(format!("interface name {name:?} is longer than 15 bytes"));
    }
    Ok(())
}

/// Container IDs and network names: `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`, as libcni.
pub fn container_id(id: &str) -> Result<(), String> {
    identifier(id, "container id")
}

pub fn network_name(name: &str) -> Result<(), String> {
    identifier(name, "network name")
}

fn identifier(s: &str, what: &str) -> Result<(), String> {
    let mut chars = s.chars();
    match chars.next() {
        None => return Err(format!("{what} is empty")),
        Some(c) if !c.is_ascii_alphanumeric() => {
            return Err(format!("{what} {s:?} must start with a letter or digit"));
        }
        _ => {}
    }
    if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        return Err(format!("{what} {s:?} contains {c:?}"));
    }
    Ok(())
}

/// A namespace path goes into argv (nsenter) and into batch lines (`netns PATH`).
pub fn netns_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("netns path {path:?} is not absolute"));
    }
    if let Some(c) = path.chars().find(|&c| is_unsafe_char(c)) {
        return Err(format!("netns path {path:?} contains {c:?}"));
    }
    Ok(())
}

/// A plugin or IPAM `type`: a file name in CNI_PATH.
pub fn plugin_type(t: &str) -> Result<(), String> {
    if t.is_empty() || t == "." || t == ".." || t.contains('/') || t.chars().any(is_unsafe_char) {
        return Err(format!("plugin type {t:?} is not a valid binary name"));
    }
    Ok(())
}

/// A user-named iptables chain (`iptablesAdminChainName`, `externalSetMarkChain`): at
/// most 28 bytes (the kernel's limit), one plain token that is not an option.
pub fn iptables_chain(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("chain name is empty".into());
    }
    if name.starts_with('-') || name.starts_with('!') {
        return Err(format!("chain name {name:?} starts with {:?}", &name[..1]));
    }
    if let Some(c) = name.chars().find(|&c| is_unsafe_char(c) || !c.is_ascii()) {
        return Err(format!("chain name {name:?} contains {c:?}"));
    }
    if name.len() > 28 {
        return Err(format!("chain name {name:?} is longer than 28 bytes"));
    }
    Ok(())
}

/// One token of a user-given rule fragment (portmap `conditionsV4`/`conditionsV6`),
/// written as is into an iptables-restore or nft script: it may be an option (`-s`, `!`)
/// but can never end the line, quote, comment or open a block.
pub fn rule_token(tok: &str) -> Result<(), String> {
    if tok.is_empty() {
        return Err("empty token".into());
    }
    if let Some(c) = tok.chars().find(|&c| is_unsafe_char(c)) {
        return Err(format!("token {tok:?} contains {c:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_breaking_names_are_refused() {
        for bad in ["br0\nlink del lo", "br 0", "br#0", "br\"0", "br'0", "br\\0", "-br", "", "br;x"] {
            assert!(ifname(bad).is_err(), "{bad:?}");
        }
        for good in ["cni0", "br-mgmt", "eth0.100", "veth1a2b3c4d", "123456789012345"] {
            assert!(ifname(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn identifiers_follow_libcni() {
        assert!(container_id("abc-123_x.y").is_ok());
        assert!(container_id("_abc").is_err());
        assert!(network_name("net/../../etc").is_err());
    }

    #[test]
    fn netns_paths_must_be_absolute_and_plain() {
        assert!(netns_path("/run/netns/cni-1234").is_ok());
        assert!(netns_path("/proc/42/ns/net").is_ok());
        assert!(netns_path("relative").is_err());
        assert!(netns_path("/run/netns/a b").is_err());
    }
}
