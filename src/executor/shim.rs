//! The task shim: the small supervisor every attempt runs under, so that no task process
//! (grandchildren and double-forked daemons included) outlives its executor.
//!
//! The executor starts its own program again in a hidden mode (`taskexecutor __shim LAUNCH`,
//! see [`run_if_requested`]; `jobmaster --local` does the same with its own binary), with one
//! end of a Unix socket pair as its standard input: the CHANNEL. (No hook runs between fork
//! and exec, so the executor starts shims with `posix_spawn`, without copying its own memory
//! map for each.) The shim, single-threaded and without a runtime:
//! - becomes a child subreaper, so every orphaned descendant of the task re-parents to it
//!   instead of to init;
//! - starts the task's command as described by the launch file (program, arguments,
//!   environment, the `executor.run-as` user) in a process group of its own, with a
//!   parent-death signal (reliable here: the shim has one thread), standard input from
//!   `/dev/null`, and reports one line on the CHANNEL: whether it started (`started PID`) or
//!   the OS error of the exec (`errno N`);
//! - watches the CHANNEL, its lifeline: the executor holds the only other end (close-on-exec,
//!   so no other child inherits it) and writes `T` to stop the task (SIGTERM
//!   to its group) and `K` to kill it (SIGKILL to the group and every descendant). End of
//!   file means the executor is gone, however it died (kill -9 included): not the
//!   parent-death signal, which fires when the *thread* that spawned a child exits;
//! - when the executor is gone, kills everything at once: SIGKILL to the group and to every
//!   descendant (found through `/proc`), no grace. Its heartbeat stream closed with it, and the
//!   JobMaster takes that for a dead executor and redeploys the attempt elsewhere at once, so
//!   nothing of the old attempt may run on;
//! - when the command ends, stops what it left: SIGTERM to the group and to every
//!   descendant, SIGKILL after the grace period;
//! - either way, SIGKILLs until it has no child left (a subreaper with no child has no
//!   descendant);
//! - then exits the way the command did: with its exit code, or killed by the same signal,
//!   so the executor reports `exit code N` or `killed by signal N` as before.
//!
//! An attempt owns its processes: what the task's main process leaves running when it ends
//! is stopped too, before the attempt is reported. Only processes that leave the shim's tree
//! escape: those another service starts on the task's behalf (`systemd-run`, `docker run`),
//! and those that re-parent outside it (e.g. into another pid namespace's init).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, killpg, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Gid, Pid, Uid, getpid, getppid, setgid, setgroups, setpgid, setuid};
use serde::{Deserialize, Serialize};

/// The first argument that turns the program into a shim.
pub const SHIM_ARG: &str = "__shim";

/// How often the shim looks for processes left while it kills them with SIGKILL.
const KILL_POLL: Duration = Duration::from_millis(50);

/// What the shim starts: written by the executor to the attempt's `launch.json` (mode 0600).
/// The shim's own argument list and environment stay free of the task's, so tools that
/// find task processes by their `JM_ATTEMPT_DIR` or command line see the task, not the shim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Launch {
    pub(crate) program: String,
    pub(crate) args: Vec<String>,
    /// Added to the shim's environment (the executor's, without its `JOBMASTER*` settings).
    pub(crate) env: Vec<(String, String)>,
    /// The user to switch to (`executor.run-as`), with its groups.
    pub(crate) user: Option<LaunchUser>,
    /// SIGTERM, then SIGKILL this long after, when stopping what is left.
    pub(crate) grace_ms: u64,
    /// Added to the shim's niceness (the executor's) for the command, up to 19.
    #[serde(default)]
    pub(crate) nice: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LaunchUser {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) groups: Vec<u32>,
}

/// What the shim reports on its REPORT pipe before it supervises the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Report {
    /// The command runs with this pid (its process group's id too).
    Started(u32),
    /// The command could not start: the OS error of the exec or of the user switch.
    Errno(i32),
    /// The shim itself could not do its work.
    Error(String),
}

