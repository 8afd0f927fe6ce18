//! One long-lived `ip -j -d -batch -` process per network namespace, shared by the
//! observer's `ip -j -d` queries and the executor's `ip` batches of one invocation.
//!
//! Starting `ip` costs more than the kernel work of a typical plan step, and a plugin
//! reads state before it changes it, so reading through the same process that will then
//! run the batch saves one process per namespace. iproute2 flushes each command's JSON as
//! it finishes, so a query is answered by reading one JSON document; a run of action
//! lines (which print nothing) is followed by a query of `lo`, which every namespace has,
//! and its answer says every line before it is done. A failing line ends the process, as
//! a batch without `-force` does: its stderr names the line (`Command failed -:N`), the
//! session is dropped, and the next use starts a fresh one.
//!
//! IPCNI_IP_SESSION=0 turns this off (one process per query and per batch), for
//! comparison.

use std::io::{self, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::ProcessError;
use crate::plan::Netns;

/// The global options every session runs with; a query is served by a session only when
/// it asks for exactly these.
pub const FLAGS: [&str; 2] = ["-j", "-d"];

/// What follows a run of action lines: its JSON answer marks them all done.
const SENTINEL: &str = "addr show dev lo";

/// Whether a query line gives in a session what it gives on its own. iproute2 6.1 keeps
/// `preferred_family` across batch lines: after any `link show`, `addr show dev X`
/// prints no addresses. `addr show` lines neither suffer from nor cause that, so they
/// are the only queries a session serves (and the sentinel is one).
pub fn serves(line: &str) -> bool {
    line.starts_with("addr show")
}

static SESSIONS: Mutex<Vec<(Netns, Session)>> = Mutex::new(Vec::new());
static SPAWNED: AtomicUsize = AtomicUsize::new(0);

/// Whether queries and batches go through sessions.
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("IPCNI_IP_SESSION").map_or(true, |v| v != "0"))
}

/// How many `ip` processes sessions started in this process.
pub fn spawned() -> usize {
    SPAWNED.load(Ordering::Relaxed)
}

struct Session {
    cmdline: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    buf: Vec<u8>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<JoinHandle<()>>,
    /// Lines written so far: `Command failed -:N` counts from the session's start.
    lines: usize,
}

/// How a session use ended when it did not succeed.
#[derive(Debug)]
pub struct Failure {
    /// 0-based index, within the lines of this use, of the line that failed.
    pub line: usize,
    pub error: ProcessError,
}

