//! The daemons' log output as a script or a log shipper sees it: both binaries take the one
//! flag `--log-format text|json` (the taskexecutor's old `--log-json` still works), and text
//! written to a pipe carries no ANSI colour codes.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const JOBMASTER: &str = env!("CARGO_BIN_EXE_jobmaster");
const TASKEXECUTOR: &str = env!("CARGO_BIN_EXE_taskexecutor");
/// Generous: a noisy 2-core machine may take a while to start a process.
const WAIT: Duration = Duration::from_secs(30);

/// A daemon started with its stdout and stderr piped, stopped with SIGTERM (then SIGKILL)
/// when dropped.
struct Daemon {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Daemon {
    fn start(program: &str, args: &[&str], dir: &std::path::Path) -> Daemon {
        let mut child = Command::new(program)
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("NO_COLOR")
            .env("TMPDIR", dir)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        let (tx, lines) = mpsc::channel();
        for out in [
            Box::new(child.stdout.take().expect("piped stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("piped stderr")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Daemon {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines until one contains `needle`; returns every line read so far.
    fn read_until(&mut self, needle: &str) -> &[String] {
        let deadline = Instant::now() + WAIT;
        while !self.seen.iter().any(|l| l.contains(needle)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "no line with {needle:?} within {WAIT:?}; output so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
        &self.seen
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            // Polling the child's exit, not waiting for a condition by sleeping.
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("log_output-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test's folder");
    dir
}

fn assert_no_colour(lines: &[String], who: &str) {
    for line in lines {
        assert!(
            !line.contains('\u{1b}'),
            "{who} wrote an escape sequence to a pipe: {line:?}"
        );
    }
}

fn assert_json_lines(lines: &[String], who: &str) {
    let logs: Vec<&String> = lines.iter().filter(|l| l.starts_with('{')).collect();
    assert!(!logs.is_empty(), "{who}: no JSON log line in {lines:?}");
    for line in logs {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{who}: not a JSON log line ({e}): {line:?}"));
        assert!(value["level"].is_string(), "{who}: {line}");
    }
}

const JOBMASTER_ARGS: &[&str] = &["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"];

fn executor_args(dir: &std::path::Path) -> Vec<String> {
    // No jobmaster listens on port 1: the executor starts, logs, and keeps trying.
    [
        "--jobmaster",
        "http://127.0.0.1:1",
        "--listen",
        "127.0.0.1:0",
        "--id",
        "tm-log",
        "--data-dir",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([dir.join("data").display().to_string()])
    .collect()
}

#[test]
fn text_logs_written_to_a_pipe_carry_no_colour_codes() {
    let dir = scratch("text");
    let mut jobmaster = Daemon::start(JOBMASTER, JOBMASTER_ARGS, &dir);
    let lines = jobmaster.read_until("jobmaster listening");
    assert_no_colour(lines, "jobmaster");
    assert!(
        lines.iter().any(|l| l.contains("INFO")),
        "text lines: {lines:?}"
    );

    let args = executor_args(&dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut executor = Daemon::start(TASKEXECUTOR, &args, &dir);
    let lines = executor.read_until("executor started");
    assert_no_colour(lines, "taskexecutor");
}

#[test]
fn both_daemons_accept_log_format_json_and_the_executor_still_accepts_log_json() {
    let dir = scratch("json");
    let mut args = JOBMASTER_ARGS.to_vec();
    args.extend(["--log-format", "json"]);
    let mut jobmaster = Daemon::start(JOBMASTER, &args, &dir);
    assert_json_lines(jobmaster.read_until("jobmaster listening"), "jobmaster");

    for flags in [&["--log-format", "json"][..], &["--log-json"][..]] {
        let mut args = executor_args(&dir.join(flags.join("")));
        args.extend(flags.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut executor = Daemon::start(TASKEXECUTOR, &args, &dir);
        let who = format!("taskexecutor {}", flags.join(" "));
        assert_json_lines(executor.read_until("executor started"), &who);
    }
}

#[test]
fn log_format_is_in_both_daemons_help_and_log_json_is_not() {
    for program in [JOBMASTER, TASKEXECUTOR] {
        let out = Command::new(program)
            .arg("--help")
            .env_remove("NO_COLOR")
            .output()
            .expect("run --help");
        assert!(out.status.success(), "{program} --help failed");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("--log-format <FORMAT>"), "{program}: {help}");
        assert!(!help.contains("--log-json"), "{program}: {help}");
        assert!(
            !help.contains('\u{1b}'),
            "{program} help to a pipe: {help:?}"
        );
    }
}
