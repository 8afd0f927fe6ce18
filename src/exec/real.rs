//! The real executor: one `ip -batch -` (or `bridge -batch -`) process per run of
//! consecutive steps in one namespace, container side through `nsenter --net=PATH`;
//! sysctls written to /proc/sys (container side from a thread that joined the netns);
//! firewall ops as one restore/nft transaction each.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Executor, FailureKind, ProcessError, StepError, log, observe};
use crate::plan::firewall::{FirewallOp, NftOp};
use crate::plan::{Netns, Op, Step, Tool, shell_quote};

#[derive(Debug, Default)]
pub struct RealExecutor {
    /// How many processes this executor started (for benchmarks and tests).
    pub processes: usize,
    faults: FaultInjection,
}

impl RealExecutor {
    /// The executor a plugin invocation uses. With the `fault-injection` feature (test
    /// builds only) it reads `IPCNI_FAIL_AT_STEP`.
    pub fn new() -> RealExecutor {
        RealExecutor { processes: 0, faults: FaultInjection::from_env() }
    }
}

/// Kernel-test counterpart of `Recording::failing_at`: fail the k-th step (0-based,
/// counted over every plan this process runs, in order) without running it, so the
/// shell tests can check that the rollback really restores the kernel state.
///
/// Why a cargo feature and not an environment variable in every build: a variable that
/// any build honours can be set by accident (inherited from a test shell, a stray
/// systemd Environment=) and would make a production ADD fail for no reason. Without
/// the feature this type is empty and nothing reads the variable; the kernel test
/// builds its own binary with `--features fault-injection`.
#[derive(Debug, Default)]
struct FaultInjection {
    #[cfg(feature = "fault-injection")]
    fail_at: Option<usize>,
    #[cfg(feature = "fault-injection")]
    seen: usize,
}

impl FaultInjection {
    const ENV: &'static str = "IPCNI_FAIL_AT_STEP";

    #[cfg(feature = "fault-injection")]
    fn from_env() -> FaultInjection {
        let fail_at = std::env::var(Self::ENV).ok().and_then(|v| match v.trim().parse() {
            Ok(k) => Some(k),
            Err(_) => {
                log(&format!("{}={v:?} is not a step number; no fault injected", Self::ENV));
                None
            }
        });
        FaultInjection { fail_at, seen: 0 }
    }

    #[cfg(not(feature = "fault-injection"))]
    fn from_env() -> FaultInjection {
        FaultInjection::default()
    }

    /// For a run of `len` steps: the step to fail, if any, as (index within the run,
    /// index within the invocation). Counts the steps as seen either way, so a fault
    /// fires at most once (not in the rollback that follows it).
    #[cfg(feature = "fault-injection")]
    fn take(&mut self, len: usize) -> Option<(usize, usize)> {
        let first = self.seen;
        self.seen += len;
        self.fail_at.filter(|k| (first..first + len).contains(k)).map(|k| (k - first, k))
    }

    #[cfg(not(feature = "fault-injection"))]
    fn take(&mut self, _len: usize) -> Option<(usize, usize)> {
        None
    }
}

/// Runs argv with optional stdin; returns stdout on success.
///
/// `nsenter --net=PATH CMD…` is carried out natively: the child joins PATH's network
/// namespace with setns(2) between fork and exec, exactly what nsenter does, which saves
/// one exec (≈1 ms) per container-side process. The command line in errors and in
/// `--dry-run` stays the nsenter form, which does the same when pasted.
pub fn run_process(argv: &[String], stdin: Option<&str>) -> Result<String, ProcessError> {
    run_process_with(argv, stdin, false)
}

/// `run_process`; with `host_netns_fd` the child also gets fd `plan::HOST_NETNS_FD` open on
/// this process's own network namespace, for steps that move a link back to it from a
/// container namespace (`netns /proc/self/fd/3`).
pub fn run_process_with(argv: &[String], stdin: Option<&str>, host_netns_fd: bool) -> Result<String, ProcessError> {
    let cmdline = argv.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ");
    super::trace(|| format!("start {cmdline}"));
    let out = run_process_inner(&cmdline, argv, stdin, host_netns_fd);
    super::trace(|| format!("end   {cmdline}"));
    out
}

