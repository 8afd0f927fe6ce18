//! Executors: the only code (with the IPAM store) that changes the system.
//! `real` runs plans through `ip -batch`, `nsenter`, /proc/sys and firewall tools;
//! `DryRun` records without running; `Recording` records and can fail at step k.
//! `observe` reads kernel state with `ip -j` (and iptables/nft listings).

pub mod lock;
pub mod observe;
pub mod real;
pub mod session;
pub mod state;

use std::fmt;

use crate::plan::{Op, Plan, Step, Tolerate};
use crate::spec::{CniError, code};

/// A failed command: what ran, how it ended and what it said (cargo's ProcessError).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessError {
    /// The command line as a shell would show it.
    pub cmdline: String,
    /// The exit status; None when it was killed or could not start.
    pub status: Option<i32>,
    pub stderr: String,
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(s) => write!(f, "`{}` failed with exit status {s}", self.cmdline)?,
            None => write!(f, "`{}` could not run", self.cmdline)?,
        }
        let err = self.stderr.trim();
        if !err.is_empty() {
            write!(f, ": {err}")?;
        }
        Ok(())
    }
}

/// How a failure relates to what the step wanted, read from the tool's stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Exists,
    Missing,
    Other,
}

impl FailureKind {
    pub fn classify(stderr: &str) -> FailureKind {
        const EXISTS: [&str; 2] = ["File exists", "already exists"];
        const MISSING: [&str; 11] = [
            "Cannot find device",
            "does not exist",
            "No such device",
            "Address not found",
            "No such process",
            "Cannot assign requested address",
            "No such file or directory",
            "Bad rule (does a matching rule exist in that chain?)",
            "No chain/target/match by that name",
            "Could not process rule: No such file",
            "doesn't exist",
        ];
        if EXISTS.iter().any(|m| stderr.contains(m)) {
            FailureKind::Exists
        } else if MISSING.iter().any(|m| stderr.contains(m)) {
            FailureKind::Missing
        } else {
            FailureKind::Other
        }
    }

    pub fn tolerated_by(self, t: Tolerate) -> bool {
        matches!(
            (t, self),
            (Tolerate::Any, _) | (Tolerate::Exists, FailureKind::Exists) | (Tolerate::Missing, FailureKind::Missing)
        )
    }
}

/// A step of a plan that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    /// Index into the plan's steps.
    pub step: usize,
    pub error: ProcessError,
}

impl From<StepError> for CniError {
    fn from(e: StepError) -> CniError {
        CniError::new(code::COMMAND_FAILED, e.error.to_string())
    }
}

pub trait Executor {
    /// Runs `steps` in order, honouring each step's `tolerate`. Returns the first
    /// failure that is not tolerated; steps before it have taken effect.
    fn run(&mut self, steps: &[Step]) -> Result<(), StepError>;

    /// Whether this executor changes the system (false for dry-run and recording).
    fn is_real(&self) -> bool;
}

/// Runs a plan; if a step fails, runs the undo ops of the steps that succeeded,
/// newest first and best-effort, and returns the failure.
///
/// First, every step and undo must reach its tool exactly as typed
/// (`Rendered::check_faithful`, `FirewallOp::check_script`); otherwise nothing runs.
/// Config values are validated long before, but names read back from the kernel are
/// not: the kernel allows `#`, quotes and control characters in a link's name, and a
/// container may name its links so.
pub fn apply(exec: &mut dyn Executor, plan: &Plan) -> Result<(), CniError> {
    for s in &plan.steps {
        let undo = s.undo.as_ref().map(|u| (s.undo_ns.as_ref().unwrap_or(&s.ns), u));
        for (ns, op) in std::iter::once((&s.ns, &s.op)).chain(undo) {
            let r = crate::plan::render(ns, op);
            let checked = match op {
                Op::Firewall(f) => r.check_faithful().and_then(|()| f.check_script()),
                _ => r.check_faithful(),
            };
            if let Err(why) = checked {
                return Err(CniError::new(
                    code::COMMAND_FAILED,
                    format!("`{}` refused before running anything: {why}", r.to_shell()),
                ));
            }
        }
    }
    match exec.run(&plan.steps) {
        Ok(()) => Ok(()),
        Err(e) => {
            let undo = undo_steps(&plan.steps[..e.step]);
            if let Err(undo_err) = exec.run(&undo) {
                log(&format!("rollback step failed (continuing): {}", undo_err.error));
            }
            Err(e.into())
        }
    }
}

