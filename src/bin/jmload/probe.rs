//! CPU time and memory from /proc: of the daemon (its `jmd` threads when in-process, or the
//! process `--daemon-pid`), of the load generator (`jmgen` threads) and of the whole machine.

pub(crate) fn clock_ticks() -> u64 {
    if let Ok(aux) = std::fs::read("/proc/self/auxv") {
        for pair in aux.chunks_exact(16) {
            let k = u64::from_ne_bytes(pair[..8].try_into().unwrap_or_default());
            let v = u64::from_ne_bytes(pair[8..].try_into().unwrap_or_default());
            if k == 17 && v > 0 {
                return v;
            }
        }
    }
    100
}

/// utime + stime of a /proc stat line, in seconds.
pub(crate) fn stat_cpu(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After "pid (comm) ": state is field 3, utime 14, stime 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks() as f64)
}

#[derive(Clone, Copy, Default)]
pub(crate) struct ProcSample {
    pub(crate) cpu_s: f64,
    pub(crate) rss_kib: u64,
    pub(crate) hwm_kib: u64,
    pub(crate) threads: u64,
}

pub(crate) fn proc_sample(pid: &str) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Some(ProcSample {
        cpu_s: stat_cpu(&stat)?,
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        threads: field("Threads:"),
    })
}

/// CPU seconds of the live threads of process `pid` ("self" or a number) whose name starts
/// with `prefix` ("" for all): from schedstat (ns) where the kernel has it, else stat (ticks).
pub(crate) fn threads_cpu(pid: &str, prefix: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    dir.flatten()
        .filter_map(|t| {
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
            if !comm.starts_with(prefix) {
                return None;
            }
            if let Some(ns) = std::fs::read_to_string(t.path().join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            {
                return Some(ns as f64 / 1e9);
            }
            stat_cpu(&std::fs::read_to_string(t.path().join("stat")).ok()?)
        })
        .sum()
}

/// (busy, total) CPU seconds of the whole machine since boot, from /proc/stat.
pub(crate) fn machine_cpu() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    let hz = clock_ticks() as f64;
    Some(((total - idle) as f64 / hz, total as f64 / hz))
}

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Where the daemon's CPU time and memory come from.
pub(crate) struct Probe {
    pub(crate) pid: Option<u32>,
    pub(crate) in_process: bool,
}

#[derive(Clone, Copy, Default)]
pub(crate) struct CpuSample {
    pub(crate) daemon_s: Option<f64>,
    pub(crate) generator_s: f64,
    pub(crate) process: ProcSample,
    pub(crate) daemon: Option<ProcSample>,
}

impl Probe {
    /// Precise CPU seconds so far: (daemon if known, load generator).
    pub(crate) fn fine(&self) -> (Option<f64>, f64) {
        if self.in_process {
            (
                Some(threads_cpu("self", "jmd")),
                threads_cpu("self", "jmgen"),
            )
        } else {
            (
                self.pid.map(|p| threads_cpu(&p.to_string(), "")),
                threads_cpu("self", ""),
            )
        }
    }

    /// (machine busy, this process, external daemon) CPU seconds so far.
    pub(crate) fn machine(&self) -> (f64, f64, f64) {
        let busy = machine_cpu().map_or(0.0, |(b, _)| b);
        let me = proc_sample("self").map_or(0.0, |p| p.cpu_s);
        let daemon = if self.in_process {
            0.0
        } else {
            self.pid
                .and_then(|p| proc_sample(&p.to_string()))
                .map_or(0.0, |p| p.cpu_s)
        };
        (busy, me, daemon)
    }

    pub(crate) fn sample(&self) -> CpuSample {
        let me = proc_sample("self").unwrap_or_default();
        if self.in_process {
            CpuSample {
                daemon_s: Some(threads_cpu("self", "jmd")),
                generator_s: threads_cpu("self", "jmgen"),
                process: me,
                daemon: None,
            }
        } else {
            let daemon = self.pid.and_then(|p| proc_sample(&p.to_string()));
            CpuSample {
                daemon_s: daemon.map(|d| d.cpu_s),
                generator_s: me.cpu_s,
                process: me,
                daemon,
            }
        }
    }
}