impl Report {
    pub(crate) fn to_line(&self) -> String {
        match self {
            Report::Started(pid) => format!("started {pid}\n"),
            Report::Errno(n) => format!("errno {n}\n"),
            // One line: the reader takes everything up to the end.
            Report::Error(text) => format!("error {}\n", text.replace('\n', " ")),
        }
    }

    /// `None` for an empty or garbled report (the shim died before it wrote one).
    pub(crate) fn parse(text: &str) -> Option<Report> {
        let (word, rest) = text.trim_end().split_once(' ')?;
        match word {
            "started" => rest.parse().ok().map(Report::Started),
            "errno" => rest.parse().ok().map(Report::Errno),
            "error" => Some(Report::Error(rest.to_owned())),
            _ => None,
        }
    }
}

/// The arguments the executor starts a shim with (after the program name); its standard
/// input is the CHANNEL.
pub(crate) fn args(launch: &Path) -> Vec<OsString> {
    vec![SHIM_ARG.into(), launch.as_os_str().to_owned()]
}

/// Runs the shim and exits when the program was started as one (its first argument is
/// [`SHIM_ARG`]); returns at once otherwise. `taskexecutor` and `jobmaster` call it first
/// thing in `main`, before any thread or runtime starts.
pub fn run_if_requested() {
    let mut argv = std::env::args_os();
    if argv.nth(1).as_deref() != Some(OsStr::new(SHIM_ARG)) {
        return;
    }
    let rest: Vec<OsString> = argv.collect();
    let code = shim(&rest);
    std::process::exit(code)
}

