//! Rendering steps to commands: argv for exec, lines for `ip -batch -`, and paste-able
//! shell text for `--dry-run`.

use std::path::Path;

use super::{LinkAdd, Netns, Op, Qdisc, QdiscParent, RouteMode, RouteScope, RouteSpec, RuleSpec, TcFilter};

/// The program a step is rendered for. `Ip` and `Bridge` steps of one namespace are
/// batched; the others run on their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Ip,
    Bridge,
    /// Written to /proc/sys by the executor; shown as `sysctl -w`.
    Sysctl,
    Firewall,
    /// Polled by the executor; shown as a comment.
    Wait,
    /// A process of its own, run as rendered (e.g. `runcon CONTEXT ip …`).
    Exec,
    /// ipcni's own state files, written by the executor; shown as `install` / `rm`.
    State,
    /// Traffic control; consecutive steps of one namespace run as one `tc -batch -`.
    Tc,
}

/// How a step names the plugin's own network namespace as the target of a move
/// (`ip link set … netns`): a child run from inside a container namespace cannot name
/// it by a path of its own, so the executor hands every such child this descriptor,
/// opened on the plugin's /proc/self/ns/net, and the shell form opens it the same way
/// (`3</proc/self/ns/net`).
pub const HOST_NETNS_FD: i32 = 3;
pub const HOST_NETNS_ARG: &str = "/proc/self/fd/3";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub ns: Netns,
    pub tool: Tool,
    pub program: &'static str,
    /// Arguments after the program: for Ip and Bridge, exactly one batch line's tokens.
    pub args: Vec<String>,
    pub stdin: Option<String>,
    /// The process needs fd HOST_NETNS_FD open on the plugin's own netns.
    pub host_netns_fd: bool,
}

impl Rendered {
    /// The full argv, `nsenter --net=PATH` included for container steps.
    pub fn argv(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Netns::Container(p) = &self.ns {
            v.push("nsenter".to_string());
            v.push(format!("--net={}", p.display()));
        }
        v.push(self.program.to_string());
        v.extend(self.args.iter().cloned());
        v
    }

    /// The args as one batch line. An empty argument (`alias ""` clears an alias) is
    /// written as `""`, which the batch parser reads as an empty token.
    pub fn batch_line(&self) -> String {
        self.args.iter().map(|a| if a.is_empty() { "\"\"" } else { a.as_str() }).collect::<Vec<_>>().join(" ")
    }

    pub fn to_shell(&self) -> String {
        self.to_shell_noted("")
    }

    /// Whether the step reaches its tool exactly as typed: no NUL anywhere (argv, batch
    /// lines and scripts are C strings), and for `ip`/`bridge`/`tc` a batch line that
    /// iproute2's reader splits back into `args` (getcmdline cuts the line at the first
    /// `#`; makeargs splits on " \t\r\n" and reads a word that starts with ' or " up to
    /// the same quote). Config values are validated long before; this catches names read
    /// back from the kernel, which allows `#`, quotes and control characters in interface
    /// names (a container can name its links so).
    pub fn check_faithful(&self) -> Result<(), String> {
        if let Some(a) = self.args.iter().chain(self.stdin.as_ref()).find(|a| a.contains('\0')) {
            return Err(format!("argument {a:?} holds a NUL byte"));
        }
        if !matches!(self.tool, Tool::Ip | Tool::Bridge | Tool::Tc) {
            return Ok(());
        }
        let line = self.batch_line();
        if line.contains(['\n', '\r']) {
            return Err(format!("batch line {line:?} holds a line break"));
        }
        if batch_tokens(&line).as_deref() != Some(self.args.as_slice()) {
            let bad = self.args.iter().find(|a| a.is_empty() || a.contains(|c: char| " \t#'\"".contains(c)));
            return Err(format!(
                "argument {:?} cannot be written to an {} batch line",
                bad.unwrap_or(&line),
                self.program
            ));
        }
        Ok(())
    }