impl Session {
    fn start(ns: &Netns) -> Result<Session, ProcessError> {
        let mut argv = Vec::new();
        if let Netns::Container(p) = ns {
            argv.push("nsenter".to_string());
            argv.push(format!("--net={}", p.display()));
        }
        argv.push("ip".into());
        argv.extend(FLAGS.iter().map(|f| f.to_string()));
        argv.extend(["-batch".to_string(), "-".to_string()]);
        let cmdline = argv.iter().map(|a| crate::plan::shell_quote(a)).collect::<Vec<_>>().join(" ");
        super::trace(|| format!("start {cmdline} (session)"));
        // Container-side sessions may move links back to the host: `netns /proc/self/fd/3`.
        let host_fd = matches!(ns, Netns::Container(_));
        let mut child = super::real::spawn(&argv, true, host_fd).map_err(|stderr| ProcessError {
            cmdline: cmdline.clone(),
            status: None,
            stderr,
        })?;
        SPAWNED.fetch_add(1, Ordering::Relaxed);
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut err_pipe = child.stderr.take().expect("stderr is piped");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr);
        let stderr_reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&chunk[..n]);
            }
        });
        Ok(Session {
            cmdline,
            child,
            stdin,
            stdout,
            buf: Vec::new(),
            stderr,
            stderr_reader: Some(stderr_reader),
            lines: 0,
        })
    }

    /// The next JSON document on stdout; None when ip exited.
    fn read_doc(&mut self) -> io::Result<Option<String>> {
        let mut chunk = [0u8; 65536];
        loop {
            let start = self.buf.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(self.buf.len());
            if start < self.buf.len() {
                let mut docs =
                    serde_json::Deserializer::from_slice(&self.buf[start..]).into_iter::<serde::de::IgnoredAny>();
                match docs.next() {
                    Some(Ok(_)) => {
                        let end = start + docs.byte_offset();
                        let doc = String::from_utf8_lossy(&self.buf[start..end]).into_owned();
                        self.buf.drain(..end);
                        return Ok(Some(doc));
                    }
                    Some(Err(e)) if e.is_eof() => {}
                    Some(Err(e)) => return Err(io::Error::other(format!("ip printed invalid JSON: {e}"))),
                    None => {}
                }
            }
            let n = self.stdout.read(&mut chunk)?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Writes `lines` then `last`, and reads `last`'s answer. Err when ip exited first:
    /// the line that failed (0-based, counting `last` as lines.len()) and ip's stderr.
    fn exchange(&mut self, lines: &[String], last: &str) -> Result<String, Failure> {
        let base = self.lines;
        let mut script = String::new();
        for l in lines.iter().map(String::as_str).chain([last]) {
            script.push_str(l);
            script.push('\n');
        }
        self.lines += lines.len() + 1;
        let stdin = self.stdin.as_mut().expect("session stdin open while in use");
        // A write error means ip already exited; its stderr says why.
        let _ = stdin.write_all(script.as_bytes()).and_then(|()| stdin.flush());
        match self.read_doc() {
            Ok(Some(doc)) => Ok(doc),
            Ok(None) => Err(self.finish_failed(base, lines.len())),
            Err(e) => Err(Failure {
                line: lines.len(),
                error: ProcessError { cmdline: self.cmdline.clone(), status: None, stderr: e.to_string() },
            }),
        }
    }

    /// ip exited: waits for it and names the failing line from its stderr.
    fn finish_failed(&mut self, base: usize, written: usize) -> Failure {
        drop(self.stdin.take());
        let status = self.child.wait().ok().and_then(|s| s.code());
        if let Some(h) = self.stderr_reader.take() {
            let _ = h.join();
        }
        let stderr = String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
        let failed = stderr
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix("Command failed -:")?.parse::<usize>().ok())
            .map_or(written, |n| n.saturating_sub(base + 1).min(written));
        let stderr = stderr.lines().filter(|l| !l.starts_with("Command failed")).collect::<Vec<_>>().join("\n");
        super::trace(|| format!("end   {} (session failed at its line {})", self.cmdline, base + failed + 1));
        Failure { line: failed, error: ProcessError { cmdline: self.cmdline.clone(), status, stderr } }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // EOF on stdin ends ip; reap it so no zombie outlives the invocation's work.
        drop(self.stdin.take());
        let _ = self.child.wait();
        if let Some(h) = self.stderr_reader.take() {
            let _ = h.join();
        }
    }
}

/// Runs `f` with the session of `ns`, starting one if needed; a session whose ip exited
/// is dropped.
fn with_session<T>(ns: &Netns, f: impl FnOnce(&mut Session) -> Result<T, Failure>) -> Result<T, Failure> {
    let mut sessions = SESSIONS.lock().unwrap_or_else(|e| e.into_inner());
    let idx = match sessions.iter().position(|(n, _)| n == ns) {
        Some(i) => i,
        None => {
            let s = Session::start(ns).map_err(|error| Failure { line: 0, error })?;
            sessions.push((ns.clone(), s));
            sessions.len() - 1
        }
    };
    let out = f(&mut sessions[idx].1);
    if out.is_err() {
        sessions.remove(idx);
    }
    out
}

/// Starts the session of `ns` now if it has none, without waiting for `ip` to be ready:
/// its start-up (exec, libraries, netlink socket) then overlaps the work in other
/// namespaces that comes first. A start that fails is not reported here; the first use
/// tries again and reports it.
pub fn prestart(ns: &Netns) {
    let mut sessions = SESSIONS.lock().unwrap_or_else(|e| e.into_inner());
    if sessions.iter().any(|(n, _)| n == ns) {
        return;
    }
    if let Ok(s) = Session::start(ns) {
        sessions.push((ns.clone(), s));
    }
}

/// Answers `ip -j -d LINE` in `ns`: the JSON it printed, or the failure (ip's stderr).
/// LINE must be one the session [`serves`].
pub fn query(ns: &Netns, line: &str) -> Result<String, ProcessError> {
    debug_assert!(serves(line), "{line}");
    with_session(ns, |s| s.exchange(&[], line)).map_err(|f| f.error)
}