/// The shim's life; returns its exit code unless it dies by the command's signal.
fn shim(args: &[OsString]) -> i32 {
    let (Some(control), Some(launch)) = (channel(), args.first()) else {
        eprintln!(
            "taskexecutor {SHIM_ARG}: internal mode of the executor, not for direct use \
             (expected LAUNCH-FILE, and a socket from the executor as standard input)"
        );
        return 126;
    };
    // The report goes out on the channel; closing this copy leaves the channel open.
    let Ok(mut report) = control.try_clone().map(std::fs::File::from) else {
        return 126;
    };
    // The channel must not leak into the task.
    for f in [control.as_fd(), report.as_fd()] {
        let _ = fcntl(f, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
    let started = start(Path::new(launch));
    let line = match &started {
        Ok(s) => Report::Started(s.command.as_raw() as u32),
        Err(e) => e.clone(),
    };
    // The executor may be gone already: then nobody reads it, and EOF on the lifeline ends
    // the task below.
    let _ = report.write_all(line.to_line().as_bytes());
    drop(report);
    match started {
        Ok(s) => {
            let status = supervise(s, &control);
            exit_like(status)
        }
        Err(Report::Errno(_)) => 127,
        Err(_) => 126,
    }
}

/// The CHANNEL: standard input, when it is a socket (the executor's end of the pair is the
/// other); `None` otherwise (started by hand, or by an executor of another protocol).
fn channel() -> Option<OwnedFd> {
    // SAFETY: only to ask what descriptor 0 is; nothing is closed through it.
    let stdin = unsafe { BorrowedFd::borrow_raw(0) };
    let stat = nix::sys::stat::fstat(stdin).ok()?;
    if nix::sys::stat::SFlag::from_bits_truncate(stat.st_mode) & nix::sys::stat::SFlag::S_IFMT
        != nix::sys::stat::SFlag::S_IFSOCK
    {
        return None;
    }
    // SAFETY: the executor handed this descriptor to the shim alone; the shim takes it over.
    Some(unsafe { OwnedFd::from_raw_fd(0) })
}

/// This process's niceness (0 when it cannot be read).
fn niceness() -> i32 {
    // getpriority(2) may return -1 as a value: only errno tells an error.
    nix::errno::Errno::clear();
    // SAFETY: a plain system call on this process.
    let n = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    if n == -1 && nix::errno::Errno::last_raw() != 0 {
        0
    } else {
        n
    }
}

/// A started command and what the shim supervises it with.
struct Started {
    command: Pid,
    signals: SignalFd,
    grace: Duration,
}

/// Becomes a subreaper, blocks the signals it reads from a signalfd, and starts the command.
fn start(launch: &Path) -> Result<Started, Report> {
    let text = std::fs::read(launch).map_err(|e| {
        Report::Error(format!(
            "cannot read the launch file {}: {e}",
            launch.display()
        ))
    })?;
    let launch: Launch = serde_json::from_slice(&text)
        .map_err(|e| Report::Error(format!("bad launch file {}: {e}", launch.display())))?;
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| Report::Error(format!("cannot become a child subreaper: {e}")))?;
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        mask.add(s);
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
        .map_err(|e| Report::Error(format!("cannot block signals: {e}")))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| Report::Error(format!("cannot open a signalfd: {e}")))?;
    let (program, args) = (&launch.program, &launch.args);
    let mut command = std::process::Command::new(program);
    command
        .stdin(std::process::Stdio::null())
        .args(args)
        .envs(launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let switch = launch.user.as_ref().map(|u| {
        (
            u.groups
                .iter()
                .map(|g| Gid::from_raw(*g))
                .collect::<Vec<_>>(),
            Gid::from_raw(u.gid),
            Uid::from_raw(u.uid),
        )
    });
    let shim = getpid();
    // Added to the shim's own niceness (the executor's), at most the lowest priority.
    let nice = (launch.nice > 0).then(|| (niceness() + launch.nice).min(19));
    // SAFETY: only async-signal-safe calls between fork and exec (plain system calls that do
    // not allocate); the shim has a single thread anyway.
    unsafe {
        command.pre_exec(move || {
            setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
            // The shim's blocked signals are not the task's business.
            SigSet::empty().thread_set_mask()?;
            // Lower than the executor's (before the switch: lowering needs no privilege).
            if let Some(nice) = nice
                && libc::setpriority(libc::PRIO_PROCESS, 0, nice) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // Groups first, then the group, then the user: each step needs root.
            if let Some((groups, gid, uid)) = &switch {
                setgroups(groups)?;
                setgid(*gid)?;
                setuid(*uid)?;
            }
            // After the switch: a change of user clears the parent-death signal. The shim has
            // one thread, so this fires exactly when the shim dies.
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            if getppid() != shim {
                // The shim died between fork and prctl. `std::process::exit` runs exit
                // handlers, which a forked child must not.
                libc::_exit(137);
            }
            Ok(())
        });
    }
    let child = command.spawn().map_err(|e| match e.raw_os_error() {
        Some(n) => Report::Errno(n),
        None => Report::Error(format!("cannot start {program:?}: {e}")),
    })?;
    // Not waited through `child`: the loop below reaps every child with waitpid.
    let pid = Pid::from_raw(child.id() as i32);
    Ok(Started {
        command: pid,
        signals,
        grace: Duration::from_millis(launch.grace_ms),
    })
}

/// What the supervision loop knows.
struct Watch {
    /// The command's wait status once it was reaped.
    status: Option<WaitStatus>,
    /// Whether the executor still holds the lifeline.
    lifeline: bool,
    /// When what is left got SIGTERM.
    stopping: Option<Instant>,
    /// SIGKILL everything until nothing is left.
    killing: bool,
}

/// Supervises the command until it and every descendant are gone; returns the command's
/// status (`None` when the executor is gone: nobody reads it).
fn supervise(s: Started, control: &OwnedFd) -> Option<WaitStatus> {
    let me = getpid();
    let mut w = Watch {
        status: None,
        lifeline: true,
        stopping: None,
        killing: false,
    };
    loop {
        let children = reap(s.command, &mut w.status);
        let group = w.status.is_none().then_some(s.command);
        if !w.lifeline && !w.killing {
            // The executor is gone: no grace (see the module's comment).
            w.killing = true;
            w.stopping.get_or_insert_with(Instant::now);
        }
        if w.status.is_some() && w.stopping.is_none() {
            w.stopping = Some(Instant::now());
            signal_all(me, group, Signal::SIGTERM);
        }
        if let Some(since) = w.stopping
            && (w.killing || since.elapsed() >= s.grace)
        {
            w.killing = true;
            signal_all(me, group, Signal::SIGKILL);
        }
        if !children {
            return if w.lifeline { w.status } else { None };
        }
        let timeout = match w.stopping {
            _ if w.killing => KILL_POLL,
            Some(since) => s.grace.saturating_sub(since.elapsed()).max(KILL_POLL),
            None => Duration::MAX,
        };
        wait_for_events(&s, control, timeout, &mut w, me);
    }
}

/// Polls the lifeline and the signalfd for at most `timeout` and handles what arrived.
fn wait_for_events(s: &Started, control: &OwnedFd, timeout: Duration, w: &mut Watch, me: Pid) {
    let timeout = if timeout == Duration::MAX {
        PollTimeout::NONE
    } else {
        PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX)
    };
    let mut fds = vec![PollFd::new(s.signals.as_fd(), PollFlags::POLLIN)];
    if w.lifeline {
        fds.push(PollFd::new(control.as_fd(), PollFlags::POLLIN));
    }
    match poll(&mut fds, timeout) {
        Ok(_) | Err(Errno::EINTR) => {}
        // Cannot wait: do not spin.
        Err(_) => std::thread::sleep(KILL_POLL),
    }
    let control_ready = fds
        .get(1)
        .and_then(PollFd::revents)
        .is_some_and(|r| !r.is_empty());
    let group = w.status.is_none().then_some(s.command);
    // Signals: SIGCHLD only wakes the loop, which reaps; SIGTERM to the shim is passed on.
    while let Ok(Some(info)) = s.signals.read_signal() {
        if info.ssi_signo == Signal::SIGTERM as u32
            && let Some(group) = group
        {
            let _ = killpg(group, Signal::SIGTERM);
        }
    }
    if control_ready {
        let mut buf = [0u8; 64];
        match nix::unistd::read(control.as_fd(), &mut buf) {
            Ok(0) => w.lifeline = false,
            Ok(n) => {
                for &b in &buf[..n] {
                    match b {
                        b'T' => {
                            if let Some(group) = group {
                                let _ = killpg(group, Signal::SIGTERM);
                            }
                        }
                        b'K' => {
                            w.killing = true;
                            w.stopping.get_or_insert_with(Instant::now);
                            signal_all(me, group, Signal::SIGKILL);
                        }
                        _ => {}
                    }
                }
            }
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(_) => w.lifeline = false,
        }
    }
}

