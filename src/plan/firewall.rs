//! Typed firewall changes. Each op is one transaction: an `iptables-restore --noflush`
//! script or an `nft -f -` script, never one process per rule.

use std::fmt::Write;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(addr: &IpAddr) -> Family {
        if addr.is_ipv4() { Family::V4 } else { Family::V6 }
    }
    pub fn multicast(self) -> IpNetwork {
        match self {
            Family::V4 => "224.0.0.0/4".parse().expect("valid"),
            Family::V6 => "ff00::/8".parse().expect("valid"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "target", content = "chain", rename_all = "lowercase")]
pub enum IptTarget {
    Accept,
    Return,
    Masquerade,
    Jump(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IptRule {
    pub src: Option<IpNetwork>,
    pub dst: Option<IpNetwork>,
    pub dst_negated: bool,
    /// Free text; validated identifiers only, so it never holds a quote of its own
    /// beyond the ones the renderer escapes.
    pub comment: Option<String>,
    pub target: IptTarget,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "line", rename_all = "snake_case")]
pub enum IptLine {
    /// `:CHAIN - [0:0]`: creates the chain, or flushes it when it exists.
    DeclareChain {
        chain: String,
    },
    Append {
        chain: String,
        rule: IptRule,
    },
    Delete {
        chain: String,
        rule: IptRule,
    },
    Flush {
        chain: String,
    },
    DeleteChain {
        chain: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NftFamily {
    Inet,
    Bridge,
}

/// An nft table: family and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NftTable {
    pub family: NftFamily,
    pub name: String,
}

impl NftTable {
    pub fn inet(name: &str) -> NftTable {
        NftTable { family: NftFamily::Inet, name: name.to_string() }
    }
    pub fn bridge(name: &str) -> NftTable {
        NftTable { family: NftFamily::Bridge, name: name.to_string() }
    }
}

impl std::fmt::Display for NftTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fam = match self.family {
            NftFamily::Inet => "inet",
            NftFamily::Bridge => "bridge",
        };
        write!(f, "{fam} {}", self.name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BaseChain {
    /// `type nat hook postrouting priority srcnat`
    NatPostrouting,
    /// `type filter hook prerouting priority -300; policy accept` (bridge family)
    BridgeFilterPrerouting,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum NftRule {
    DaddrReturn {
        daddr: IpNetwork,
    },
    Goto {
        chain: String,
    },
    Jump {
        chain: String,
    },
    IifnameJump {
        iifname: String,
        chain: String,
    },
    /// `ip saddr A ip daddr != NET masquerade`
    Masquerade {
        saddr: IpAddr,
        daddr_not: IpNetwork,
    },
    EtherSaddrReturn {
        mac: String,
    },
    Drop,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "nft", rename_all = "snake_case")]
pub enum NftOp {
    AddTable {
        table: NftTable,
    },
    AddChain {
        table: NftTable,
        chain: String,
        base: Option<BaseChain>,
    },
    FlushChain {
        table: NftTable,
        chain: String,
    },
    DeleteChain {
        table: NftTable,
        chain: String,
    },
    AddRule {
        table: NftTable,
        chain: String,
        rule: NftRule,
        comment: Option<String>,
    },
    DeleteRule {
        table: NftTable,
        chain: String,
        handle: u64,
    },
    /// Deletes the rules of a chain whose comment starts with `prefix`. nft deletes rules
    /// only by handle, so the executor lists the chain and turns this into DeleteRule
    /// ops just before running; planners that can observe emit DeleteRule directly.
    DeleteRulesByComment {
        table: NftTable,
        chain: String,
        prefix: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "backend", rename_all = "lowercase")]
pub enum FirewallOp {
    Iptables {
        family: Family,
        table: String,
        lines: Vec<IptLine>,
    },
    /// Always in nft family `inet`.
    Nft {
        ops: Vec<NftOp>,
    },
}

fn quote_comment(c: &str) -> String {
    let mut s = String::from("\"");
    for ch in c.chars() {
        if ch == '"' || ch == '\\' {
            s.push('\\');
        }
        s.push(ch);
    }
    s.push('"');
    s
}

impl IptRule {
    /// The rule spec as `iptables -S` prints it, which is also what `-D` matches on.
    pub fn spec(&self) -> String {
        let mut s = String::new();
        if let Some(src) = self.src {
            let _ = write!(s, " -s {}", host_or_net(&src));
        }
        if let Some(dst) = self.dst {
            if self.dst_negated {
                s.push_str(" !");
            }
            let _ = write!(s, " -d {}", host_or_net(&dst));
        }
        if let Some(c) = &self.comment {
            let _ = write!(s, " -m comment --comment {}", quote_comment(c));
        }
        match &self.target {
            IptTarget::Accept => s.push_str(" -j ACCEPT"),
            IptTarget::Return => s.push_str(" -j RETURN"),
            IptTarget::Masquerade => s.push_str(" -j MASQUERADE"),
            IptTarget::Jump(c) => {
                let _ = write!(s, " -j {c}");
            }
        }
        s
    }
}

/// iptables normalizes `-d 10.1.0.5/24` to the network; print it that way so the
/// rule text equals what `iptables -S` shows.
fn host_or_net(n: &IpNetwork) -> String {
    format!("{}/{}", n.network(), n.prefix())
}

impl FirewallOp {
    pub fn program(&self) -> &'static str {
        match self {
            FirewallOp::Iptables { family: Family::V4, .. } => "iptables-restore",
            FirewallOp::Iptables { family: Family::V6, .. } => "ip6tables-restore",
            FirewallOp::Nft { .. } => "nft",
        }
    }

    pub fn args(&self) -> Vec<String> {
        match self {
            FirewallOp::Iptables { .. } => vec!["-w".into(), "--noflush".into()],
            FirewallOp::Nft { .. } => vec!["-f".into(), "-".into()],
        }
    }

    pub fn script(&self) -> String {
        let mut s = String::new();
        match self {
            FirewallOp::Iptables { table, lines, .. } => {
                let _ = writeln!(s, "*{table}");
                for line in lines {
                    let _ = match line {
                        IptLine::DeclareChain { chain } => writeln!(s, ":{chain} - [0:0]"),
                        IptLine::Append { chain, rule } => writeln!(s, "-A {chain}{}", rule.spec()),
                        IptLine::Delete { chain, rule } => writeln!(s, "-D {chain}{}", rule.spec()),
                        IptLine::Flush { chain } => writeln!(s, "-F {chain}"),
                        IptLine::DeleteChain { chain } => writeln!(s, "-X {chain}"),
                    };
                }
                s.push_str("COMMIT\n");
            }
            FirewallOp::Nft { ops } => {
                for op in ops {
                    let _ = match op {
                        NftOp::AddTable { table } => writeln!(s, "add table {table}"),
                        NftOp::AddChain { table, chain, base: None } => writeln!(s, "add chain {table} {chain}"),
                        NftOp::AddChain { table, chain, base: Some(BaseChain::NatPostrouting) } => {
                            writeln!(s, "add chain {table} {chain} {{ type nat hook postrouting priority srcnat ; }}")
                        }
                        NftOp::AddChain { table, chain, base: Some(BaseChain::BridgeFilterPrerouting) } => writeln!(
                            s,
                            "add chain {table} {chain} {{ type filter hook prerouting priority -300 ; policy accept ; }}"
                        ),
                        NftOp::FlushChain { table, chain } => writeln!(s, "flush chain {table} {chain}"),
                        NftOp::DeleteChain { table, chain } => writeln!(s, "delete chain {table} {chain}"),
                        NftOp::AddRule { table, chain, rule, comment } => {
                            let _ = write!(s, "add rule {table} {chain} {}", nft_rule(rule));
                            if let Some(c) = comment {
                                let _ = write!(s, " comment {}", quote_comment(c));
                            }
                            writeln!(s)
                        }
                        NftOp::DeleteRule { table, chain, handle } => {
                            writeln!(s, "delete rule {table} {chain} handle {handle}")
                        }
                        NftOp::DeleteRulesByComment { table, chain, prefix } => {
                            writeln!(s, "# delete each rule of {table} {chain} whose comment starts with {prefix}")
                        }
                    };
                }
            }
        }
        s
    }
}

fn nft_family(a: &IpAddr) -> &'static str {
    if a.is_ipv4() { "ip" } else { "ip6" }
}

fn nft_rule(rule: &NftRule) -> String {
    match rule {
        NftRule::DaddrReturn { daddr } => {
            format!("{} daddr {} return", nft_family(&daddr.ip()), host_or_net(daddr))
        }
        NftRule::Goto { chain } => format!("goto {chain}"),
        NftRule::Jump { chain } => format!("jump {chain}"),
        NftRule::IifnameJump { iifname, chain } => format!("iifname {} jump {chain}", quote_comment(iifname)),
        NftRule::EtherSaddrReturn { mac } => format!("ether saddr {mac} return"),
        NftRule::Drop => "drop".to_string(),
        NftRule::Masquerade { saddr, daddr_not } => {
            format!("{f} saddr {saddr} {f} daddr != {} masquerade", host_or_net(daddr_not), f = nft_family(saddr))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iptables_script_is_one_transaction_with_escaped_comment() {
        let op = FirewallOp::Iptables {
            family: Family::V4,
            table: "nat".into(),
            lines: vec![
                IptLine::DeclareChain { chain: "CNI-abc".into() },
                IptLine::Append {
                    chain: "CNI-abc".into(),
                    rule: IptRule {
                        src: None,
                        dst: Some("10.1.0.5/24".parse().unwrap()),
                        dst_negated: false,
                        comment: Some(r#"name: "net" id: "c1""#.into()),
                        target: IptTarget::Accept,
                    },
                },
            ],
        };
        assert_eq!(
            op.script(),
            "*nat\n:CNI-abc - [0:0]\n-A CNI-abc -d 10.1.0.0/24 -m comment --comment \"name: \\\"net\\\" id: \\\"c1\\\"\" -j ACCEPT\nCOMMIT\n"
        );
    }

    #[test]
    fn nft_masquerade_rule_renders_family_keywords() {
        let op = FirewallOp::Nft {
            ops: vec![NftOp::AddRule {
                table: NftTable::inet("t"),
                chain: "c".into(),
                rule: NftRule::Masquerade {
                    saddr: "fd00::5".parse().unwrap(),
                    daddr_not: "fd00::5/64".parse().unwrap(),
                },
                comment: None,
            }],
        };
        assert_eq!(op.script(), "add rule inet t c ip6 saddr fd00::5 ip6 daddr != fd00::/64 masquerade\n");
    }
}