    /// Shell text with a trailing `  # note` on the command line itself (before a
    /// heredoc body, so the heredoc still ends at its EOF line).
    pub fn to_shell_noted(&self, note: &str) -> String {
        if self.tool == Tool::Wait {
            return format!("# {}", self.args.join(" "));
        }
        let mut line = self.argv().iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ");
        if self.host_netns_fd {
            line.push_str(&format!(" {HOST_NETNS_FD}</proc/self/ns/net"));
        }
        match &self.stdin {
            None => format!("{line}{note}"),
            Some(script) => format!("{line} <<'EOF'{note}\n{script}EOF"),
        }
    }
}

/// The words iproute2's batch reader makes of `line`; None when a quote is unterminated.
fn batch_tokens(line: &str) -> Option<Vec<String>> {
    let line = line.split('#').next().unwrap_or("");
    let ws = |c: char| matches!(c, ' ' | '\t' | '\r' | '\n');
    let mut out = Vec::new();
    let mut rest = line;
    loop {
        rest = rest.trim_start_matches(ws);
        let Some(first) = rest.chars().next() else { return Some(out) };
        if first == '\'' || first == '"' {
            let end = rest[1..].find(first)? + 1;
            out.push(rest[1..end].to_string());
            rest = &rest[end + 1..];
        } else {
            let end = rest.find(ws).unwrap_or(rest.len());
            out.push(rest[..end].to_string());
            rest = &rest[(end + 1).min(rest.len())..];
        }
    }
}

