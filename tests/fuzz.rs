//! Hostile-input fuzzing with a fixed budget, run by `cargo test`.
//!
//! Seeds: every golden case under tests/golden/*/ (config.json, env, observed.json).
//! Each execution takes one seed and deterministically mutates it with a seeded
//! xorshift PRNG: structure-aware JSON mutations of the config (drop, duplicate, rename
//! and retype keys; hostile strings and numbers; deep nesting; huge arrays), mutations of
//! the CNI_* environment, sometimes another plugin, and raw byte mutations of the stdin
//! bytes. The mutant runs in-process exactly as tests/golden.rs runs a case (parse env and
//! config, then `skel::dispatch` with a fixture observer and a `Recording` executor), as a
//! dry run: nothing is written, reserved or executed.
//!
//! Every execution must hold:
//! - no panic, and no code 999 (an internal error is always a bug);
//! - the outcome is a result (valid JSON) or a CNI error whose code is a spec/ipcni code
//!   and whose msg is not empty;
//! - no injection: every recorded step (and its undo) renders so that its `ip`/`bridge`/
//!   `tc` batch line, re-tokenized as iproute2's batch reader does (getcmdline strips from
//!   `#`, makeargs splits on " \t\r\n" with '…'/"…" words), yields exactly the step's
//!   arguments, with no newline or NUL; every iptables-restore / nft script has exactly one
//!   line per typed line/op (plus `*table` and COMMIT) and no value ends a token, a quoted
//!   string or a comment early; sysctl and state paths cannot climb out of their roots.
//!
//! Budget: IPCNI_FUZZ_EXECS (default below), base seed IPCNI_FUZZ_SEED. A failure prints
//! the seed case and the mutant; `IPCNI_FUZZ_ONLY=N` replays execution N alone.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipcni::delegate::Delegator;
use ipcni::exec::Recording;
use ipcni::exec::observe::{FixtureObserver, Observer, Query};
use ipcni::plan::firewall::NftOp;
use ipcni::plan::{FirewallOp, Netns, Op, Step, Tool, render};
use ipcni::skel::{Io, NetnsState, dispatch};
use ipcni::spec::{CniEnv, CniError, NetConf};
use serde_json::{Value, json};

const DEFAULT_EXECS: u64 = 40_000;
const DEFAULT_SEED: u64 = 0x1bc9_7c0f_fee5_eed5;

/// Codes a plugin may print: the spec's and ipcni's own (spec/error.rs). 999 is left out
/// on purpose: it means a bug.
const KNOWN_CODES: [u32; 15] = [1, 2, 3, 4, 5, 6, 7, 8, 11, 50, 51, 100, 101, 102, 103];

// ---------------------------------------------------------------------------------------
// PRNG

/// xorshift64*, seeded through splitmix64 so nearby seeds give unrelated streams.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next() % den < num
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

fn pick_bytes<'a>(rng: &mut Rng, v: &[&'a [u8]]) -> &'a [u8] {
    v[rng.below(v.len())]
}

// ---------------------------------------------------------------------------------------
// Hostile values

fn hostile_strings() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        " ",
        "a b",
        "eth0 ",
        " eth0",
        "eth0\nlink del dev lo",
        "eth0\n",
        "\n",
        "\r",
        "x\r\ny",
        "\t",
        "a\tb",
        ";ip link del x",
        "br0;ip link del x",
        "x;y",
        "#",
        "a#b",
        "eth0#",
        "\"",
        "'",
        "a\"b",
        "a'b",
        "\" ; flush ruleset ; \"",
        "x\" -j ACCEPT -m comment --comment \"y",
        "{",
        "}",
        "a{b}",
        "\\",
        "a\\",
        "a\\\"b",
        "\0",
        "a\0b",
        "\x07",
        "\x1b[31m",
        "\x7f",
        "/",
        "a/b",
        "../../etc",
        "..",
        ".",
        "-",
        "-x",
        "--help",
        "-j",
        "!",
        "0123456789abcdef",
        "0123456789abcde",
        "é",
        "ünïcödé-if",
        "\u{202e}eth0",
        "\u{2028}",
        "\u{85}",
        "\u{a0}",
        "💥",
        "\u{feff}eth0",
        "eth0:1",
        "eth0.100",
        "lo",
        "eth0",
        "cni0",
        "10.0.0.1",
        "10.0.0.1/33",
        "10.0.0.0/0",
        "0.0.0.0/0",
        "10.0.0.1/32",
        "300.1.1.1",
        "::1",
        "::/0",
        "fd00::1/128",
        "fe80::1%eth0",
        "10.1.0.0/16 via 1.1.1.1",
        "00:00:00:00:00:00",
        "ff:ff:ff:ff:ff:ff",
        "02:00:00:00:00:01 ",
        "0",
        "-1",
        "65536",
        "99999999999999999999",
        "1e400",
        "NaN",
        "0x10",
        "true",
        "null",
        "tcp",
        "TCP",
        "icmp",
        "net.ipv4.conf.all.forwarding",
        "net.ipv4.conf.IFNAME.rp_filter",
        "net/ipv4/../../../kernel/x",
        "net.ipv4.conf.eth0/../../x",
        "net.core..x",
        "kernel.hostname",
        "%s%n",
        "$(reboot)",
        "`id`",
        "*",
        "iptables",
        "nftables",
        "0.1.0",
        "0.3.1",
        "1.1.0",
        "9.9.9",
        "l2",
        "bridge",
        "passthru",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("a".repeat(16));
    v.push("b".repeat(300));
    v.push("é".repeat(8));
    v.push(format!("{}\n", "x".repeat(15)));
    v.push("A".repeat(70_000));
    v
}

