//! Names derived from an attachment's identity. Deterministic, so a DEL (or a golden
//! test) computes the same names ADD used, and equal to the reference plugins' where
//! they have one, so either implementation cleans up after the other.

use sha2::{Digest, Sha512};

fn sha512_hex(input: &str) -> String {
    Sha512::digest(input.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// `prefix` + the hex SHA-512 of `input`, cut to `len` characters in all.
pub fn hash_with_prefix(len: usize, prefix: &str, input: &str) -> String {
    let mut s = prefix.to_string();
    s.push_str(&sha512_hex(input)[..len.saturating_sub(prefix.len())]);
    s
}

/// The reference's iptables chain for a container: `CNI-` + 24 hex of sha512(net + id).
pub fn masq_chain(network: &str, container_id: &str) -> String {
    hash_with_prefix(28, "CNI-", &format!("{network}{container_id}"))
}

/// The reference's nft masquerade comment prefix for a network.
pub fn nft_network_hash(network: &str) -> String {
    hash_with_prefix(16, "", network)
}

/// The reference's nft masquerade comment prefix for one attachment.
pub fn nft_instance_hash(network: &str, ifname: &str, container_id: &str) -> String {
    format!("{}-{}", nft_network_hash(network), hash_with_prefix(16, "", &format!("{ifname}:{container_id}")))
}

/// The full nft comment, cut to nft's 128-byte limit as the reference does.
pub fn nft_instance_comment(network: &str, ifname: &str, container_id: &str) -> String {
    let mut c = format!(
        "{}, net: {network}, if: {ifname}, id: {container_id}",
        nft_instance_hash(network, ifname, container_id)
    );
    c.truncate(128);
    c
}

/// The host-side veth of an attachment: `veth` + 8 hex, stable for (net, id, ifname).
pub fn host_veth(network: &str, container_id: &str, ifname: &str) -> String {
    hash_with_prefix(12, "veth", &format!("veth\0{network}\0{container_id}\0{ifname}"))
}

/// A locally administered unicast MAC derived from `seed`. Planning the MACs up front
/// puts them in the result without reading the links back after creating them.
pub fn mac(seed: &str) -> String {
    let d = Sha512::digest(seed.as_bytes());
    let first = (d[0] & 0xfc) | 0x02;
    format!("{first:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", d[1], d[2], d[3], d[4], d[5])
}

/// Parses and normalizes a MAC address given by a user (lowercase, colon-separated).
pub fn parse_mac(s: &str) -> Result<String, String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 || parts.iter().any(|p| p.len() != 2 || !p.chars().all(|c| c.is_ascii_hexdigit())) {
        return Err(format!("{s:?} is not a MAC address"));
    }
    let first = u8::from_str_radix(parts[0], 16).map_err(|e| e.to_string())?;
    if first & 1 == 1 {
        return Err(format!("{s:?} is a multicast MAC address"));
    }
    Ok(parts.join(":").to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_have_the_reference_shape() {
        let c = masq_chain("mynet", "abc");
        assert_eq!(c.len(), 28);
        assert!(c.starts_with("CNI-"));
        assert_eq!(c, masq_chain("mynet", "abc"));
        assert_ne!(c, masq_chain("mynet", "abd"));
    }

    #[test]
    fn derived_names_fit_and_macs_are_local_unicast() {
        let v = host_veth("n", "c", "eth0");
        assert_eq!(v.len(), 12);
        assert!(crate::validate::ifname(&v).is_ok());
        let m = mac("x");
        let first = u8::from_str_radix(&m[..2], 16).unwrap();
        assert_eq!(first & 0x03, 0x02);
        assert_eq!(parse_mac(&m).unwrap(), m);
        assert!(parse_mac("01:00:5e:00:00:01").is_err());
        assert_eq!(parse_mac("0A:58:0A:01:00:01").unwrap(), "0a:58:0a:01:00:01");
    }

    #[test]
    fn nft_comment_is_cut_to_128_bytes() {
        let id = "c".repeat(200);
        assert_eq!(nft_instance_comment("net", "eth0", &id).len(), 128);
    }
}