/// Quotes a word for a POSIX shell only when it needs it.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if plain { s.to_string() } else { format!("'{}'", s.replace('\'', r"'\''")) }
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn route_args(r: &RouteSpec, out: &mut Vec<String>) {
    out.push(r.dst.to_string());
    if let Some(via) = r.via {
        out.extend(["via".into(), via.to_string()]);
    }
    out.extend(["dev".into(), r.dev.clone()]);
    if let Some(src) = r.src {
        out.extend(["src".into(), src.to_string()]);
    }
    if let Some(scope) = r.scope {
        let s = match scope {
            RouteScope::Global => "global".to_string(),
            RouteScope::Link => "link".to_string(),
            RouteScope::Host => "host".to_string(),
            RouteScope::Other(n) => n.to_string(),
        };
        out.extend(["scope".into(), s]);
    }
    if let Some(m) = r.metric {
        out.extend(["metric".into(), m.to_string()]);
    }
    if let Some(t) = r.table {
        out.extend(["table".into(), t.to_string()]);
    }
    if let Some(m) = r.mtu {
        out.extend(["mtu".into(), m.to_string()]);
    }
    if let Some(m) = r.advmss {
        out.extend(["advmss".into(), m.to_string()]);
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// `[mtu M] [address MAC] [netns PATH]` of a new link, before its `type`.
fn new_link_attrs(a: &mut Vec<String>, mtu: Option<u32>, mac: Option<&str>, netns: Option<&Path>) {
    if let Some(m) = mtu {
        a.extend(["mtu".into(), m.to_string()]);
    }
    if let Some(m) = mac {
        a.extend(["address".into(), m.to_string()]);
    }
    if let Some(p) = netns {
        a.extend(["netns".into(), path(p)]);
    }
}

/// `rule add|del from SRC table T [priority P]`: an IPv4 rule is a batch line; an IPv6
/// rule runs as its own `ip -6 rule …` (`ip rule` takes the family only from -6, which a
/// batch line cannot carry).
fn rule_rendered(verb: &str, r: &RuleSpec) -> (Tool, &'static str, Vec<String>, Option<String>) {
    let mut a = s(&["rule", verb, "from", &r.src.to_string(), "table", &r.table.to_string()]);
    if let Some(p) = r.priority {
        a.extend(["priority".into(), p.to_string()]);
    }
    if r.src.is_ipv6() {
        a.insert(0, "-6".into());
        (Tool::Exec, "ip", a, None)
    } else {
        (Tool::Ip, "ip", a, None)
    }
}

pub fn render(ns: &Netns, op: &Op) -> Rendered {
    let (tool, program, args, stdin): (Tool, &'static str, Vec<String>, Option<String>) = match op {
        Op::LinkAdd(LinkAdd::Bridge { name, mtu, mac, vlan_filtering }) => {
            let mut a = s(&["link", "add", "name", name]);
            if let Some(m) = mtu {
                a.extend(["mtu".into(), m.to_string()]);
            }
            if let Some(m) = mac {
                a.extend(["address".into(), m.clone()]);
            }
            a.extend(s(&["type", "bridge"]));
            if *vlan_filtering {
                a.extend(s(&["vlan_filtering", "1"]));
            }
            (Tool::Ip, "ip", a, None)
        }
        Op::LinkAdd(LinkAdd::Veth { name, mtu, mac, peer, peer_mac, peer_netns }) => {
            let mut a = s(&["link", "add", "name", name]);
            if let Some(m) = mtu {
                a.extend(["mtu".into(), m.to_string()]);
            }
            if let Some(m) = mac {
                a.extend(["address".into(), m.clone()]);
            }
            a.extend(s(&["type", "veth", "peer", "name", peer]));
            if let Some(m) = mtu {
                a.extend(["mtu".into(), m.to_string()]);
            }
            if let Some(m) = peer_mac {
                a.extend(["address".into(), m.clone()]);
            }
            if let Some(p) = peer_netns {
                a.extend(["netns".into(), path(p)]);
            }
            (Tool::Ip, "ip", a, None)
        }
        Op::LinkAdd(LinkAdd::Macvlan { name, master, mode, mtu, mac, bcqueuelen, netns }) => {
            let mut a = s(&["link", "add", "link", master, "name", name]);
            new_link_attrs(&mut a, *mtu, mac.as_deref(), netns.as_deref());
            a.extend(s(&["type", "macvlan", "mode", mode.as_str()]));
            if let Some(n) = bcqueuelen {
                a.extend(["bcqueuelen".into(), n.to_string()]);
            }
            (Tool::Ip, "ip", a, None)
        }
        Op::LinkAdd(LinkAdd::Ipvlan { name, master, mode, mtu, netns }) => {
            let mut a = s(&["link", "add", "link", master, "name", name]);
            new_link_attrs(&mut a, *mtu, None, netns.as_deref());
            a.extend(s(&["type", "ipvlan", "mode", mode.as_str()]));
            (Tool::Ip, "ip", a, None)
        }
        Op::LinkAdd(LinkAdd::Vlan { name, master, vlan_id, mtu, netns }) => {
            let mut a = s(&["link", "add", "link", master, "name", name]);
            new_link_attrs(&mut a, *mtu, None, netns.as_deref());
            a.extend(s(&["type", "vlan", "id", &vlan_id.to_string()]));
            (Tool::Ip, "ip", a, None)
        }
        Op::LinkAdd(LinkAdd::Dummy { name, mtu, mac }) => {
            let mut a = s(&["link", "add", "name", name]);
            new_link_attrs(&mut a, *mtu, mac.as_deref(), None);
            a.extend(s(&["type", "dummy"]));
            (Tool::Ip, "ip", a, None)
        }
        Op::LinkSet(l) => {
            let mut a = s(&["link", "set", "dev", &l.dev]);
            if let Some(n) = &l.name {
                a.extend(["name".into(), n.clone()]);
            }
            match &l.netns {
                None => {}
                Some(Netns::Host) => a.extend(["netns".into(), HOST_NETNS_ARG.into()]),
                Some(Netns::Container(p)) => a.extend(["netns".into(), path(p)]),
            }
            if let Some(al) = &l.alias {
                a.extend(["alias".into(), al.clone()]);
            }
            if let Some(m) = &l.master {
                a.extend(["master".into(), m.clone()]);
            }
            if let Some(m) = l.mtu {
                a.extend(["mtu".into(), m.to_string()]);
            }
            if let Some(m) = &l.mac {
                a.extend(["address".into(), m.clone()]);
            }
            if let Some(p) = l.promisc {
                a.extend(["promisc".into(), on_off(p).into()]);
            }
            if let Some(m) = l.allmulti {
                a.extend(["allmulticast".into(), on_off(m).into()]);
            }
            if let Some(q) = l.txqlen {
                a.extend(["txqueuelen".into(), q.to_string()]);
            }
            if let Some(up) = l.up {
                a.push(if up { "up" } else { "down" }.into());
            }
            (Tool::Ip, "ip", a, None)
        }
        Op::LinkDel { dev } => (Tool::Ip, "ip", s(&["link", "del", "dev", dev]), None),
        Op::BridgePort(p) => (
            Tool::Ip,
            "ip",
            s(&[
                "link",
                "set",
                "dev",
                &p.dev,
                "type",
                "bridge_slave",
                "hairpin",
                on_off(p.hairpin),
                "isolated",
                on_off(p.isolated),
            ]),
            None,
        ),
        Op::BridgeVlanAdd { dev, vid, pvid, untagged } => {
            let mut a = s(&["vlan", "add", "dev", dev, "vid", &vid.to_string()]);
            if *pvid {
                a.push("pvid".into());
            }
            if *untagged {
                a.push("untagged".into());
            }
            a.push("master".into());
            (Tool::Bridge, "bridge", a, None)
        }
        Op::BridgeVlanDel { dev, vid } => {
            (Tool::Bridge, "bridge", s(&["vlan", "del", "dev", dev, "vid", &vid.to_string()]), None)
        }
        Op::AddrAdd { dev, addr } => (Tool::Ip, "ip", s(&["addr", "add", &addr.to_string(), "dev", dev]), None),
        Op::AddrDel { dev, addr } => (Tool::Ip, "ip", s(&["addr", "del", &addr.to_string(), "dev", dev]), None),
        Op::RouteAdd { mode, route } => {
            // No -4/-6: batch lines take no global options; the family follows from dst.
            let verb = match mode {
                RouteMode::Add => "add",
                RouteMode::Prepend => "prepend",
                RouteMode::Replace => "replace",
            };
            let mut a = s(&["route", verb]);
            route_args(route, &mut a);
            (Tool::Ip, "ip", a, None)
        }
        Op::RouteDel { route } => {
            let mut a = s(&["route", "del"]);
            route_args(route, &mut a);
            (Tool::Ip, "ip", a, None)
        }
        Op::Sysctl(sc) => {
            (Tool::Sysctl, "sysctl", vec!["-qw".into(), format!("{}={}", sc.path.join("/"), sc.value)], None)
        }
        Op::Firewall(f) => (Tool::Firewall, f.program(), f.args(), Some(f.script())),
        Op::WaitOperUp { dev } => (Tool::Wait, "", s(&["wait", "until", dev, "is", "oper-up"]), None),
        Op::WaitDad { dev } => (Tool::Wait, "", s(&["wait", "until", "IPv6", "DAD", "finishes", "on", dev]), None),
        Op::LinkAdd(LinkAdd::Tuntap { name, multi_queue, vnet_hdr, owner, group, selinux_context }) => {
            let mut a = s(&["tuntap", "add", "mode", "tap", "name", name]);
            if *multi_queue {
                a.push("multi_queue".into());
            }
            if *vnet_hdr {
                a.push("vnet_hdr".into());
            }
            if let Some(u) = owner {
                a.extend(["user".into(), u.to_string()]);
            }
            if let Some(g) = group {
                a.extend(["group".into(), g.to_string()]);
            }
            match selinux_context {
                None => (Tool::Ip, "ip", a, None),
                Some(ctx) => {
                    let mut v = vec![ctx.clone(), "ip".to_string()];
                    v.extend(a);
                    (Tool::Exec, "runcon", v, None)
                }
            }
        }
        Op::LinkAdd(LinkAdd::Vxlan { name, vni, mtu, mac, local, group, dev, dstport, learning }) => {
            let mut a = s(&["link", "add", "name", name]);
            new_link_attrs(&mut a, *mtu, mac.as_deref(), None);
            a.extend(s(&["type", "vxlan", "id", &vni.to_string()]));
            if let Some(l) = local {
                a.extend(["local".into(), l.to_string()]);
            }
            if let Some(g) = group {
                a.extend(["group".into(), g.to_string()]);
            }
            if let Some(d) = dev {
                a.extend(["dev".into(), d.clone()]);
            }
            a.extend(["dstport".into(), dstport.to_string()]);
            if !*learning {
                a.push("nolearning".into());
            }
            (Tool::Ip, "ip", a, None)
        }
        Op::FdbAppend { dev, mac, dst } => {
            (Tool::Bridge, "bridge", s(&["fdb", "append", mac, "dev", dev, "dst", &dst.to_string()]), None)
        }
        Op::FdbDel { dev, mac, dst } => {
            (Tool::Bridge, "bridge", s(&["fdb", "del", mac, "dev", dev, "dst", &dst.to_string()]), None)
        }
        Op::StateWrite { path: p, contents } => {
            (Tool::State, "install", s(&["-D", "-m", "0600", "/dev/stdin", &path(p)]), Some(format!("{contents}\n")))
        }
        Op::StateRemove { path: p } => (Tool::State, "rm", s(&["-f", &path(p)]), None),
        Op::ConntrackDelete { family, protocol, dport } => {
            let fam = if *family == super::firewall::Family::V4 { "ipv4" } else { "ipv6" };
            let a = s(&["-D", "-f", fam, "-p", protocol.as_str(), "--dport", &dport.to_string()]);
            (Tool::Exec, "conntrack", a, None)
        }
        Op::LinkAdd(LinkAdd::Ifb { name, mtu, mac, txqlen }) => {
            let mut a = s(&["link", "add", "name", name]);
            new_link_attrs(&mut a, *mtu, mac.as_deref(), None);
            if let Some(q) = txqlen {
                a.extend(["txqueuelen".into(), q.to_string()]);
            }
            a.extend(s(&["type", "ifb"]));
            (Tool::Ip, "ip", a, None)
        }
        Op::LinkAdd(LinkAdd::Vrf { name, table }) => {
            (Tool::Ip, "ip", s(&["link", "add", "name", name, "type", "vrf", "table", &table.to_string()]), None)
        }
        Op::LinkNoMaster { dev } => (Tool::Ip, "ip", s(&["link", "set", "dev", dev, "nomaster"]), None),
        Op::RuleAdd { rule } => rule_rendered("add", rule),
        Op::RuleDel { rule } => rule_rendered("del", rule),
        Op::QdiscAdd { dev, qdisc } => {
            let mut a = s(&["qdisc", "add", "dev", dev]);
            match qdisc {
                Qdisc::Tbf { rate, burst, limit } => a.extend([
                    "root".into(),
                    "handle".into(),
                    "1:".into(),
                    "tbf".into(),
                    "rate".into(),
                    format!("{}bit", rate.saturating_mul(8)),
                    "burst".into(),
                    burst.to_string(),
                    "limit".into(),
                    limit.to_string(),
                ]),
                Qdisc::Ingress => a.extend(s(&["handle", "ffff:", "ingress"])),
            }
            (Tool::Tc, "tc", a, None)
        }
        Op::QdiscDel { dev, parent } => {
            let which = match parent {
                QdiscParent::Root => "root",
                QdiscParent::Ingress => "ingress",
            };
            (Tool::Tc, "tc", s(&["qdisc", "del", "dev", dev, which]), None)
        }
        Op::FilterAdd { dev, filter: TcFilter::RedirectAll { to } } => (
            Tool::Tc,
            "tc",
            s(&[
                "filter", "add", "dev", dev, "parent", "ffff:", "protocol", "all", "prio", "1", "u32", "match", "u32",
                "0", "0", "flowid", "1:1", "action", "mirred", "egress", "redirect", "dev", to,
            ]),
            None,
        ),
    };
    let host_netns_fd = matches!(op, Op::LinkSet(l) if l.netns == Some(Netns::Host));
    Rendered { ns: ns.clone(), tool, program, args, stdin, host_netns_fd }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    #[test]
    fn an_empty_argument_is_an_empty_token_in_a_batch_line() {
        let op = Op::LinkSet(LinkSet { alias: Some(String::new()), ..LinkSet::dev("hd0") });
        let r = render(&Netns::Host, &op);
        assert_eq!(r.batch_line(), r#"link set dev hd0 alias """#);
        assert_eq!(r.to_shell(), "ip link set dev hd0 alias ''");
    }

    #[test]
    fn names_a_batch_line_cannot_carry_are_not_faithful() {
        let del = |dev: &str| render(&Netns::Host, &Op::LinkDel { dev: dev.into() }).check_faithful();
        for ok in ["eth0", "a\"b", "é"] {
            assert!(del(ok).is_ok(), "{ok:?}");
        }
        for bad in ["#", "a#b", "\"x", "'x", "a b", "a\tb", "a\nb", "a\0b"] {
            assert!(del(bad).is_err(), "{bad:?}");
        }
        let alias = Op::LinkSet(LinkSet { alias: Some(String::new()), ..LinkSet::dev("hd0") });
        assert!(render(&Netns::Host, &alias).check_faithful().is_ok());
    }

    #[test]
    fn container_steps_go_through_nsenter_and_quote_for_the_shell() {
        let ns = Netns::Container("/run/netns/my ns".into());
        let r = render(&ns, &Op::LinkSet(LinkSet::up("eth0")));
        assert_eq!(r.to_shell(), "nsenter '--net=/run/netns/my ns' ip link set dev eth0 up");
        assert_eq!(r.batch_line(), "link set dev eth0 up");
    }

    #[test]
    fn veth_peer_goes_straight_into_the_container() {
        let op = Op::LinkAdd(LinkAdd::Veth {
            name: "veth01".into(),
            mtu: Some(1400),
            mac: Some("02:00:00:00:00:01".into()),
            peer: "eth0".into(),
            peer_mac: None,
            peer_netns: Some("/proc/1/ns/net".into()),
        });
        assert_eq!(
            render(&Netns::Host, &op).batch_line(),
            "link add name veth01 mtu 1400 address 02:00:00:00:00:01 type veth peer name eth0 mtu 1400 netns /proc/1/ns/net"
        );
    }

    #[test]
    fn sysctl_paths_keep_dotted_interface_names() {
        let r = render(&Netns::Host, &Op::Sysctl(Sysctl::iface("ipv6", "eth0.100", "accept_ra", "0")));
        assert_eq!(r.to_shell(), "sysctl -qw net/ipv6/conf/eth0.100/accept_ra=0");
    }

    #[test]
    fn links_on_a_master_are_created_straight_into_the_container() {
        let netns = Some(std::path::PathBuf::from("/run/netns/c1"));
        let mv = Op::LinkAdd(LinkAdd::Macvlan {
            name: "tmp0".into(),
            master: "eth0".into(),
            mode: MacvlanMode::Passthru,
            mtu: Some(1400),
            mac: None,
            bcqueuelen: Some(100),
            netns: netns.clone(),
        });
        assert_eq!(
            render(&Netns::Host, &mv).batch_line(),
            "link add link eth0 name tmp0 mtu 1400 netns /run/netns/c1 type macvlan mode passthru bcqueuelen 100"
        );
        let ipv = Op::LinkAdd(LinkAdd::Ipvlan {
            name: "tmp0".into(),
            master: "eth0".into(),
            mode: IpvlanMode::L3s,
            mtu: None,
            netns: netns.clone(),
        });
        assert_eq!(
            render(&Netns::Host, &ipv).batch_line(),
            "link add link eth0 name tmp0 netns /run/netns/c1 type ipvlan mode l3s"
        );
        let vl =
            Op::LinkAdd(LinkAdd::Vlan { name: "tmp0".into(), master: "eth0".into(), vlan_id: 0, mtu: None, netns });
        assert_eq!(
            render(&Netns::Host, &vl).batch_line(),
            "link add link eth0 name tmp0 netns /run/netns/c1 type vlan id 0"
        );
        let dm = Op::LinkAdd(LinkAdd::Dummy { name: "eth0".into(), mtu: None, mac: Some("02:00:00:00:00:01".into()) });
        assert_eq!(render(&Netns::Host, &dm).batch_line(), "link add name eth0 address 02:00:00:00:00:01 type dummy");
        let rename = Op::LinkSet(LinkSet { name: Some("eth0".into()), ..LinkSet::dev("tmp0") });
        assert_eq!(render(&Netns::Host, &rename).batch_line(), "link set dev tmp0 name eth0");
    }
}