/// The child of `argv` (an `nsenter --net=PATH` prefix carried out natively), stdout and
/// stderr piped, stdin piped when `stdin_piped`. The returned files must live until the
/// child has been spawned, which this function does.
pub(crate) fn spawn(argv: &[String], stdin_piped: bool, host_netns_fd: bool) -> Result<std::process::Child, String> {
    let (netns, program_argv) = match (argv.first().map(String::as_str), argv.get(1)) {
        (Some("nsenter"), Some(flag)) if flag.starts_with("--net=") && argv.len() > 2 => {
            let path = &flag["--net=".len()..];
            let file = File::open(path).map_err(|e| format!("nsenter: cannot open {path}: {e}"))?;
            (Some(file), &argv[2..])
        }
        _ => (None, argv),
    };
    let mut cmd = Command::new(&program_argv[0]);
    cmd.args(&program_argv[1..])
        .stdin(if stdin_piped { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("LC_ALL", "C");
    if let Some(file) = &netns {
        let fd = file.as_raw_fd();
        // SAFETY: only setns(2), an async-signal-safe syscall, runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
            });
        }
    }
    // Opened here, in the plugin's own namespace; the child sees it at HOST_NETNS_FD even
    // after it joined a container namespace above (the closures run in order).
    let own_netns = match host_netns_fd {
        true => Some(File::open("/proc/self/ns/net").map_err(|e| format!("/proc/self/ns/net: {e}"))?),
        false => None,
    };
    if let Some(file) = &own_netns {
        let fd = file.as_raw_fd();
        let target = crate::plan::HOST_NETNS_FD;
        // SAFETY: only dup2(2) or fcntl(2), async-signal-safe, run between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // dup2 onto itself would keep close-on-exec; clear it instead.
                let rc = if fd == target { libc::fcntl(fd, libc::F_SETFD, 0) } else { libc::dup2(fd, target) };
                if rc < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
            });
        }
    }
    cmd.spawn().map_err(|e| format!("cannot start {}: {e}", program_argv[0]))
}