fn undo_steps(done: &[Step]) -> Vec<Step> {
    done.iter()
        .rev()
        .filter_map(|s| {
            let ns = s.undo_ns.clone().unwrap_or_else(|| s.ns.clone());
            s.undo.clone().map(|op| Step { ns, op, tolerate: Tolerate::Any, undo: None, undo_ns: None })
        })
        .collect()
}

/// Logs go to stderr (stdout is for the CNI result only).
pub fn log(msg: &str) {
    eprintln!("ipcni: {msg}");
}

/// With IPCNI_TRACE set, logs `what` with the milliseconds since the first trace call,
/// so an operator can see where an invocation's time goes without strace's distortion.
pub fn trace(what: impl FnOnce() -> String) {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Option<Instant>> = OnceLock::new();
    if let Some(start) = START.get_or_init(|| std::env::var_os("IPCNI_TRACE").map(|_| Instant::now())) {
        log(&format!("trace {:8.3} ms {}", start.elapsed().as_secs_f64() * 1000.0, what()));
    }
}

/// Collects the steps it is given; fails at a chosen step (fault injection for tests).
#[derive(Debug, Default)]
pub struct Recording {
    pub steps: Vec<Step>,
    pub fail_at: Option<usize>,
    seen: usize,
}

impl Recording {
    pub fn failing_at(k: usize) -> Recording {
        Recording { fail_at: Some(k), ..Recording::default() }
    }
}

impl Executor for Recording {
    fn run(&mut self, steps: &[Step]) -> Result<(), StepError> {
        for (i, s) in steps.iter().enumerate() {
            if self.fail_at == Some(self.seen) {
                self.seen += 1;
                return Err(StepError {
                    step: i,
                    error: ProcessError {
                        cmdline: s.rendered().to_shell(),
                        status: Some(2),
                        stderr: "injected failure".into(),
                    },
                });
            }
            self.seen += 1;
            self.steps.push(s.clone());
        }
        Ok(())
    }
    fn is_real(&self) -> bool {
        false
    }
}

/// Keeps the plan to print it; runs nothing.
#[derive(Debug, Default)]
pub struct DryRun {
    pub plan: Plan,
}

impl Executor for DryRun {
    fn run(&mut self, steps: &[Step]) -> Result<(), StepError> {
        self.plan.steps.extend(steps.iter().cloned());
        Ok(())
    }
    fn is_real(&self) -> bool {
        false
    }
}

/// Ops whose undo is itself obvious, for planners.
pub fn undo_of(op: &Op) -> Option<Op> {
    match op {
        Op::LinkAdd(l) => Some(Op::LinkDel { dev: l.name().to_string() }),
        Op::AddrAdd { dev, addr } => Some(Op::AddrDel { dev: dev.clone(), addr: *addr }),
        Op::RouteAdd { route, .. } => Some(Op::RouteDel { route: route.clone() }),
        Op::FdbAppend { dev, mac, dst } => Some(Op::FdbDel { dev: dev.clone(), mac: mac.clone(), dst: *dst }),
        Op::StateWrite { path, .. } => Some(Op::StateRemove { path: path.clone() }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{LinkAdd, LinkSet, Netns};

    #[test]
    fn failure_runs_undo_of_completed_steps_newest_first() {
        let mut plan = Plan::new();
        let add = Op::LinkAdd(LinkAdd::Bridge { name: "br0".into(), mtu: None, mac: None, vlan_filtering: false });
        plan.push(&Netns::Host, add.clone()).undo(undo_of(&add).unwrap());
        plan.push(&Netns::Host, Op::LinkSet(LinkSet::up("br0")));
        plan.push(&Netns::Host, Op::LinkSet(LinkSet::up("br1")));
        let mut rec = Recording::failing_at(2);
        let err = apply(&mut rec, &plan).unwrap_err();
        assert_eq!(err.code, code::COMMAND_FAILED);
        assert!(err.msg.contains("ip link set dev br1 up"), "{}", err.msg);
        let ops: Vec<&Op> = rec.steps.iter().map(|s| &s.op).collect();
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[2], &Op::LinkDel { dev: "br0".into() });
    }

    #[test]
    fn classify_reads_iproute2_and_iptables_messages() {
        assert_eq!(FailureKind::classify("RTNETLINK answers: File exists"), FailureKind::Exists);
        assert_eq!(FailureKind::classify("Cannot find device \"eth0\""), FailureKind::Missing);
        assert_eq!(FailureKind::classify("Error: ipv4: Address not found."), FailureKind::Missing);
        assert_eq!(FailureKind::classify("RTNETLINK answers: Operation not permitted"), FailureKind::Other);
    }
}