/// Reaps every child that ended, noting the command's status; returns whether any child is
/// left.
fn reap(command: Pid, status: &mut Option<WaitStatus>) -> bool {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return true,
            Ok(s) => {
                if s.pid() == Some(command)
                    && matches!(s, WaitStatus::Exited(..) | WaitStatus::Signaled(..))
                {
                    *status = Some(s);
                }
            }
            Err(Errno::EINTR) => {}
            Err(Errno::ECHILD) => return false,
            // Should not happen; assume children are left and look again later.
            Err(_) => return true,
        }
    }
}

/// Sends `signal` to the command's group (while the command is not reaped: its pid then still
/// names the group) and to every descendant of the shim.
fn signal_all(me: Pid, group: Option<Pid>, signal: Signal) {
    if let Some(group) = group {
        let _ = killpg(group, signal);
    }
    for pid in descendants(me) {
        let _ = kill(pid, signal);
    }
}

/// Every live process below `root` in the process tree, read from `/proc`: by walking each
/// process's `task/TID/children` lists (what the shim's own tree costs), or, on a kernel
/// without them (`CONFIG_PROC_CHILDREN`), from every process's parent in `/proc/PID/stat`
/// (what every process on the host costs: each of a host's shims stopping at once made that
/// quadratic). A child that a list misses as it starts is found by the next pass: the shim
/// keeps signalling while it has children.
fn descendants(root: Pid) -> Vec<Pid> {
    match children_of(root.as_raw()) {
        Some(first) => {
            let mut found = Vec::new();
            let mut todo = first;
            while let Some(p) = todo.pop() {
                found.push(Pid::from_raw(p));
                todo.extend(children_of(p).unwrap_or_default());
            }
            found
        }
        None => descendants_by_scan(root),
    }
}