fn run_process_inner(
    cmdline: &str,
    argv: &[String],
    stdin: Option<&str>,
    host_netns_fd: bool,
) -> Result<String, ProcessError> {
    let cmdline = cmdline.to_string();
    let fail = |stderr: String| ProcessError { cmdline: cmdline.clone(), status: None, stderr };
    let program =
        argv.iter().find(|a| !a.starts_with("nsenter") && !a.starts_with("--net=")).cloned().unwrap_or_default();
    let mut child = spawn(argv, stdin.is_some(), host_netns_fd).map_err(fail)?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        // A tool that exits early closes its end; its stderr says why, so a write error
        // here is not the error to report.
        let _ = pipe.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| fail(format!("waiting for {program}: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(ProcessError {
            cmdline,
            status: out.status.code(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// `Command failed -:N` names the failing line of a batch (1-based).
fn failed_batch_line(stderr: &str) -> Option<usize> {
    stderr.lines().rev().find_map(|l| l.trim().strip_prefix("Command failed -:")?.parse().ok())
}

fn ns_prefix(ns: &Netns) -> Vec<String> {
    match ns {
        Netns::Host => Vec::new(),
        Netns::Container(p) => vec!["nsenter".into(), format!("--net={}", p.display())],
    }
}

/// Writes a sysctl, joining `ns` first from a short-lived thread: /proc/sys/net shows
/// the namespace of the thread that opens it, and setns(CLONE_NEWNET) is per thread.
fn write_sysctl(ns: &Netns, path: &Path, value: &str) -> Result<(), String> {
    super::trace(|| format!("sysctl {} = {value}", path.display()));
    let write = || std::fs::write(path, value).map_err(|e| format!("{}: {e}", path.display()));
    match ns {
        Netns::Host => write(),
        Netns::Container(nspath) => std::thread::scope(|s| {
            s.spawn(|| {
                let f = File::open(nspath).map_err(|e| format!("{}: {e}", nspath.display()))?;
                // SAFETY: setns on a valid fd; only this thread changes namespace and it
                // ends right after the write.
                let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    return Err(format!("setns {}: {}", nspath.display(), std::io::Error::last_os_error()));
                }
                write()
            })
            .join()
            .unwrap_or_else(|_| Err("sysctl thread panicked".into()))
        }),
    }
}

impl RealExecutor {
    fn run_batch(&mut self, steps: &[Step], tool: Tool) -> Result<(), StepError> {
        let mut start = 0;
        while start < steps.len() {
            let batch = &steps[start..];
            let program = match tool {
                Tool::Ip => "ip",
                Tool::Tc => "tc",
                _ => "bridge",
            };
            let mut argv = ns_prefix(&batch[0].ns);
            argv.extend([program.to_string(), "-batch".into(), "-".into()]);
            if tool == Tool::Ip && super::session::enabled() {
                let lines: Vec<String> = batch.iter().map(|s| s.rendered().batch_line()).collect();
                match super::session::run(&batch[0].ns, &lines) {
                    Ok(()) => return Ok(()),
                    Err(f) => {
                        let failed = &batch[f.line.min(batch.len() - 1)];
                        let kind = FailureKind::classify(&f.error.stderr);
                        let error = ProcessError { cmdline: failed.rendered().to_shell(), ..f.error };
                        if f.line >= batch.len() || !kind.tolerated_by(failed.tolerate) {
                            return Err(StepError { step: start + f.line.min(batch.len() - 1), error });
                        }
                        start += f.line + 1;
                        continue;
                    }
                }
            }
            let script: String = batch.iter().map(|s| s.rendered().batch_line() + "\n").collect();
            self.processes += 1;
            let host_fd = batch.iter().any(|s| s.rendered().host_netns_fd);
            match run_process_with(&argv, Some(&script), host_fd) {
                Ok(_) => return Ok(()),
                Err(e) => {
                    // Lines before the failing one took effect; the batch stopped there.
                    let line = failed_batch_line(&e.stderr).unwrap_or(1).clamp(1, batch.len());
                    let failed = &batch[line - 1];
                    let kind = FailureKind::classify(&e.stderr);
                    // The batch's own "Command failed -:N" line is replaced by the step's command line.
                    let stderr =
                        e.stderr.lines().filter(|l| !l.starts_with("Command failed")).collect::<Vec<_>>().join("\n");
                    let error = ProcessError { cmdline: failed.rendered().to_shell(), stderr, ..e };
                    if !kind.tolerated_by(failed.tolerate) {
                        return Err(StepError { step: start + line - 1, error });
                    }
                    start += line;
                }
            }
        }
        Ok(())
    }

    fn run_single(&mut self, step: &Step) -> Result<(), ProcessError> {
        let r = step.rendered();
        match (&step.op, r.tool) {
            (Op::Sysctl(sc), _) => write_sysctl(&step.ns, &sc.proc_path(), &sc.value).map_err(|stderr| ProcessError {
                cmdline: r.to_shell(),
                status: None,
                stderr,
            }),
            (Op::WaitOperUp { dev }, _) => wait_oper_up(&step.ns, dev, &r.to_shell()),
            (Op::WaitDad { dev }, _) => {
                self.processes += 1;
                wait_dad(&step.ns, dev, &r.to_shell())
            }
            (Op::Firewall(FirewallOp::Nft { ops, setup }), _) if !setup.is_empty() => {
                // The changes alone first: when what they need is there (every ADD but
                // the first), the chains are not re-declared, which would cost a grace
                // period. A missing table or chain fails them and the whole script runs.
                let fast = crate::plan::render(&step.ns, &Op::Firewall(FirewallOp::nft(ops.clone())));
                self.processes += 1;
                match run_process(&fast.argv(), fast.stdin.as_deref()) {
                    Ok(_) => Ok(()),
                    Err(e) if FailureKind::classify(&e.stderr) == FailureKind::Missing => {
                        self.processes += 1;
                        run_process(&r.argv(), r.stdin.as_deref()).map(|_| ())
                    }
                    Err(e) => Err(e),
                }
            }
            (Op::Firewall(FirewallOp::Nft { ops, .. }), _)
                if ops.iter().any(|o| {
                    matches!(o, NftOp::DeleteRulesByComment { .. } | NftOp::DeleteRulesWithComment { .. })
                }) =>
            {
                let resolved = self.resolve_nft_purges(ops)?;
                if resolved.is_empty() {
                    return Ok(());
                }
                let op = Op::Firewall(FirewallOp::nft(resolved));
                let r = crate::plan::render(&step.ns, &op);
                self.processes += 1;
                run_process(&r.argv(), r.stdin.as_deref()).map(|_| ())
            }
            (Op::StateWrite { path, contents }, _) => super::state::write_atomic(path, contents)
                .map_err(|e| ProcessError { cmdline: r.to_shell(), status: None, stderr: e.to_string() }),
            (Op::StateRemove { path }, _) => super::state::remove(path).map_err(|e| ProcessError {
                cmdline: r.to_shell(),
                status: None,
                stderr: e.to_string(),
            }),
            _ => {
                self.processes += 1;
                run_process_with(&r.argv(), r.stdin.as_deref(), r.host_netns_fd).map(|_| ())
            }
        }
    }
}

impl RealExecutor {
    /// Turns DeleteRulesByComment into DeleteRule ops for the rules there now.
    fn resolve_nft_purges(&mut self, ops: &[NftOp]) -> Result<Vec<NftOp>, ProcessError> {
        let mut out = Vec::new();
        for op in ops {
            // (table, chain, comment, whether the comment is only a prefix)
            let (table, chain, comment, prefix) = match op {
                NftOp::DeleteRulesByComment { table, chain, prefix } => (table, chain, prefix, true),
                NftOp::DeleteRulesWithComment { table, chain, comment } => (table, chain, comment, false),
                _ => {
                    out.push(op.clone());
                    continue;
                }
            };
            let wanted = |c: &str| if prefix { c.starts_with(comment.as_str()) } else { c == comment };
            let mut obs = observe::RealObserver::default();
            let rules = observe::nft_table_rules(&mut obs, table).map_err(|e| ProcessError {
                cmdline: format!("nft -j list table {table}"),
                status: None,
                stderr: e.msg,
            })?;
            self.processes += obs.processes;
            out.extend(
                rules
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|r| &r.chain == chain && wanted(&r.comment))
                    .map(|r| NftOp::DeleteRule { table: table.clone(), chain: chain.clone(), handle: r.handle }),
            );
        }
        Ok(out)
    }
}

/// The reference's schedule: checks after 0, 50, 500, 1000 and 1000 ms.
fn wait_oper_up(ns: &Netns, dev: &str, cmdline: &str) -> Result<(), ProcessError> {
    // The kernel's linkwatch reports a veth up a few ms after its peer came up. The
    // reference sleeps 50 ms before its second look; doubling from 1 ms finds it as soon
    // as it happens and still gives up after the reference's ~2.5 s.
    let mut delay = Duration::ZERO;
    let deadline = Instant::now() + Duration::from_millis(2550);
    let state = loop {
        std::thread::sleep(delay);
        let state = observe::operstate(ns, dev).unwrap_or_else(|e| e.to_string());
        if state == "up" {
            return Ok(());
        }
        if Instant::now() >= deadline {
            break state;
        }
        delay = (delay * 2).clamp(Duration::from_millis(1), Duration::from_millis(250));
    };
    Err(ProcessError {
        cmdline: cmdline.to_string(),
        status: None,
        stderr: format!("bridge port in error state: {state}"),
    })
}

fn wait_dad(ns: &Netns, dev: &str, cmdline: &str) -> Result<(), ProcessError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let link = observe::link_addrs(&mut observe::RealObserver::default(), ns, dev).map_err(|e| ProcessError {
            cmdline: cmdline.into(),
            status: None,
            stderr: e.msg,
        })?;
        let Some(link) = link else {
            return Err(ProcessError { cmdline: cmdline.into(), status: None, stderr: format!("{dev} is gone") });
        };
        if link.addr_info.iter().any(|a| a.dadfailed) {
            return Err(ProcessError {
                cmdline: cmdline.into(),
                status: None,
                stderr: format!("duplicate address detected on {dev}"),
            });
        }
        if !link.addr_info.iter().any(|a| a.tentative) {
            return Ok(());
        }
        if Instant::now() > deadline {
            if link.operstate.eq_ignore_ascii_case("up") {
                return Err(ProcessError {
                    cmdline: cmdline.into(),
                    status: None,
                    stderr: format!("timed out waiting for IPv6 DAD on {dev}"),
                });
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Executor for RealExecutor {
    fn run(&mut self, steps: &[Step]) -> Result<(), StepError> {
        match self.faults.take(steps.len()) {
            None => self.run_steps(steps),
            Some((k, global)) => {
                self.run_steps(&steps[..k])?;
                Err(StepError {
                    step: k,
                    error: ProcessError {
                        cmdline: steps[k].rendered().to_shell(),
                        status: None,
                        stderr: format!("injected failure ({}={global})", FaultInjection::ENV),
                    },
                })
            }
        }
    }
    fn is_real(&self) -> bool {
        true
    }
}

impl RealExecutor {
    fn run_steps(&mut self, steps: &[Step]) -> Result<(), StepError> {
        if super::session::enabled() {
            // A container's `ip` starts while the host side's steps run (they come first
            // in every plan that has both), instead of after them.
            let mut seen: Vec<&Netns> = Vec::new();
            for s in steps.iter().filter(|s| s.rendered().tool == Tool::Ip) {
                if !seen.contains(&&s.ns) {
                    seen.push(&s.ns);
                    super::session::prestart(&s.ns);
                }
            }
        }
        let mut i = 0;
        while i < steps.len() {
            let tool = steps[i].rendered().tool;
            if matches!(tool, Tool::Ip | Tool::Bridge | Tool::Tc) {
                let ns = &steps[i].ns;
                let end = steps[i..]
                    .iter()
                    .position(|s| &s.ns != ns || s.rendered().tool != tool)
                    .map_or(steps.len(), |n| i + n);
                self.run_batch(&steps[i..end], tool).map_err(|e| StepError { step: e.step + i, ..e })?;
                i = end;
                continue;
            }
            if let Err(error) = self.run_single(&steps[i]) {
                let kind = FailureKind::classify(&error.stderr);
                if !kind.tolerated_by(steps[i].tolerate) {
                    return Err(StepError { step: i, error });
                }
                log(&format!("ignored: {error}"));
            }
            i += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_failure_line_is_found() {
        assert_eq!(failed_batch_line("RTNETLINK answers: File exists\nCommand failed -:2\n"), Some(2));
        assert_eq!(failed_batch_line("Error: something"), None);
    }
}
