//! A network namespace joined to this one by a veth pair, for partition tests (root only). A
//! process started in it ([`Netns::launcher`]) reaches this namespace at [`Netns::host`] and
//! is reached at [`Netns::guest`]. [`Netns::partition`] drops every packet between the two with
//! iptables rules *inside* the namespace, so this namespace's own firewall (and whatever else
//! runs on the machine) is untouched; the rules go with the namespace.
//!
//! Dropping it — also when the test panics — kills what still runs inside and deletes the
//! namespace, its veth pair and its rules. Namespaces that a killed test run left behind
//! (`jmfence-PID-…` of a pid that is gone) are deleted by the next [`Netns::create`].

use std::net::Ipv4Addr;
use std::process::Command;

const PREFIX: &str = "jmfence-";

pub struct Netns {
    name: String,
    /// The veth end in this namespace.
    host_if: String,
    /// This namespace's address on the pair.
    pub host: Ipv4Addr,
    /// The namespace's address on the pair.
    pub guest: Ipv4Addr,
}

/// Runs `program args`, returning its stderr when it fails.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs it and panics with its stderr when it fails.
fn must(program: &str, args: &[&str]) -> String {
    run(program, args).unwrap_or_else(|e| panic!("{e}"))
}

impl Netns {
    /// A fresh namespace with its veth pair up, or why a partition test cannot run here (not
    /// root, or no right to create namespaces): the caller skips then, saying so. Missing
    /// tools are a failure (`.ci/run` installs iproute2 and iptables).
    pub fn create() -> Result<Netns, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("partition tests need root (network namespaces, iptables)".into());
        }
        for tool in ["ip", "iptables"] {
            if run("sh", &["-c", &format!("command -v {tool}")]).is_err() {
                panic!("{tool} is missing: install iproute2 and iptables (as .ci/run does)");
            }
        }
        remove_stale();
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{n}", std::process::id());
        if let Err(e) = run("ip", &["netns", "add", &name]) {
            if e.contains("Operation not permitted") || e.contains("Permission denied") {
                return Err(format!("cannot create a network namespace: {e}"));
            }
            panic!("{e}");
        }
        // The veth name is the lock on its /30: 198.18.K.0/30 (RFC 2544 benchmarking space,
        // routed nowhere), K tried from a pid-derived start until a name is free.
        let start = std::process::id() as usize;
        for i in 0..250 {
            let k = (start + i) % 250 + 1;
            let host_if = format!("jmf{k}");
            if let Err(e) = run(
                "ip",
                &[
                    "link", "add", &host_if, "type", "veth", "peer", "name", "jmg0", "netns", &name,
                ],
            ) {
                if e.contains("File exists") {
                    continue;
                }
                let _ = run("ip", &["netns", "del", &name]);
                panic!("{e}");
            }
            let netns = Netns {
                name,
                host_if,
                host: Ipv4Addr::new(198, 18, k as u8, 1),
                guest: Ipv4Addr::new(198, 18, k as u8, 2),
            };
            must(
                "ip",
                &[
                    "addr",
                    "add",
                    &format!("{}/30", netns.host),
                    "dev",
                    &netns.host_if,
                ],
            );
            must("ip", &["link", "set", &netns.host_if, "up"]);
            netns.exec(&[
                "ip",
                "addr",
                "add",
                &format!("{}/30", netns.guest),
                "dev",
                "jmg0",
            ]);
            netns.exec(&["ip", "link", "set", "jmg0", "up"]);
            netns.exec(&["ip", "link", "set", "lo", "up"]);
            return Ok(netns);
        }
        let _ = run("ip", &["netns", "del", &name]);
        panic!("no free veth name jmf1..jmf250");
    }

    /// The prefix that starts a program inside the namespace (`ip netns exec NAME`, which
    /// execs it: same pid).
    pub fn launcher(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.name]
    }

    /// Runs a command inside the namespace; panics if it fails.
    pub fn exec(&self, command: &[&str]) -> String {
        let mut args = vec!["netns", "exec", self.name.as_str()];
        args.extend_from_slice(command);
        must("ip", &args)
    }

    /// Drops every packet between the namespace and this one, both ways: a partition (no
    /// refusal, no reset: what a cut cable or a dead switch looks like).
    pub fn partition(&self) {
        let host = self.host.to_string();
        self.exec(&["iptables", "-I", "INPUT", "-s", &host, "-j", "DROP"]);
        self.exec(&["iptables", "-I", "OUTPUT", "-d", &host, "-j", "DROP"]);
    }

    /// Ends [`Netns::partition`].
    pub fn heal(&self) {
        let host = self.host.to_string();
        self.exec(&["iptables", "-D", "INPUT", "-s", &host, "-j", "DROP"]);
        self.exec(&["iptables", "-D", "OUTPUT", "-d", &host, "-j", "DROP"]);
    }

    /// Drops what reaches TCP port `port` in the namespace (a server there becomes a black
    /// hole: its clients' calls time out), nothing else.
    pub fn black_hole_port(&self, port: u16) {
        let port = port.to_string();
        self.exec(&[
            "iptables", "-I", "INPUT", "-p", "tcp", "--dport", &port, "-j", "DROP",
        ]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        kill_inside(&self.name);
        let _ = run("ip", &["netns", "del", &self.name]);
        // Deleting the namespace removes the pair, but asynchronously.
        let _ = run("ip", &["link", "del", &self.host_if]);
    }
}

/// SIGKILL to every process in namespace `name`.
fn kill_inside(name: &str) {
    if let Ok(pids) = run("ip", &["netns", "pids", name]) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: kill(2) on a process of the test's own namespace.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// Deletes the namespaces of test processes that are gone.
fn remove_stale() {
    let Ok(list) = run("ip", &["netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            kill_inside(name);
            let _ = run("ip", &["netns", "del", name]);
        }
    }
}