/// The children of every thread of `pid` (`/proc/PID/task/*/children`); `None` when the
/// kernel has no such lists (or `pid` is gone).
fn children_of(pid: i32) -> Option<Vec<i32>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut children = Vec::new();
    let mut listed = false;
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            listed = true;
            children.extend(
                text.split_whitespace()
                    .filter_map(|c| c.parse::<i32>().ok()),
            );
        }
    }
    listed.then_some(children)
}

/// [`descendants`] from the parent of every process in `/proc`.
fn descendants_by_scan(root: Pid) -> Vec<Pid> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some(ppid) = parent_of(pid) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut found = Vec::new();
    let mut todo = vec![root.as_raw()];
    while let Some(p) = todo.pop() {
        if let Some(kids) = children.get(&p) {
            for &k in kids {
                found.push(Pid::from_raw(k));
                todo.push(k);
            }
        }
    }
    found
}

/// The parent pid of `pid` (field 4 of /proc/PID/stat), `None` when it is gone.
pub(crate) fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; the fields after it do not.
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(1)?.parse().ok()
}

/// Exits the way the command did: its exit code, or death by its signal (without a core
/// dump of the shim). `None`: the executor is gone.
fn exit_like(status: Option<WaitStatus>) -> i32 {
    match status {
        Some(WaitStatus::Exited(_, code)) => code,
        Some(WaitStatus::Signaled(_, signal, _)) => {
            let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
            let default = nix::sys::signal::SigAction::new(
                nix::sys::signal::SigHandler::SigDfl,
                nix::sys::signal::SaFlags::empty(),
                SigSet::empty(),
            );
            // SAFETY: installs the default disposition, no handler.
            let _ = unsafe { nix::sys::signal::sigaction(signal, &default) };
            let mut one = SigSet::empty();
            one.add(signal);
            let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&one), None);
            let _ = nix::sys::signal::raise(signal);
            // A signal whose default is not to terminate: say which one as a shell would.
            128 + signal as i32
        }
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_survive_their_round_trip_and_garbage_is_no_report() {
        for r in [
            Report::Started(4242),
            Report::Errno(2),
            Report::Error("cannot read the launch file /x: gone".into()),
        ] {
            assert_eq!(Report::parse(&r.to_line()), Some(r.clone()), "{r:?}");
        }
        assert_eq!(
            Report::parse(&Report::Error("two\nlines".into()).to_line()),
            Some(Report::Error("two lines".into()))
        );
        for bad in ["", "started", "started x", "hello 1", "errno two"] {
            assert_eq!(Report::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_tree_below_this_process_holds_its_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("start sleep");
        let pid = Pid::from_raw(child.id() as i32);
        assert!(descendants(getpid()).contains(&pid));
        assert!(descendants_by_scan(getpid()).contains(&pid));
        assert_eq!(parent_of(pid.as_raw()), Some(getpid().as_raw()));
        let _ = child.kill();
        let _ = child.wait();
        assert!(!descendants(getpid()).contains(&pid));
        assert!(!descendants_by_scan(getpid()).contains(&pid));
    }

    #[test]
    fn grandchildren_are_descendants_too() {
        // A shell whose child sleeps: the sleep is a grandchild of this process.
        let mut shell = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & echo $!; wait"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start sh");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(shell.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("read the sleep's pid");
        let sleep = Pid::from_raw(line.trim().parse().expect("a pid"));
        let below = descendants(getpid());
        assert!(
            below.contains(&Pid::from_raw(shell.id() as i32)),
            "{below:?}"
        );
        assert!(below.contains(&sleep), "{below:?}");
        assert!(descendants_by_scan(getpid()).contains(&sleep));
        let _ = kill(sleep, Signal::SIGKILL);
        let _ = shell.wait();
    }
}