fn hostile_number(rng: &mut Rng) -> Value {
    let choices = [
        json!(0),
        json!(-1),
        json!(1),
        json!(65535),
        json!(65536),
        json!(4094),
        json!(4095),
        json!(4096),
        json!(16777216),
        json!(2147483647),
        json!(2147483648u64),
        json!(4294967295u64),
        json!(4294967296u64),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(1.5),
        json!(-0.5),
        json!(1e300),
        json!(-1e300),
        json!(68),
        json!(67),
        json!(9001),
        json!(32),
        json!(33),
        json!(128),
        json!(129),
    ];
    rng.pick(&choices).clone()
}

// ---------------------------------------------------------------------------------------
// Structure-aware JSON mutation

#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Idx(usize),
}

fn paths(v: &Value) -> Vec<Vec<Seg>> {
    fn walk(v: &Value, cur: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
        if out.len() > 4000 {
            return;
        }
        out.push(cur.clone());
        match v {
            Value::Object(m) => {
                for (k, c) in m {
                    cur.push(Seg::Key(k.clone()));
                    walk(c, cur, out);
                    cur.pop();
                }
            }
            Value::Array(a) => {
                for (i, c) in a.iter().enumerate().take(64) {
                    cur.push(Seg::Idx(i));
                    walk(c, cur, out);
                    cur.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

fn get_mut<'a>(v: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    let mut cur = v;
    for s in path {
        cur = match (s, cur) {
            (Seg::Key(k), Value::Object(m)) => m.get_mut(k)?,
            (Seg::Idx(i), Value::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn nest(v: Value, depth: usize, rng: &mut Rng) -> Value {
    let mut v = v;
    let obj = rng.chance(1, 2);
    for _ in 0..depth {
        v = if obj { json!({ "k": v }) } else { json!([v]) };
    }
    v
}

/// One structural mutation of `root`; `dups` collects text-level duplicate keys to add.
fn mutate_value(root: &mut Value, rng: &mut Rng, hostile: &[String], dups: &mut Vec<(String, Value)>) {
    let all = paths(root);
    // Prefer leaves and named keys a bit: plain uniform choice over every node.
    let path: Vec<Seg> = rng.pick(&all).clone();
    let donor_path = rng.pick(&all).clone();
    let donor = get_mut(root, &donor_path).cloned().unwrap_or(Value::Null);
    let Some(node) = get_mut(root, &path) else { return };
    match rng.below(16) {
        0..=3 => *node = Value::String(rng.pick(hostile).clone()),
        4 => {
            // Splice a hostile piece into a string (or stringify first).
            let base = match &*node {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let piece = rng.pick(hostile).clone();
            let at = rng.below(base.len() + 1);
            let at = (0..=at).rev().find(|&i| base.is_char_boundary(i)).unwrap_or(0);
            *node = Value::String(format!("{}{piece}{}", &base[..at], &base[at..]));
        }
        5 => *node = hostile_number(rng),
        6 => {
            // Retype.
            *node = match (node.clone(), rng.below(6)) {
                (Value::String(s), 0) => {
                    s.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Value::Number).unwrap_or(json!(1))
                }
                (Value::Number(n), 0) => Value::String(n.to_string()),
                (Value::Bool(b), 0) => Value::String(b.to_string()),
                (Value::Object(m), 0) => Value::Array(m.into_iter().map(|(_, v)| v).collect()),
                (Value::Array(a), 0) => {
                    Value::Object(a.into_iter().enumerate().map(|(i, v)| (i.to_string(), v)).collect())
                }
                (_, 1) => Value::Null,
                (_, 2) => Value::Bool(rng.chance(1, 2)),
                (_, 3) => json!({}),
                (_, 4) => json!([]),
                (v, _) => json!([v]),
            }
        }
        7 => {
            // Drop the node from its parent.
            if let Some((last, parent)) = path.split_last()
                && let Some(p) = get_mut(root, parent)
            {
                match (last, p) {
                    (Seg::Key(k), Value::Object(m)) => {
                        m.remove(k);
                    }
                    (Seg::Idx(i), Value::Array(a)) if *i < a.len() => {
                        a.remove(*i);
                    }
                    _ => {}
                }
            }
        }
        8 => {
            // Rename a key to a hostile one.
            if let Some((Seg::Key(k), parent)) = path.split_last()
                && let Some(Value::Object(m)) = get_mut(root, parent)
                && let Some(v) = m.remove(k)
            {
                m.insert(rng.pick(hostile).clone(), v);
            }
        }
        9 => {
            // Add an unknown (or well-known) key to an object.
            let keys = [
                "mtu",
                "master",
                "bridge",
                "device",
                "ipMasq",
                "isGateway",
                "hairpinMode",
                "vlan",
                "mac",
                "promiscMode",
                "sysctl",
                "capabilities",
                "runtimeConfig",
                "portMappings",
                "args",
                "dns",
                "backend",
                "iptablesAdminChainName",
                "ranges",
                "routes",
                "subnet",
                "gateway",
                "rangeStart",
                "rangeEnd",
                "dataDir",
                "resolvConf",
                "conditionsV4",
                "snat",
                "externalSetMarkChain",
                "mode",
                "linkInContainer",
                "deviceID",
                "pciBusID",
                "alias",
                "vni",
                "group",
                "local",
                "port",
            ];
            if let Value::Object(m) = node {
                let key = if rng.chance(1, 3) { rng.pick(hostile).clone() } else { rng.pick(&keys).to_string() };
                let v = match rng.below(4) {
                    0 => Value::String(rng.pick(hostile).clone()),
                    1 => hostile_number(rng),
                    2 => donor,
                    _ => json!([rng.pick(hostile).clone()]),
                };
                m.insert(key, v);
            } else {
                *node = Value::String(rng.pick(hostile).clone());
            }
        }
        10 => {
            let depth = *rng.pick(&[2usize, 10, 63, 64, 65, 130]);
            *node = nest(node.clone(), depth, rng);
        }
        11 => {
            let item = if rng.chance(1, 2) { node.clone() } else { Value::String(rng.pick(hostile).clone()) };
            // Bounded so stacked mutations cannot multiply into gigabytes: at most ~6 MB,
            // past the 4 MiB limit the config parser enforces.
            let size = serde_json::to_vec(&item).map(|v| v.len()).unwrap_or(1).max(1);
            let n = (*rng.pick(&[17usize, 100, 1000, 3000])).min(6_000_000 / size).max(1);
            *node = Value::Array(vec![item; n]);
        }
        12 => {
            if let Value::Array(a) = node {
                match rng.below(3) {
                    0 if !a.is_empty() => {
                        let i = rng.below(a.len());
                        let x = a[i].clone();
                        a.insert(i, x);
                    }
                    1 => a.reverse(),
                    _ => a.truncate(rng.below(a.len() + 1)),
                }
            } else {
                *node = donor;
            }
        }
        13 => *node = donor,
        14 => {
            // A duplicate key, written at the text level (a Value cannot hold one).
            if let Some((Seg::Key(k), _)) = path.split_last() {
                let v = if rng.chance(1, 2) { Value::String(rng.pick(hostile).clone()) } else { node.clone() };
                dups.push((k.clone(), v));
            }
        }
        _ => {
            // Object keys with hostile values in bulk: every string leaf below the node.
            fn each_string(v: &mut Value, f: &mut dyn FnMut(&mut String)) {
                match v {
                    Value::String(s) => f(s),
                    Value::Array(a) => a.iter_mut().for_each(|x| each_string(x, f)),
                    Value::Object(m) => m.values_mut().for_each(|x| each_string(x, f)),
                    _ => {}
                }
            }
            let piece = rng.pick(hostile).clone();
            each_string(node, &mut |s| s.push_str(&piece));
        }
    }
}

/// Writes each duplicate key right before an existing occurrence of `"key":` that starts
/// an object member.
fn add_duplicate_keys(text: &mut Vec<u8>, dups: &[(String, Value)], rng: &mut Rng) {
    for (k, v) in dups {
        let needle = format!("{}:", serde_json::to_string(k).unwrap());
        let hay = String::from_utf8_lossy(text).into_owned();
        let spots: Vec<usize> = hay
            .match_indices(&needle)
            .map(|(i, _)| i)
            .filter(|&i| i > 0 && matches!(hay.as_bytes()[i - 1], b'{' | b','))
            .collect();
        if spots.is_empty() {
            continue;
        }
        let at = *rng.pick(&spots);
        let ins = format!("{needle}{},", serde_json::to_string(v).unwrap());
        text.splice(at..at, ins.into_bytes());
    }
}

fn mutate_bytes(b: &mut Vec<u8>, rng: &mut Rng) {
    let n = b.len();
    match rng.below(11) {
        0 if n > 0 => {
            let i = rng.below(n);
            b[i] ^= 1 << rng.below(8);
        }
        1 if n > 0 => {
            let i = rng.below(n);
            b[i] = *rng.pick(&[0u8, 0xff, b'\n', b'"', b'{', b'[', b']', b'}', b'\\', b',', b':', 0x80, 0xc3]);
        }
        2 if n > 0 => {
            let i = rng.below(n);
            let len = rng.below((n - i).min(64) + 1);
            b.drain(i..i + len);
        }
        3 if n > 0 => {
            let i = rng.below(n);
            let len = rng.below((n - i).min(64) + 1);
            let piece = b[i..i + len].to_vec();
            b.splice(i..i, piece);
        }
        4 => b.truncate(rng.below(n + 1)),
        5 => {
            let i = rng.below(n + 1);
            let piece: &[u8] =
                pick_bytes(rng, &[&b"\xff\xfe"[..], b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x00"]);
            b.splice(i..i, piece.iter().copied());
        }
        6 => {
            // Inside a string: JSON escapes of hostile characters.
            let i = rng.below(n + 1);
            let piece: &[u8] = pick_bytes(
                rng,
                &[&b"\\u0000"[..], b"\\n", b"\\u2028", b"\\ud800", b"\\udc00\\ud800", b"\\\"", b"\\u0085"],
            );
            b.splice(i..i, piece.iter().copied());
        }
        7 => {
            // Replace a run of digits with a huge or odd number.
            let digits: Vec<usize> = (0..n).filter(|&i| b[i].is_ascii_digit()).collect();
            if !digits.is_empty() {
                let i = *rng.pick(&digits);
                let mut j = i;
                while j < n && b[j].is_ascii_digit() {
                    j += 1;
                }
                let piece: &[u8] = pick_bytes(
                    rng,
                    &[
                        &b"123456789012345678901234567890"[..],
                        b"1e999",
                        b"-1e999",
                        b"-0",
                        b"1.0e2",
                        b"18446744073709551616",
                        b"-9223372036854775809",
                        b"00",
                    ],
                );
                b.splice(i..j, piece.iter().copied());
            }
        }
        8 => {
            let depth = *rng.pick(&[65usize, 100_000]);
            let i = rng.below(n + 1);
            let mut piece = vec![b'['; depth];
            piece.extend(std::iter::repeat_n(b']', depth));
            b.splice(i..i, piece);
        }
        9 => {
            let i = rng.below(n + 1);
            let piece: &[u8] =
                pick_bytes(rng, &[&b",\"x\":1"[..], b"}", b"{", b",", b"\"", b"//", b"/*", b"NaN", b"Infinity"]);
            b.splice(i..i, piece.iter().copied());
        }
        _ => {
            // Trailing garbage or a second document.
            let piece: &[u8] = pick_bytes(rng, &[&b"\n{}"[..], b" x", b"\0", b"\n\n\n", b"[]"]);
            b.extend_from_slice(piece);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Seeds and mutants

struct Seed {
    name: String,
    env: BTreeMap<String, String>,
    config: Value,
    /// The config text when it is not a JSON object (kept as bytes).
    raw_config: Vec<u8>,
    observed: FixtureObserver,
}

fn load_seeds(data_dir: &Path) -> Vec<Seed> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.join("env").is_file()).collect();
    dirs.sort();
    let mut seeds = Vec::new();
    for dir in dirs {
        // Other people may be adding cases; a half-written one is skipped, not fatal.
        let Ok(env_text) = std::fs::read_to_string(dir.join("env")) else { continue };
        let Ok(config) = std::fs::read_to_string(dir.join("config.json")) else { continue };
        let env: BTreeMap<String, String> = env_text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        if !env.contains_key("PLUGIN") {
            continue;
        }
        let config = config.replace("@DATADIR@", &data_dir.display().to_string());
        let observed = std::fs::read_to_string(dir.join("observed.json"))
            .ok()
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .and_then(|v| FixtureObserver::from_json(&v).ok())
            .unwrap_or_default();
        let value = serde_json::from_str::<Value>(&config).unwrap_or(Value::Null);
        seeds.push(Seed {
            name: dir.file_name().unwrap().to_string_lossy().into(),
            env,
            config: value,
            raw_config: config.into_bytes(),
            observed,
        });
    }
    seeds
}

/// Interface names the kernel accepts (dev_valid_name: at most 15 bytes, not `.`/`..`,
/// no `/`, `:` or ASCII whitespace) but that a batch line or script cannot carry as is.
/// A container with CAP_NET_ADMIN can give its links such names, so observed state is
/// hostile input too.
const KERNEL_VALID_HOSTILE_NAMES: [&str; 16] = [
    "a#b", "#", "\"x", "x\"", "'x", "a;b", "{x}", "\\", "é", "-x", "x\u{7}y", "x\u{1b}", "\u{85}x", "x\u{a0}",
    "--help", "x'y\"z#",
];

/// Replaces name-like string fields of the fixture's JSON answers (`ip -j` output, state
/// files) with kernel-valid hostile names.
fn mutate_observed(obs: &mut FixtureObserver, rng: &mut Rng) -> bool {
    fn walk(v: &mut Value, rng: &mut Rng, changed: &mut bool) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    // Only names: an address that is not an address is output `ip` never
                    // prints, and ipcni rightly calls that an internal error.
                    let named = matches!(k.as_str(), "ifname" | "master" | "link" | "ifalias" | "dev");
                    if named && x.is_string() && rng.chance(1, 3) {
                        *x = Value::String(rng.pick(&KERNEL_VALID_HOSTILE_NAMES).to_string());
                        *changed = true;
                    } else {
                        walk(x, rng, changed);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, rng, changed)),
            _ => {}
        }
    }
    let keys: Vec<String> = obs.answers.keys().cloned().collect();
    let mut changed = false;
    for k in keys {
        let Some(Some(text)) = obs.answers.get(&k) else { continue };
        let Ok(mut v) = serde_json::from_str::<Value>(text) else { continue };
        if rng.chance(1, 2) {
            walk(&mut v, rng, &mut changed);
            obs.answers.insert(k, Some(v.to_string()));
        }
    }
    changed
}

#[derive(Clone)]
struct Mutant {
    seed: usize,
    /// A mutated copy of the seed's fixture, when the observed state was mutated.
    observed: Option<FixtureObserver>,
    env: BTreeMap<String, String>,
    stdin: Vec<u8>,
    ops: Vec<&'static str>,
}

fn mutate_env(env: &mut BTreeMap<String, String>, rng: &mut Rng, hostile: &[String], ops: &mut Vec<&'static str>) {
    let keys = ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "NETNS_STATE"];
    let key = *rng.pick(&keys);
    match key {
        "CNI_COMMAND" => {
            ops.push("env:command");
            let cmds = ["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION", "add", "", "ADD\n", "GET", " ADD"];
            env.insert(key.into(), rng.pick(&cmds).to_string());
        }
        "NETNS_STATE" => {
            ops.push("env:netns-gone");
            env.insert(key.into(), "gone".into());
        }
        "CNI_ARGS" => {
            ops.push("env:args");
            let cur = env.get(key).cloned().unwrap_or_default();
            let names = ["IP", "MAC", "GATEWAY", "K8S_POD_NAME", "IgnoreUnknown", "K8S_POD_NAMESPACE", ""];
            let v = match rng.below(4) {
                0 => format!("{cur};{}={}", rng.pick(&names), rng.pick(hostile)),
                1 => rng.pick(hostile).clone(),
                2 => format!("{cur};{}", rng.pick(hostile)),
                _ => format!("{}={}={}", rng.pick(&names), rng.pick(hostile), rng.pick(hostile)),
            };
            env.insert(key.into(), v);
        }
        _ => {
            ops.push("env:value");
            match rng.below(4) {
                0 => {
                    env.remove(key);
                }
                1 => {
                    let cur = env.get(key).cloned().unwrap_or_default();
                    env.insert(key.into(), format!("{cur}{}", rng.pick(hostile)));
                }
                _ => {
                    env.insert(key.into(), rng.pick(hostile).clone());
                }
            }
        }
    }
}

fn make_mutant(seeds: &[Seed], rng: &mut Rng, hostile: &[String]) -> Mutant {
    let seed = rng.below(seeds.len());
    let s = &seeds[seed];
    let mut ops = Vec::new();
    let mut env = s.env.clone();
    let mut stdin;
    let mut dups = Vec::new();
    if s.config.is_object() && !rng.chance(1, 12) {
        let mut config = s.config.clone();
        let n = 1 + rng.below(3) * rng.below(2);
        for _ in 0..n {
            mutate_value(&mut config, rng, hostile, &mut dups);
            if serde_json::to_vec(&config).map_or(0, |v| v.len()) > 6_000_000 {
                break;
            }
        }
        ops.push("json");
        stdin = if rng.chance(1, 4) {
            serde_json::to_vec_pretty(&config).unwrap()
        } else {
            serde_json::to_vec(&config).unwrap()
        };
        if !dups.is_empty() {
            ops.push("json:dup-key");
            add_duplicate_keys(&mut stdin, &dups, rng);
        }
    } else {
        stdin = s.raw_config.clone();
    }
    if rng.chance(1, 8) || stdin == s.raw_config {
        ops.push("bytes");
        for _ in 0..1 + rng.below(3) {
            mutate_bytes(&mut stdin, rng);
        }
    }
    if rng.chance(1, 4) {
        for _ in 0..1 + rng.below(2) {
            mutate_env(&mut env, rng, hostile, &mut ops);
        }
    }
    if rng.chance(1, 25) {
        ops.push("env:plugin");
        let p = rng.pick(ipcni::plugins::all()).name();
        env.insert("PLUGIN".into(), p.into());
    }
    let mut observed = None;
    if rng.chance(1, 6) {
        let mut o = s.observed.clone();
        if mutate_observed(&mut o, rng) {
            ops.push("observed");
            observed = Some(o);
        }
    }
    // Never let a mutant find a real binary to delegate to.
    env.insert("CNI_PATH".into(), "/nonexistent".into());
    Mutant { seed, observed, env, stdin, ops }
}

// ---------------------------------------------------------------------------------------
// Running and checking

/// The golden fixture, answering queries it has no recording for with "absent" (so
/// mutants that ask about other links still get planned) instead of an error.
struct Lenient(FixtureObserver);

impl Observer for Lenient {
    fn query(&mut self, q: &Query) -> Result<Option<String>, CniError> {
        match self.0.query(q) {
            Ok(v) => Ok(v),
            Err(_) => Ok(None),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    About,
    Accepted,
    Rejected(u32),
}

fn check_error(e: &CniError) -> Result<(), String> {
    if !KNOWN_CODES.contains(&e.code) {
        return Err(format!("error code {} is not a spec/ipcni code: {e:?}", e.code));
    }
    if e.msg.trim().is_empty() {
        return Err(format!("empty error msg: {e:?}"));
    }
    let j: Value = serde_json::from_str(&e.to_json(Some("1.1.0"))).map_err(|x| format!("error JSON: {x}"))?;
    if j["code"] != json!(e.code) || j["msg"] != json!(e.msg) {
        return Err(format!("error JSON does not round-trip: {j}"));
    }
    Ok(())
}

fn run_mutant(m: &Mutant, seeds: &[Seed]) -> Result<Outcome, String> {
    let env = match CniEnv::from_map(&m.env) {
        Ok(Some(env)) => env,
        Ok(None) => return Ok(Outcome::About),
        Err(e) => return check_error(&e).map(|_| Outcome::Rejected(e.code)),
    };
    let plugin = ipcni::plugins::lookup(&m.env["PLUGIN"]).expect("known plugin");
    let conf = match NetConf::parse(&m.stdin) {
        Ok(c) => c,
        Err(e) => return check_error(&e).map(|_| Outcome::Rejected(e.code)),
    };
    let netns = match (&env.netns, m.env.get("NETNS_STATE").map(String::as_str)) {
        (None, _) => NetnsState::Unset,
        (Some(p), Some("gone")) => NetnsState::Gone(p.clone()),
        (Some(p), _) => NetnsState::Present(p.clone()),
    };
    let mut obs = Lenient(m.observed.clone().unwrap_or_else(|| seeds[m.seed].observed.clone()));
    let mut exec = Recording::default();
    let mut ipam = Delegator::new(true);
    let io = Io { obs: &mut obs, exec: &mut exec, ipam: &mut ipam, host_id: "fuzz-host", dry_run: true };
    let out = dispatch(plugin, &env, &conf, netns, io);
    for (i, step) in exec.steps.iter().enumerate() {
        check_step(step).map_err(|e| format!("step {i} {:?}: {e}", step.op))?;
    }
    match out {
        Ok(Some(r)) => {
            serde_json::from_str::<Value>(&r).map_err(|e| format!("result is not JSON ({e}): {r}"))?;
            Ok(Outcome::Accepted)
        }
        Ok(None) => Ok(Outcome::Accepted),
        Err(e) => check_error(&e).map(|_| Outcome::Rejected(e.code)),
    }
}

fn check_step(step: &Step) -> Result<(), String> {
    check_op(&step.ns, &step.op)?;
    if let Some(u) = &step.undo {
        check_op(step.undo_ns.as_ref().unwrap_or(&step.ns), u).map_err(|e| format!("undo {u:?}: {e}"))?;
    }
    Ok(())
}

/// iproute2's batch reader: getcmdline() cuts the line at the first `#`; makeargs()
/// splits on " \t\r\n", a word starting with ' or " runs to the next same quote.
fn iproute2_tokens(line: &str) -> Result<Vec<String>, String> {
    let line = match line.find('#') {
        Some(i) => &line[..i],
        None => line,
    };
    let b = line.as_bytes();
    let ws = b" \t\r\n";
    let mut toks = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && ws.contains(&b[i]) {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        if b[i] == b'\'' || b[i] == b'"' {
            let q = b[i];
            let start = i + 1;
            let Some(p) = b[start..].iter().position(|&c| c == q) else {
                return Err("unterminated quoted string".into());
            };
            toks.push(line[start..start + p].to_string());
            i = start + p + 1;
        } else {
            let start = i;
            while i < b.len() && !ws.contains(&b[i]) {
                i += 1;
            }
            toks.push(line[start..i].to_string());
            i += 1;
        }
    }
    Ok(toks)
}

fn check_op(ns: &Netns, op: &Op) -> Result<(), String> {
    let r = render(ns, op);
    if let Some(a) = r.argv().iter().find(|a| a.contains('\0')) {
        return Err(format!("argv element {a:?} holds a NUL"));
    }
    match r.tool {
        Tool::Ip | Tool::Bridge | Tool::Tc => {
            let line = r.batch_line();
            if line.contains(['\n', '\r', '\0']) {
                return Err(format!("batch line {line:?} holds a line break or NUL"));
            }
            let toks = iproute2_tokens(&line).map_err(|e| format!("batch line {line:?}: {e}"))?;
            if toks != r.args {
                return Err(format!("batch line {line:?} tokenizes to {toks:?}, not the step's argv {:?}", r.args));
            }
        }
        Tool::Firewall => {
            let Op::Firewall(f) = op else { unreachable!() };
            check_firewall(f)?;
        }
        Tool::Sysctl => {
            let Op::Sysctl(s) = op else { unreachable!() };
            for c in &s.path {
                if c.is_empty() || c == "." || c == ".." || c.contains(['/', '\0']) {
                    return Err(format!("sysctl path component {c:?} of {:?}", s.path));
                }
            }
            if s.path.first().map(String::as_str) != Some("net") {
                return Err(format!("sysctl outside net/: {:?}", s.path));
            }
            if s.value.contains('\0') {
                return Err(format!("sysctl value {:?} holds a NUL", s.value));
            }
        }
        Tool::State => {
            let p = match op {
                Op::StateWrite { path, .. } | Op::StateRemove { path } => path,
                _ => unreachable!(),
            };
            if !p.is_absolute() || p.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
                return Err(format!("state path {} climbs out of its directory", p.display()));
            }
        }
        Tool::Exec => {
            if r.program == "runcon" && r.args.first().is_some_and(|c| c.starts_with('-') || c.is_empty()) {
                return Err(format!("runcon context {:?} reads as an option", r.args[0]));
            }
        }
        Tool::Wait => {}
    }
    Ok(())
}

/// Characters that may stand outside quotes in a firewall script line.
fn plain_fw_char(c: char) -> bool {
    // What iptables-restore or nft read as ending a token, quoting, escaping, starting a
    // comment or a block, or separating commands. `$`, backquotes and the like are plain:
    // no shell reads these scripts.
    !(c.is_whitespace() || c.is_control() || "\"'\\#;{}".contains(c))
}

/// Every string the typed op holds (chain, table and interface names, user tokens, …) is
/// one plain token; comments are free text with no control character, and for nft no
/// quote or backslash either (nft's quoted strings have no escapes). `spec` is an
/// observed `iptables -S` rule spec, several tokens by design.
fn check_fw_fields(f: &FirewallOp) -> Result<(), String> {
    fn walk(v: &Value, key: &str, nft: bool) -> Result<(), String> {
        match v {
            Value::String(s) => match key {
                "spec" => Ok(()),
                "comment" | "prefix" => {
                    if s.chars().any(char::is_control) || (nft && s.contains(['"', '\\'])) {
                        Err(format!("comment {s:?} would end its quoted string or line"))
                    } else {
                        Ok(())
                    }
                }
                _ if s.is_empty() || !s.chars().all(plain_fw_char) => {
                    Err(format!("{key} {s:?} is not one plain token"))
                }
                _ => Ok(()),
            },
            Value::Array(a) => a.iter().try_for_each(|x| walk(x, key, nft)),
            Value::Object(m) => m.iter().try_for_each(|(k, x)| walk(x, k, nft)),
            _ => Ok(()),
        }
    }
    let v = serde_json::to_value(f).map_err(|e| e.to_string())?;
    walk(&v, "", matches!(f, FirewallOp::Nft { .. }))
}

fn check_firewall(f: &FirewallOp) -> Result<(), String> {
    check_fw_fields(f)?;
    let script = f.script();
    if script.contains(['\0', '\r']) {
        return Err(format!("script holds NUL or CR: {script:?}"));
    }
    let expected = match f {
        FirewallOp::Iptables { lines, .. } => lines.len() + 2,
        FirewallOp::Nft { ops, setup } => setup.len() + ops.len(),
    };
    let lines: Vec<&str> = script.split_terminator('\n').collect();
    if lines.len() != expected || !script.ends_with('\n') && !script.is_empty() {
        return Err(format!("script has {} lines for {expected} typed lines: {script:?}", lines.len()));
    }
    match f {
        FirewallOp::Iptables { .. } => {
            for l in &lines {
                scan_line(l, true).map_err(|e| format!("iptables-restore line {l:?}: {e}"))?;
            }
        }
        FirewallOp::Nft { ops, setup } => {
            for (l, op) in lines.iter().zip(setup.iter().chain(ops)) {
                if matches!(op, NftOp::DeleteRulesByComment { .. } | NftOp::DeleteRulesWithComment { .. }) {
                    // Shown as a comment; the executor resolves it to handles.
                    if !l.starts_with("# delete each rule of ") || l.chars().any(char::is_control) {
                        return Err(format!("nft comment line {l:?}"));
                    }
                    continue;
                }
                let mut body = l.to_string();
                for block in [
                    " { type nat hook postrouting priority srcnat ; }",
                    " { type filter hook prerouting priority -300 ; policy accept ; }",
                    " { type nat hook prerouting priority dstnat ; }",
                    " { type nat hook output priority -100 ; }",
                    " { type filter hook forward priority filter ; }",
                ] {
                    if matches!(op, NftOp::AddChain { base: Some(_), .. })
                        && let Some(b) = body.strip_suffix(block)
                    {
                        body = b.to_string();
                        break;
                    }
                }
                scan_line(&body, false).map_err(|e| format!("nft line {l:?}: {e}"))?;
            }
        }
    }
    Ok(())
}

/// Outside quotes only plain token characters and single spaces; inside double quotes no
/// control character. iptables-restore honours backslash escapes inside quotes; nft's
/// scanner (`\"[^"]*\"`) does not, so there any backslash means a broken escape.
fn scan_line(l: &str, backslash_escapes: bool) -> Result<(), String> {
    if l.starts_with(' ') || l.ends_with(' ') || l.contains("  ") {
        return Err("empty token".into());
    }
    let mut in_q = false;
    let mut esc = false;
    let mut quote_start = 0;
    for (i, c) in l.char_indices() {
        if in_q {
            if c.is_control() {
                return Err(format!("control character {c:?} inside a quoted string"));
            }
            if esc {
                esc = false;
            } else if c == '\\' {
                if !backslash_escapes {
                    return Err("backslash inside an nft quoted string".into());
                }
                esc = true;
            } else if c == '"' {
                in_q = false;
                if let Some(n) = l[i + 1..].chars().next()
                    && n != ' '
                {
                    return Err(format!("quoted string ends inside a token at {i}"));
                }
            }
        } else if c == '"' {
            if i > 0 && !l[..i].ends_with(' ') {
                return Err(format!("quote opens inside a token at {i}"));
            }
            in_q = true;
            quote_start = i;
        } else if c != ' ' && !plain_fw_char(c) {
            return Err(format!("{c:?} outside quotes"));
        }
    }
    if in_q {
        return Err(format!("quoted string opened at {quote_start} never closes"));
    }
    Ok(())
}

fn show_bytes(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    if s.len() > 3000 {
        format!("{:?}… ({} bytes)", &s[..s.floor_char_boundary(3000)], b.len())
    } else {
        format!("{s:?}")
    }
}

fn describe(i: u64, m: &Mutant, seeds: &[Seed], why: &str) -> String {
    let env: Vec<String> = m.env.iter().map(|(k, v)| format!("{k}={}", show_bytes(v.as_bytes()))).collect();
    let mut observed = String::new();
    if let Some(o) = &m.observed {
        let seed = &seeds[m.seed].observed.answers;
        for (k, v) in &o.answers {
            if seed.get(k) != Some(v) {
                observed
                    .push_str(&format!("\n  observed `{k}`: {}", show_bytes(v.as_deref().unwrap_or("").as_bytes())));
            }
        }
    }
    format!(
        "execution {i} (reproduce: IPCNI_FUZZ_ONLY={i} IPCNI_FUZZ_SEED={:#x}): {why}\n  seed case: tests/golden/{}\n  mutations: {:?}\n  env: {}\n  stdin: {}{observed}",
        base_seed(),
        seeds[m.seed].name,
        m.ops,
        env.join(" "),
        show_bytes(&m.stdin)
    )
}

fn base_seed() -> u64 {
    std::env::var("IPCNI_FUZZ_SEED")
        .ok()
        .and_then(|s| {
            let s = s.trim();
            match s.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).ok(),
                None => s.parse().ok(),
            }
        })
        .unwrap_or(DEFAULT_SEED)
}

#[derive(Default)]
struct Tally {
    execs: u64,
    outcomes: BTreeMap<Outcome, u64>,
    failures: Vec<String>,
    slowest: Vec<(Duration, u64)>,
}

#[test]
fn fuzz_hostile_input() {
    let start = Instant::now();
    let data = tempfile::tempdir().unwrap();
    let seeds = load_seeds(data.path());
    assert!(seeds.len() > 100, "only {} golden seeds found", seeds.len());
    let hostile = hostile_strings();
    let execs: u64 = std::env::var("IPCNI_FUZZ_EXECS").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_EXECS);
    let only: Option<u64> = std::env::var("IPCNI_FUZZ_ONLY").ok().and_then(|s| s.parse().ok());
    let base = base_seed();
    let list: Vec<u64> = match only {
        Some(i) => vec![i],
        None => (0..execs).collect(),
    };
    let tally = Mutex::new(Tally::default());
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 4);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (seeds, hostile, list, tally) = (&seeds, &hostile, &list, &tally);
            s.spawn(move || {
                let mut local = Tally::default();
                for &i in list.iter().skip(t).step_by(threads) {
                    let mut rng = Rng::new(base ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                    let m = make_mutant(seeds, &mut rng, hostile);
                    let t0 = Instant::now();
                    let r = catch_unwind(AssertUnwindSafe(|| run_mutant(&m, seeds)));
                    let took = t0.elapsed();
                    local.execs += 1;
                    local.slowest.push((took, i));
                    local.slowest.sort_by(|a, b| b.cmp(a));
                    local.slowest.truncate(3);
                    match r {
                        Ok(Ok(o)) => *local.outcomes.entry(o).or_default() += 1,
                        Ok(Err(why)) => local.failures.push(describe(i, &m, seeds, &why)),
                        Err(p) => {
                            let msg = p
                                .downcast_ref::<&str>()
                                .map(|s| s.to_string())
                                .or_else(|| p.downcast_ref::<String>().cloned())
                                .unwrap_or_default();
                            local.failures.push(describe(i, &m, seeds, &format!("PANIC: {msg}")));
                        }
                    }
                    if local.failures.len() > 20 {
                        break;
                    }
                }
                let mut all = tally.lock().unwrap();
                all.execs += local.execs;
                for (k, v) in local.outcomes {
                    *all.outcomes.entry(k).or_default() += v;
                }
                all.failures.extend(local.failures);
                all.slowest.extend(local.slowest);
            });
        }
    });
    let mut tally = tally.into_inner().unwrap();
    tally.slowest.sort_by(|a, b| b.cmp(a));
    let mut summary = format!(
        "fuzz: {} executions in {:.1} s ({} seeds, base seed {base:#x}, {threads} threads)\n",
        tally.execs,
        start.elapsed().as_secs_f64(),
        seeds.len()
    );
    for (o, n) in &tally.outcomes {
        let what = match o {
            Outcome::About => "about text (no CNI_COMMAND)".to_string(),
            Outcome::Accepted => "accepted".to_string(),
            Outcome::Rejected(c) => format!("rejected, code {c}"),
        };
        summary.push_str(&format!("  {n:>7}  {what}\n"));
    }
    let slow: Vec<String> =
        tally.slowest.iter().take(3).map(|(d, i)| format!("#{i} {:.0} ms", d.as_secs_f64() * 1000.0)).collect();
    summary.push_str(&format!("  slowest: {}\n", slow.join(", ")));
    // Straight to the stream, past the test harness's capture: the figures are the point.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), summary.as_bytes());
    assert!(
        tally.failures.is_empty(),
        "{} fuzz failure(s):\n{}\n{summary}",
        tally.failures.len(),
        tally.failures.join("\n\n")
    );
}

/// The checks above must catch what they are for, or a clean fuzz run means nothing.
#[test]
fn injection_checks_catch_broken_renderings() {
    use ipcni::plan::firewall::{IptLine, IptRule, NftRule, NftTable};
    use ipcni::plan::{Family, Sysctl};
    let host = Netns::Host;
    assert!(check_op(&host, &Op::LinkDel { dev: "eth0".into() }).is_ok());
    // A quote is special only where a word starts: `a"b` is one word to iproute2.
    assert!(check_op(&host, &Op::LinkDel { dev: "a\"b".into() }).is_ok());
    for dev in ["a b", "x#y", "a\nb", "\"ab", "'ab", "a\tb", "a\0b"] {
        assert!(check_op(&host, &Op::LinkDel { dev: dev.into() }).is_err(), "{dev:?}");
    }
    assert_eq!(iproute2_tokens(r#"link set dev hd0 alias """#).unwrap(), ["link", "set", "dev", "hd0", "alias", ""]);
    assert!(iproute2_tokens("link \"x").is_err());
    let sysctl = |p: &[&str]| Op::Sysctl(Sysctl::new(p, "1"));
    assert!(check_op(&host, &sysctl(&["net", "ipv4", "conf", "eth0.100", "rp_filter"])).is_ok());
    assert!(check_op(&host, &sysctl(&["net", "..", "..", "kernel", "x"])).is_err());
    assert!(check_op(&host, &sysctl(&["net", "a/b"])).is_err());
    let ipt = |comment: &str, chain: &str| {
        Op::Firewall(FirewallOp::Iptables {
            family: Family::V4,
            table: "nat".into(),
            lines: vec![IptLine::Append {
                chain: chain.into(),
                rule: IptRule { comment: Some(comment.into()), ..IptRule::default() },
            }],
        })
    };
    assert!(check_op(&host, &ipt(r#"name: "n" id: "c1""#, "CNI-1")).is_ok());
    assert!(check_op(&host, &ipt("a\nCOMMIT", "CNI-1")).is_err());
    assert!(check_op(&host, &ipt("c", "CNI-1 -j DROP")).is_err());
    assert!(check_op(&host, &ipt("c", "CNI;1")).is_err());
    let nft = |comment: &str, iif: &str| {
        Op::Firewall(FirewallOp::nft(vec![NftOp::AddRule {
            table: NftTable::inet("t"),
            chain: "c".into(),
            rule: NftRule::IifnameJump { iifname: iif.into(), chain: "x".into() },
            comment: Some(comment.into()),
        }]))
    };
    assert!(check_op(&host, &nft("ctr1", "cni0")).is_ok());
    // nft's scanner has no escapes: `\"` ends the string and the rest is a command.
    assert!(check_op(&host, &nft("a\" ; flush ruleset ; \"", "cni0")).is_err());
    assert!(check_op(&host, &nft("a\nflush ruleset", "cni0")).is_err());
    assert!(check_op(&host, &nft("ctr1", "a\\")).is_err());
}

/// Runs golden case `seed` with the fixture answer for `query` replaced by `answer`.
fn replay_with_observed(seed: &str, query: &str, answer: &str) -> (Result<Outcome, String>, Mutant) {
    let data = tempfile::tempdir().unwrap();
    let seeds = load_seeds(data.path());
    let i = seeds.iter().position(|s| s.name == seed).expect("seed case exists");
    let mut observed = seeds[i].observed.clone();
    assert!(observed.answers.contains_key(query), "{seed} has no answer for {query}");
    observed.answers.insert(query.to_string(), Some(answer.to_string()));
    let mut env = seeds[i].env.clone();
    env.insert("CNI_PATH".into(), "/nonexistent".into());
    let m =
        Mutant { seed: i, observed: Some(observed), env, stdin: seeds[i].raw_config.clone(), ops: vec!["observed"] };
    (run_mutant(&m, &seeds), m)
}

/// Found by the fuzzer: macvlan put the master's name as `ip` reported it into the
/// batch line, and a `#` in it (the kernel allows one) cut the line short.
#[test]
fn regression_observed_master_name_with_hash_is_refused_not_truncated() {
    let answer = r##"[{"addr_info":[],"address":"52:54:00:12:34:56","flags":["UP"],"ifindex":2,"ifname":"#","link_type":"ether","mtu":1500,"operstate":"UP"}]"##;
    let (out, m) = replay_with_observed("macvlan-add-passthru", "ip -j -d addr show dev eth0", answer);
    assert_eq!(out, Ok(Outcome::Rejected(100)), "{:?}", m.ops);
}

/// Found by the fuzzer: host-device DEL moved the container's link back by the name the
/// container gave it, so a name starting with a quote (a container with CAP_NET_ADMIN
/// can rename its links) left an unterminated quoted word in the batch.
#[test]
fn regression_container_link_name_with_quote_is_refused_on_host_device_del() {
    let query = "nsenter --net=/run/netns/ctr1 ip -j -d addr show dev eth0";
    let answer = r#"[{"addr_info":[],"address":"52:54:00:12:34:56","flags":["UP"],"ifindex":4,"ifname":"\"x","link_type":"ether","mtu":1500,"operstate":"UP"}]"#;
    let (out, m) = replay_with_observed("host-device-del-unparsable-config", query, answer);
    assert_eq!(out, Ok(Outcome::Rejected(100)), "{:?}", m.ops);
}
