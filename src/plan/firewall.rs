//! Typed firewall changes. Each op is one transaction: an `iptables-restore --noflush`
//! script or an `nft -f -` script, never one process per rule.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

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
    /// The iptables command of the family, for messages.
    pub fn iptables(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }
    pub fn multicast(self) -> IpNetwork {
        match self {
            Family::V4 => "224.0.0.0/4".parse().expect("valid"),
            Family::V6 => "ff00::/8".parse().expect("valid"),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "target", content = "chain", rename_all = "lowercase")]
pub enum IptTarget {
    #[default]
    Accept,
    Return,
    Masquerade,
    Jump(String),
    Drop,
    /// `-j DNAT --to-destination ADDR:PORT` (`[ADDR]:PORT` for IPv6).
    Dnat(SocketAddr),
    /// `-j MARK --set-xmark VALUE/MASK`.
    SetXmark(Mark),
}

/// A layer-4 protocol of a port match (`-p`, nft `tcp dport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum L4Proto {
    Tcp,
    Udp,
    Sctp,
}

impl L4Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            L4Proto::Tcp => "tcp",
            L4Proto::Udp => "udp",
            L4Proto::Sctp => "sctp",
        }
    }
    /// `tcp`, `udp` or `sctp`, in any case.
    pub fn parse(s: &str) -> Option<L4Proto> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Some(L4Proto::Tcp),
            "udp" => Some(L4Proto::Udp),
            "sctp" => Some(L4Proto::Sctp),
            _ => None,
        }
    }
}

/// `[!] -i NAME` / `[!] -o NAME`; the name is a validated interface name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IfaceMatch {
    pub name: String,
    pub negated: bool,
}

/// A port or an inclusive range (`80`, `8000:8080`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn single(port: u16) -> PortRange {
        PortRange { first: port, last: port }
    }
    pub fn parse(s: &str) -> Option<PortRange> {
        match s.split_once(':') {
            None => Some(PortRange::single(s.parse().ok()?)),
            Some((a, b)) => Some(PortRange { first: a.parse().ok()?, last: b.parse().ok()? }),
        }
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last { write!(f, "{}", self.first) } else { write!(f, "{}:{}", self.first, self.last) }
    }
}

/// A conntrack state of `-m conntrack --ctstate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CtState {
    // In the order iptables prints them.
    Invalid,
    New,
    Related,
    Established,
    Untracked,
}

impl CtState {
    pub fn as_str(self) -> &'static str {
        match self {
            CtState::Invalid => "INVALID",
            CtState::New => "NEW",
            CtState::Related => "RELATED",
            CtState::Established => "ESTABLISHED",
            CtState::Untracked => "UNTRACKED",
        }
    }
    pub fn parse(s: &str) -> Option<CtState> {
        [CtState::Invalid, CtState::New, CtState::Related, CtState::Established, CtState::Untracked]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

/// An address type of `-m addrtype --dst-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AddrType {
    Local,
}

/// A mark and its mask (`0x2000/0x2000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Mark {
    pub value: u32,
    pub mask: u32,
}

impl Mark {
    pub fn parse(s: &str) -> Option<Mark> {
        let hex = |h: &str| u32::from_str_radix(h.strip_prefix("0x")?, 16).ok();
        match s.split_once('/') {
            Some((v, m)) => Some(Mark { value: hex(v)?, mask: hex(m)? }),
            None => Some(Mark { value: hex(s)?, mask: u32::MAX }),
        }
    }
}

