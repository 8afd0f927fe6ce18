//! Rendering steps to commands: argv for exec, lines for `ip -batch -`, and paste-able
//! shell text for `--dry-run`.

use std::path::Path;

use super::{LinkAdd, Netns, Op, RouteMode, RouteScope, RouteSpec};

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub ns: Netns,
    pub tool: Tool,
    pub program: &'static str,
    /// Arguments after the program: for Ip and Bridge, exactly one batch line's tokens.
    pub args: Vec<String>,
    pub stdin: Option<String>,
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

    pub fn batch_line(&self) -> String {
        self.args.join(" ")
    }

    pub fn to_shell(&self) -> String {
        self.to_shell_noted("")
    }

    /// Shell text with a trailing `  # note` on the command line itself (before a
    /// heredoc body, so the heredoc still ends at its EOF line).
    pub fn to_shell_noted(&self, note: &str) -> String {
        if self.tool == Tool::Wait {
            return format!("# {}", self.args.join(" "));
        }
        let line = self.argv().iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ");
        match &self.stdin {
            None => format!("{line}{note}"),
            Some(script) => format!("{line} <<'EOF'{note}\n{script}EOF"),
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
        Op::LinkSet(l) => {
            let mut a = s(&["link", "set", "dev", &l.dev]);
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
    };
    Rendered { ns: ns.clone(), tool, program, args, stdin }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

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
}