/// Runs `ip` action lines (they print nothing) in `ns`; on failure, which line failed
/// and ip's stderr.
pub fn run(ns: &Netns, lines: &[String]) -> Result<(), Failure> {
    with_session(ns, |s| {
        let mut doc = s.exchange(lines, SENTINEL)?;
        // Action lines print nothing; should one print anyway, skip to the sentinel's answer.
        while !doc.contains("\"link_type\":\"loopback\"") {
            doc = match s.read_doc() {
                Ok(Some(d)) => d,
                Ok(None) => return Err(s.finish_failed(s.lines - lines.len() - 1, lines.len())),
                Err(e) => {
                    return Err(Failure {
                        line: lines.len(),
                        error: ProcessError { cmdline: s.cmdline.clone(), status: None, stderr: e.to_string() },
                    });
                }
            };
        }
        Ok(())
    })
}

/// Ends every session: ip sees EOF and exits. All of them are told first and then
/// waited for, so their exits overlap; waiting keeps every `ip` inside the invocation
/// (no process outlives it, and its CPU and RSS count as the plugin's children's).
pub fn close_all() {
    let mut sessions = SESSIONS.lock().unwrap_or_else(|e| e.into_inner());
    if sessions.is_empty() {
        return;
    }
    super::trace(|| format!("closing {} ip session(s)", sessions.len()));
    for (_, s) in sessions.iter_mut() {
        drop(s.stdin.take());
    }
    sessions.clear();
    super::trace(|| "ip sessions closed".into());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a thread in a network namespace of its own (setns and unshare of
    /// CLONE_NEWNET are per thread, and children inherit the thread's namespace), so the
    /// test may change links without touching the namespace the tests run in.
    /// Sessions are per process and keyed by namespace, "the host" being the caller's:
    /// tests that each make their own host namespace must take turns.
    fn in_private_netns(f: impl FnOnce() + Send + 'static) -> bool {
        static TURN: Mutex<()> = Mutex::new(());
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        close_all();
        std::thread::spawn(move || {
            // SAFETY: unshare affects only this thread.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return false;
            }
            f();
            true
        })
        .join()
        .expect("test thread")
    }

    #[test]
    fn queries_and_runs_share_one_ip_until_a_line_fails() {
        let ran = in_private_netns(|| {
            let host = Netns::Host;
            let before = spawned();
            let lo = query(&host, "addr show dev lo").expect("lo exists");
            assert!(lo.contains("\"link_type\":\"loopback\""), "{lo}");
            assert!(!lo.contains("LOWER_UP"), "a fresh namespace's lo is down: {lo}");
            run(&host, &["link set dev lo up".into(), "addr add 127.0.0.2/8 dev lo".into()]).expect("actions run");
            let lo = query(&host, "addr show dev lo").expect("lo exists");
            assert!(lo.contains("127.0.0.2") && lo.contains("LOWER_UP"), "{lo}");
            assert_eq!(spawned() - before, 1, "one process for every use");

            let failure = run(&host, &["addr add 127.0.0.3/8 dev lo".into(), "link set dev ipcni-absent0 up".into()])
                .expect_err("a missing device fails the run");
            assert_eq!(failure.line, 1, "the second line failed");
            assert!(failure.error.stderr.contains("Cannot find device"), "{}", failure.error.stderr);
            assert!(!failure.error.stderr.contains("Command failed"), "{}", failure.error.stderr);

            let missing = query(&host, "addr show dev ipcni-absent0").expect_err("absent");
            assert!(missing.stderr.contains("does not exist"), "{}", missing.stderr);
            let lo = query(&host, "addr show dev lo").expect("a fresh session after the failures");
            assert!(lo.contains("127.0.0.3"), "the line before the failing one took effect: {lo}");
            assert_eq!(spawned() - before, 3, "each failure ended its session");
            close_all();
        });
        if !ran {
            eprintln!("skipped: cannot unshare a network namespace (not root)");
        }
    }

    /// What broke: a `link show` sentinel made every later `addr show dev X` of the same
    /// session print no addresses (loopback's result lost 127.0.0.1/8).
    #[test]
    fn link_show_is_never_served_because_it_hides_later_addresses() {
        assert!(serves(SENTINEL));
        assert!(serves("addr show dev eth0"));
        assert!(!serves("link show dev eth0"));
        assert!(!serves("link show master cni0"));
        let ran = in_private_netns(|| {
            let host = Netns::Host;
            run(&host, &["addr add 127.0.0.2/8 dev lo".into()]).expect("action runs");
            let lo = query(&host, "addr show dev lo").expect("lo exists");
            assert!(lo.contains("127.0.0.2"), "after a run, addresses still show: {lo}");
            close_all();
        });
        if !ran {
            eprintln!("skipped: cannot unshare a network namespace (not root)");
        }
    }
}