impl std::fmt::Display for Mark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}/{:#x}", self.value, self.mask)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IptRule {
    pub src: Option<IpNetwork>,
    pub dst: Option<IpNetwork>,
    pub dst_negated: bool,
    /// Free text; validated identifiers only, so it never holds a quote of its own
    /// beyond the ones the renderer escapes.
    pub comment: Option<String>,
    pub target: IptTarget,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_iface: Option<IfaceMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_iface: Option<IfaceMatch>,
    /// `-p PROTO`; with `sport`/`dport` also `-m PROTO`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<L4Proto>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<PortRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<PortRange>,
    /// `-m multiport --dports P1,P2,…` (at most 15 ports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiport_dports: Option<Vec<u16>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addrtype_dst: Option<AddrType>,
    /// `-m conntrack --ctstate S1,S2`, printed in iptables' order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctstate: Option<Vec<CtState>>,
    /// `-m mark --mark VALUE/MASK`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark: Option<Mark>,
    /// Further match tokens given by the user (portmap `conditionsV4`), each validated to
    /// be one plain token; written after the typed matches, never parsed back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Vec<String>>,
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
    /// `-I CHAIN 1 RULE`: the rule goes first.
    Insert {
        chain: String,
        rule: IptRule,
    },
    /// `-D CHAIN SPEC` with a rule spec exactly as `iptables -S` printed it: for rules
    /// that must go (they jump to a chain being removed) but hold options ipcni does not
    /// model. The spec is observed output, one line, no control characters.
    DeleteObserved {
        chain: String,
        spec: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NftFamily {
    Inet,
    Bridge,
    /// `ip`: IPv4 only.
    Ip,
    /// `ip6`: IPv6 only.
    Ip6,
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
    /// An `ip` (IPv4) or `ip6` table.
    pub fn of_family(family: Family, name: &str) -> NftTable {
        let family = if family == Family::V4 { NftFamily::Ip } else { NftFamily::Ip6 };
        NftTable { family, name: name.to_string() }
    }
}

impl NftFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            NftFamily::Inet => "inet",
            NftFamily::Bridge => "bridge",
            NftFamily::Ip => "ip",
            NftFamily::Ip6 => "ip6",
        }
    }
}

impl std::fmt::Display for NftTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.family.as_str(), self.name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BaseChain {
    /// `type nat hook postrouting priority srcnat`
    NatPostrouting,
    /// `type filter hook prerouting priority -300; policy accept` (bridge family)
    BridgeFilterPrerouting,
    /// `type nat hook prerouting priority dstnat`
    NatPrerouting,
    /// `type nat hook output priority -100` (dstnat)
    NatOutput,
    /// `type filter hook forward priority filter`, policy left as it is (accept when new),
    /// so an admin may set the chain's policy to drop.
    FilterForward,
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
    /// `[COND…] fib daddr type local jump CHAIN`; the conditions are validated plain
    /// tokens given by the user (portmap `conditionsV4`).
    FibDaddrLocalJump {
        conditions: Vec<String>,
        chain: String,
    },
    /// `[ip daddr H] PROTO dport P dnat to ADDR:PORT` in an `ip`/`ip6` table.
    Dnat {
        daddr: Option<IpAddr>,
        protocol: L4Proto,
        dport: u16,
        to: SocketAddr,
    },
    /// `ip saddr S ip daddr D masquerade` (S a host address or a network).
    MasqueradeFromTo {
        saddr: IpNetwork,
        daddr: IpAddr,
    },
    /// `ip daddr A ct state established,related accept`
    AcceptEstablishedTo {
        daddr: IpAddr,
    },
    /// `ip saddr A accept`
    AcceptFrom {
        saddr: IpAddr,
    },
    /// `iifname "A" oifname != "A" jump CHAIN` (traffic leaving bridge A elsewhere).
    IifnameNotOifnameJump {
        ifname: String,
        chain: String,
    },
    /// `iifname "A" oifname "A" drop`
    IifnameOifnameDrop {
        ifname: String,
    },
    /// `oifname "A" drop`
    OifnameDrop {
        ifname: String,
    },
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
    /// Deletes the rules of a chain whose comment is exactly `comment` (portmap's bare
    /// container id, which may be a prefix of another id); resolved like the above.
    DeleteRulesWithComment {
        table: NftTable,
        chain: String,
        comment: String,
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
    /// One `nft -f -` script, `setup` then `ops`; each op names its table (and so its
    /// family). `setup` declares what `ops` need (tables, chains, a base chain's own
    /// rules) and is idempotent. Re-declaring an existing chain or flushing one makes the
    /// kernel wait out an RCU grace period (10-16 ms measured, in nft's close(2) of its
    /// netlink socket), while adding rules does not; so the real executor runs `ops` alone
    /// first and the whole script only when they fail for a missing table or chain.
    /// Dry runs and goldens show the whole script.
    Nft {
        ops: Vec<NftOp>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        setup: Vec<NftOp>,
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
        // The order below is the order `iptables -S` prints a rule in, so an observed
        // rule parses and renders back to the same text.
        for (flag, m) in [("-i", &self.in_iface), ("-o", &self.out_iface)] {
            if let Some(m) = m {
                let _ = write!(s, "{} {flag} {}", if m.negated { " !" } else { "" }, m.name);
            }
        }
        if let Some(p) = self.protocol {
            let _ = write!(s, " -p {}", p.as_str());
            if self.sport.is_some() || self.dport.is_some() {
                let _ = write!(s, " -m {}", p.as_str());
            }
            if let Some(sp) = self.sport {
                let _ = write!(s, " --sport {sp}");
            }
            if let Some(dp) = self.dport {
                let _ = write!(s, " --dport {dp}");
            }
        }
        if let Some(c) = &self.comment {
            let _ = write!(s, " -m comment --comment {}", quote_comment(c));
        }
        if let Some(ports) = &self.multiport_dports {
            let list: Vec<String> = ports.iter().map(u16::to_string).collect();
            let _ = write!(s, " -m multiport --dports {}", list.join(","));
        }
        if let Some(AddrType::Local) = self.addrtype_dst {
            s.push_str(" -m addrtype --dst-type LOCAL");
        }
        if let Some(states) = &self.ctstate {
            let mut states = states.clone();
            states.sort();
            states.dedup();
            let list: Vec<&str> = states.iter().map(|c| c.as_str()).collect();
            let _ = write!(s, " -m conntrack --ctstate {}", list.join(","));
        }
        if let Some(m) = self.mark {
            let _ = write!(s, " -m mark --mark {m}");
        }
        for tok in self.extra.iter().flatten() {
            let _ = write!(s, " {tok}");
        }
        match &self.target {
            IptTarget::Accept => s.push_str(" -j ACCEPT"),
            IptTarget::Return => s.push_str(" -j RETURN"),
            IptTarget::Masquerade => s.push_str(" -j MASQUERADE"),
            IptTarget::Jump(c) => {
                let _ = write!(s, " -j {c}");
            }
            IptTarget::Drop => s.push_str(" -j DROP"),
            IptTarget::Dnat(to) => {
                let _ = write!(s, " -j DNAT --to-destination {to}");
            }
            IptTarget::SetXmark(m) => {
                let _ = write!(s, " -j MARK --set-xmark {m}");
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
    /// An nft transaction without setup.
    pub fn nft(ops: Vec<NftOp>) -> FirewallOp {
        FirewallOp::Nft { ops, setup: Vec::new() }
    }

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

    /// Whether the script says what the typed lines say: one line per typed line (plus
    /// `*table` and COMMIT for iptables-restore), and for nft no backslash (nft's quoted
    /// strings have no escapes, so a `\"` would end one early).
    pub fn check_script(&self) -> Result<(), String> {
        let script = self.script();
        let want = match self {
            FirewallOp::Iptables { lines, .. } => lines.len() + 2,
            FirewallOp::Nft { ops, setup } => setup.len() + ops.len(),
        };
        let got = script.matches('\n').count();
        if got != want || script.contains('\r') {
            return Err(format!("{} script has {got} lines for {want} typed lines", self.program()));
        }
        if matches!(self, FirewallOp::Nft { .. }) && script.contains('\\') {
            return Err("nft script holds a backslash: a quoted string would end early".into());
        }
        Ok(())
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
                        IptLine::Insert { chain, rule } => writeln!(s, "-I {chain} 1{}", rule.spec()),
                        IptLine::DeleteObserved { chain, spec } => writeln!(s, "-D {chain} {spec}"),
                    };
                }
                s.push_str("COMMIT\n");
            }
            FirewallOp::Nft { ops, setup } => {
                for op in setup.iter().chain(ops) {
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
                        NftOp::AddChain { table, chain, base: Some(BaseChain::NatPrerouting) } => {
                            writeln!(s, "add chain {table} {chain} {{ type nat hook prerouting priority dstnat ; }}")
                        }
                        NftOp::AddChain { table, chain, base: Some(BaseChain::NatOutput) } => {
                            // nft < 1.0.7 knows `dstnat` only for prerouting: -100 is its value.
                            writeln!(s, "add chain {table} {chain} {{ type nat hook output priority -100 ; }}")
                        }
                        NftOp::AddChain { table, chain, base: Some(BaseChain::FilterForward) } => {
                            writeln!(s, "add chain {table} {chain} {{ type filter hook forward priority filter ; }}")
                        }
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
                        NftOp::DeleteRulesWithComment { table, chain, comment } => {
                            writeln!(
                                s,
                                "# delete each rule of {table} {chain} whose comment is {}",
                                quote_comment(comment)
                            )
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
        NftRule::FibDaddrLocalJump { conditions, chain } => {
            let mut s = String::new();
            for c in conditions {
                s.push_str(c);
                s.push(' ');
            }
            format!("{s}fib daddr type local jump {chain}")
        }
        NftRule::Dnat { daddr, protocol, dport, to } => {
            let mut s = String::new();
            if let Some(d) = daddr {
                let _ = write!(s, "{} daddr {d} ", nft_family(d));
            }
            let _ = write!(s, "{} dport {dport} dnat to {to}", protocol.as_str());
            s
        }
        NftRule::MasqueradeFromTo { saddr, daddr } => {
            let full = if saddr.is_ipv4() { 32 } else { 128 };
            let src = if saddr.prefix() == full { saddr.ip().to_string() } else { host_or_net(saddr) };
            format!("{f} saddr {src} {f} daddr {daddr} masquerade", f = nft_family(daddr))
        }
        NftRule::AcceptEstablishedTo { daddr } => {
            format!("{} daddr {daddr} ct state established,related accept", nft_family(daddr))
        }
        NftRule::AcceptFrom { saddr } => format!("{} saddr {saddr} accept", nft_family(saddr)),
        NftRule::IifnameNotOifnameJump { ifname, chain } => {
            format!("iifname {q} oifname != {q} jump {chain}", q = quote_comment(ifname))
        }
        NftRule::IifnameOifnameDrop { ifname } => format!("iifname {q} oifname {q} drop", q = quote_comment(ifname)),
        NftRule::OifnameDrop { ifname } => format!("oifname {} drop", quote_comment(ifname)),
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
                        ..IptRule::default()
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
        let op = FirewallOp::nft(vec![NftOp::AddRule {
            table: NftTable::inet("t"),
            chain: "c".into(),
            rule: NftRule::Masquerade { saddr: "fd00::5".parse().unwrap(), daddr_not: "fd00::5/64".parse().unwrap() },
            comment: None,
        }]);
        assert_eq!(op.script(), "add rule inet t c ip6 saddr fd00::5 ip6 daddr != fd00::/64 masquerade\n");
    }

    #[test]
    fn iptables_matches_render_in_iptables_s_order() {
        let rule = IptRule {
            src: Some("10.88.0.2/24".parse().unwrap()),
            in_iface: Some(IfaceMatch { name: "cni0".into(), negated: false }),
            out_iface: Some(IfaceMatch { name: "cni0".into(), negated: true }),
            protocol: Some(L4Proto::Tcp),
            dport: Some(PortRange::single(8080)),
            ctstate: Some(vec![CtState::Established, CtState::Related]),
            mark: Some(Mark { value: 0x2000, mask: 0x2000 }),
            extra: Some(vec!["-m".into(), "set".into()]),
            target: IptTarget::Dnat("[fd00::2]:80".parse().unwrap()),
            ..IptRule::default()
        };
        assert_eq!(
            rule.spec(),
            " -s 10.88.0.0/24 -i cni0 ! -o cni0 -p tcp -m tcp --dport 8080 -m conntrack --ctstate RELATED,ESTABLISHED \
             -m mark --mark 0x2000/0x2000 -m set -j DNAT --to-destination [fd00::2]:80"
        );
        let entry = IptRule {
            protocol: Some(L4Proto::Udp),
            comment: Some("c".into()),
            multiport_dports: Some(vec![53, 8080]),
            target: IptTarget::SetXmark(Mark { value: 1, mask: 1 }),
            ..IptRule::default()
        };
        assert_eq!(
            entry.spec(),
            " -p udp -m comment --comment \"c\" -m multiport --dports 53,8080 -j MARK --set-xmark 0x1/0x1"
        );
    }

    #[test]
    fn nft_portmap_rules_render_per_family() {
        let t = NftTable::of_family(Family::V6, "cni_hostport");
        let op = FirewallOp::nft(vec![
            NftOp::AddRule {
                table: t.clone(),
                chain: "hostports".into(),
                rule: NftRule::Dnat {
                    daddr: Some("::1".parse().unwrap()),
                    protocol: L4Proto::Sctp,
                    dport: 8080,
                    to: "[fd00::2]:80".parse().unwrap(),
                },
                comment: Some("x".into()),
            },
            NftOp::AddRule {
                table: t,
                chain: "masquerading".into(),
                rule: NftRule::MasqueradeFromTo { saddr: "::/0".parse().unwrap(), daddr: "fd00::2".parse().unwrap() },
                comment: None,
            },
        ]);
        assert_eq!(
            op.script(),
            "add rule ip6 cni_hostport hostports ip6 daddr ::1 sctp dport 8080 dnat to [fd00::2]:80 comment \"x\"\n\
             add rule ip6 cni_hostport masquerading ip6 saddr ::/0 ip6 daddr fd00::2 masquerade\n"
        );
    }
}
