//! The compose cluster of the chaos suite: `docker-compose.yml` plus `tests/chaos/compose.yml`
//! under a project name of its own, the jobmasters' ports published on free loopback ports, and
//! the means to break its containers (kill, pause, network disconnect, netem through `nsenter`
//! into a container's network namespace). Everything is read from the outside: `jmctl --output
//! json` from the host, the shared volume's files, `docker` itself.
//!
//! Waiting is polling with a deadline ([`eventually`]), never a bare sleep. Dropping the
//! cluster unpauses what is paused and removes the project with its volumes
//! (`JM_CHAOS_KEEP=1` keeps it, for a look after a failure).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const JMCTL: &str = env!("CARGO_BIN_EXE_jmctl");
pub const EXECUTORS: [&str; 3] = ["tm-1", "tm-2", "tm-3"];
pub const JOBMASTERS: [&str; 2] = ["jm-1", "jm-2"];
pub const ETCD: [&str; 3] = ["etcd-1", "etcd-2", "etcd-3"];

/// The repository root (docker-compose.yml, examples/).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Polls `probe` until it returns `Ok`, for at most `within`; panics with the last `Err`.
pub fn eventually<T>(
    what: &str,
    within: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match probe() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {within:?} waiting until {what}; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Runs `program args`; its standard output, or `Err` with its standard error.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {} ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }
}

/// `run`, panicking on failure.
pub fn must(program: &str, args: &[&str]) -> String {
    run(program, args).unwrap_or_else(|e| panic!("{e}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The images the cluster runs (scripts/build-images.sh makes them).
pub fn images() -> [String; 2] {
    [
        std::env::var("JOBMASTER_IMAGE").unwrap_or_else(|_| "jobmaster:dev".into()),
        std::env::var("JOBMASTER_ETCD_IMAGE").unwrap_or_else(|_| "jobmaster-etcd:dev".into()),
    ]
}

/// A running compose cluster.
pub struct Chaos {
    pub project: String,
    /// The host's working folder of this run: credentials, job specs.
    pub dir: PathBuf,
    /// The shared volume's folder on the host (`/shared` in the executors).
    pub shared: PathBuf,
    ports: Vec<(String, String)>,
    token: String,
    endpoint: String,
}

impl Chaos {
    /// `docker-compose up` of a fresh project; returns once a jobmaster leads and the three
    /// executors are registered with it.
    pub fn up(name: &str) -> Chaos {
        let project = format!("{name}{}", std::process::id());
        let dir = std::env::temp_dir().join(format!("jobmaster-{project}"));
        std::fs::create_dir_all(&dir).expect("create the run's folder");
        let ports: Vec<(String, String)> = [
            "JM1_GRPC_PORT",
            "JM1_HTTP_PORT",
            "JM2_GRPC_PORT",
            "JM2_HTTP_PORT",
        ]
        .iter()
        .map(|k| ((*k).to_owned(), free_port().to_string()))
        .collect();
        let endpoint = format!(
            "https://127.0.0.1:{},https://127.0.0.1:{}",
            ports[0].1, ports[2].1
        );
        let mut chaos = Chaos {
            project,
            dir,
            shared: PathBuf::new(),
            ports,
            token: String::new(),
            endpoint,
        };
        let started = Instant::now();
        chaos
            .compose(&["up", "-d", "--quiet-pull"])
            .unwrap_or_else(|e| panic!("{e}"));
        let certs = chaos.container("certs");
        for f in ["ca.pem", "operator.token"] {
            let to = chaos.dir.join(f);
            must(
                "docker",
                &[
                    "cp",
                    &format!("{certs}:/certs/{f}"),
                    &to.display().to_string(),
                ],
            );
        }
        chaos.token = std::fs::read_to_string(chaos.dir.join("operator.token"))
            .expect("the operator token")
            .trim()
            .to_owned();
        chaos.shared = PathBuf::from(
            must(
                "docker",
                &[
                    "volume",
                    "inspect",
                    "-f",
                    "{{.Mountpoint}}",
                    &format!("{}_shared", chaos.project),
                ],
            )
            .trim(),
        );
        chaos.wait_leader(Duration::from_secs(90));
        chaos.wait_executors(&EXECUTORS, Duration::from_secs(60));
        println!(
            "chaos: cluster {} up in {:.1} s",
            chaos.project,
            started.elapsed().as_secs_f64()
        );
        chaos
    }

    /// `docker-compose -p PROJECT -f docker-compose.yml -f tests/chaos/compose.yml ARGS`.
    pub fn compose(&self, args: &[&str]) -> Result<String, String> {
        let repo = repo();
        let out = Command::new("docker-compose")
            .current_dir(&repo)
            .args([
                "-p",
                &self.project,
                "-f",
                "docker-compose.yml",
                "-f",
                "tests/chaos/compose.yml",
            ])
            .args(args)
            .envs(self.ports.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("EXECUTOR_SLOTS", "8")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("docker-compose: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "docker-compose {} ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// The container id of `service`.
    pub fn container(&self, service: &str) -> String {
        let id = must(
            "docker",
            &[
                "ps",
                "-aq",
                "--no-trunc",
                "--filter",
                &format!("label=com.docker.compose.project={}", self.project),
                "--filter",
                &format!("label=com.docker.compose.service={service}"),
            ],
        );
        id.lines()
            .next()
            .unwrap_or_else(|| panic!("no container of {service}"))
            .to_owned()
    }

    /// `jmctl --output json ARGS` against the cluster, as the operator.
    pub fn jmctl(&self, args: &[&str]) -> Result<Value, String> {
        let out = Command::new(JMCTL)
            .args(["--output", "json"])
            .args(args)
            .env("JOBMASTER_ENDPOINT", &self.endpoint)
            .env("JOBMASTER_TLS_CA", self.dir.join("ca.pem"))
            .env("JOBMASTER_TOKEN", &self.token)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("jmctl: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "jmctl {} ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("jmctl {}: not JSON: {e}", args.join(" ")))
    }

    /// The service that leads (`jm-1` or `jm-2`) and its epoch, if one does.
    pub fn leader(&self) -> Result<(String, u64), String> {
        let l = self.jmctl(&["leader"])?;
        let endpoint = l["leader_endpoint"].as_str().unwrap_or_default();
        let service = JOBMASTERS
            .iter()
            .find(|s| endpoint.contains(&format!("//{s}:")))
            .ok_or_else(|| format!("leader endpoint {endpoint:?}"))?;
        Ok(((*service).to_owned(), l["epoch"].as_u64().unwrap_or(0)))
    }

    pub fn wait_leader(&self, within: Duration) -> (String, u64) {
        eventually("a jobmaster leads", within, || self.leader())
    }

    /// The registered executors' ids, sorted.
    pub fn executors(&self) -> Result<Vec<String>, String> {
        let list = self.jmctl(&["executors"])?;
        let mut ids: Vec<String> = list
            .as_array()
            .ok_or("executors: not an array")?
            .iter()
            .filter_map(|e| e["id"].as_str().map(str::to_owned))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Waits until exactly `ids` are registered.
    pub fn wait_executors(&self, ids: &[&str], within: Duration) {
        let want: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
        eventually(&format!("executors {want:?} registered"), within, || {
            let have = self.executors()?;
            if have == want {
                Ok(())
            } else {
                Err(format!("registered: {have:?}"))
            }
        });
    }

    /// Submits the JSON spec; returns the job id.
    pub fn submit(&self, name: &str, spec: &Value) -> String {
        let path = self.dir.join(format!("{name}.json"));
        std::fs::write(&path, spec.to_string()).expect("write the spec");
        let answer = self
            .jmctl(&["submit", &path.display().to_string()])
            .unwrap_or_else(|e| panic!("{e}"));
        answer["job_id"].as_str().expect("a job id").to_owned()
    }

    /// `jmctl status JOB` as JSON.
    pub fn status(&self, job: &str) -> Result<Value, String> {
        self.jmctl(&["status", job, "--limit", "10000"])
    }

    pub fn docker(&self, verb: &str, service: &str) {
        must("docker", &[verb, &self.container(service)]);
    }

    pub fn kill(&self, service: &str) {
        self.docker("kill", service);
    }

    pub fn start(&self, service: &str) {
        self.docker("start", service);
    }

    pub fn pause(&self, service: &str) {
        self.docker("pause", service);
    }

    pub fn unpause(&self, service: &str) {
        self.docker("unpause", service);
    }

    fn network(&self) -> String {
        format!("{}_cluster", self.project)
    }

    /// Cuts `service` off the cluster's network (both sides stay alive).
    pub fn disconnect(&self, service: &str) {
        must(
            "docker",
            &[
                "network",
                "disconnect",
                &self.network(),
                &self.container(service),
            ],
        );
    }

    /// Puts `service` back on the network under its name.
    pub fn connect(&self, service: &str) {
        must(
            "docker",
            &[
                "network",
                "connect",
                "--alias",
                service,
                &self.network(),
                &self.container(service),
            ],
        );
    }

    /// The host pid of `service`'s first process (for its namespaces).
    pub fn pid(&self, service: &str) -> String {
        must(
            "docker",
            &["inspect", "-f", "{{.State.Pid}}", &self.container(service)],
        )
        .trim()
        .to_owned()
    }

    /// `tc qdisc replace dev eth0 root netem NETEM...` inside `service`'s network namespace
    /// (`nsenter` from the host: the image needs neither iproute2 nor NET_ADMIN). `Err` when
    /// it fails, e.g. on a kernel without `sch_netem`.
    pub fn netem(&self, service: &str, netem: &[&str]) -> Result<String, String> {
        let pid = self.pid(service);
        let mut args = vec![
            "-t", &pid, "-n", "tc", "qdisc", "replace", "dev", "eth0", "root", "netem",
        ];
        args.extend_from_slice(netem);
        run("nsenter", &args)
    }

    /// Drops `percent` % of the packets in and out of `service` (iptables' statistic match in
    /// its network namespace): the loss half of netem, for kernels without `sch_netem`.
    pub fn random_loss(&self, service: &str, percent: u32) {
        let pid = self.pid(service);
        let p = format!("{:.2}", f64::from(percent) / 100.0);
        for chain in ["INPUT", "OUTPUT"] {
            must(
                "nsenter",
                &[
                    "-t",
                    &pid,
                    "-n",
                    "iptables",
                    "-A",
                    chain,
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &p,
                    "-j",
                    "DROP",
                ],
            );
        }
    }

    /// Removes what [`Chaos::random_loss`] added.
    pub fn clear_loss(&self, service: &str) -> Result<String, String> {
        let pid = self.pid(service);
        run("nsenter", &["-t", &pid, "-n", "iptables", "-F", "INPUT"])?;
        run("nsenter", &["-t", &pid, "-n", "iptables", "-F", "OUTPUT"])
    }

    /// Removes what [`Chaos::netem`] added (`Err` when there was nothing to remove).
    pub fn clear_netem(&self, service: &str) -> Result<String, String> {
        let pid = self.pid(service);
        run(
            "nsenter",
            &[
                "-t", &pid, "-n", "tc", "qdisc", "del", "dev", "eth0", "root",
            ],
        )
    }

    /// Starts `service` again if it does not run.
    pub fn ensure_running(&self, service: &str) {
        let id = self.container(service);
        let state = must(
            "docker",
            &["inspect", "-f", "{{.State.Running}} {{.State.Paused}}", &id],
        );
        match state.trim() {
            "true true" => self.unpause(service),
            "false false" => self.start(service),
            _ => {}
        }
    }

    /// The HTTP status of `service`'s `/healthz`, asked inside its container (200: it leads,
    /// 503: it stands by).
    pub fn healthz(&self, service: &str) -> Result<String, String> {
        run(
            "docker",
            &[
                "exec",
                &self.container(service),
                "curl",
                "-sk",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "2",
                "https://127.0.0.1:8081/healthz",
            ],
        )
        .map(|s| s.trim().to_owned())
    }

    /// Live task processes in `service`'s container: (job, task, attempt) from their
    /// environment, read through the host's /proc.
    pub fn task_processes(&self, service: &str) -> Vec<(String, String, u32)> {
        let Ok(top) = run("docker", &["top", &self.container(service), "-eo", "pid"]) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for pid in top
            .lines()
            .skip(1)
            .filter_map(|l| l.trim().parse::<u32>().ok())
        {
            let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|s| matches!(s, "Z" | "X"));
            if zombie {
                continue;
            }
            let env: std::collections::BTreeMap<String, String> = environ
                .split(|b| *b == 0)
                .filter_map(|kv| {
                    let kv = String::from_utf8_lossy(kv);
                    let (k, v) = kv.split_once('=')?;
                    k.starts_with("JM_").then(|| (k.to_owned(), v.to_owned()))
                })
                .collect();
            if let (Some(job), Some(v), Some(s), Some(a)) = (
                env.get("JM_JOB_ID"),
                env.get("JM_VERTEX"),
                env.get("JM_SUBTASK"),
                env.get("JM_ATTEMPT").and_then(|a| a.parse().ok()),
            ) {
                found.push((job.clone(), format!("{v}#{s}"), a));
            }
        }
        found
    }

    /// The etcd member that leads raft (`etcd-1`…), asked from `from`'s container.
    pub fn etcd_leader(&self, from: &str) -> Result<String, String> {
        let endpoints = ETCD
            .iter()
            .map(|m| format!("http://{m}:2379"))
            .collect::<Vec<_>>()
            .join(",");
        let out = run(
            "docker",
            &[
                "exec",
                &self.container(from),
                "etcdctl",
                &format!("--endpoints={endpoints}"),
                "endpoint",
                "status",
                "-w",
                "json",
            ],
        )?;
        let status: Value =
            serde_json::from_str(&out).map_err(|e| format!("etcdctl: not JSON: {e}: {out}"))?;
        status
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| {
                let s = &m["Status"];
                s["leader"].as_u64().is_some() && s["leader"] == s["header"]["member_id"]
            })
            .and_then(|m| {
                let e = m["Endpoint"].as_str()?;
                ETCD.iter().find(|n| e.contains(&format!("//{n}:")))
            })
            .map(|n| (*n).to_owned())
            .ok_or_else(|| format!("no raft leader in {out}"))
    }

    /// The Unix times (seconds) of the lines of `service`'s log since `since` (Unix seconds)
    /// that contain `needle`, by docker's own timestamps (the containers share the host's
    /// clock).
    pub fn log_times(&self, service: &str, since: f64, needle: &str) -> Vec<f64> {
        let since = format!("{since:.6}");
        let Ok(out) = Command::new("docker")
            .args(["logs", "-t", "--since", &since, &self.container(service)])
            .stdin(Stdio::null())
            .output()
        else {
            return Vec::new();
        };
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        let mut times: Vec<f64> = text
            .lines()
            .filter(|l| l.contains(needle))
            .filter_map(|l| {
                let stamp = l.split_whitespace().next()?;
                let t = humantime::parse_rfc3339(stamp).ok()?;
                Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64())
            })
            .collect();
        times.sort_by(f64::total_cmp);
        times
    }

    /// The last lines of every service's log (after a failure).
    pub fn print_logs(&self) {
        if let Ok(logs) = self.compose(&["logs", "--no-color", "--tail", "40"]) {
            eprintln!("----- docker-compose logs (last 40 lines per service) -----\n{logs}");
        }
    }

    pub fn path_in_shared(&self, rel: &str) -> PathBuf {
        self.shared.join(rel)
    }
}

impl Drop for Chaos {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
        }
        for s in EXECUTORS.iter().chain(&JOBMASTERS).chain(&ETCD) {
            let id = self.container(s);
            if run("docker", &["inspect", "-f", "{{.State.Paused}}", &id])
                .is_ok_and(|p| p.trim() == "true")
            {
                let _ = run("docker", &["unpause", &id]);
            }
        }
        if std::env::var_os("JM_CHAOS_KEEP").is_some() {
            eprintln!(
                "chaos: kept project {} ({})",
                self.project,
                self.dir.display()
            );
            return;
        }
        let _ = self.compose(&["down", "-v", "-t", "1"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Creates the empty file `path` (a gate in the shared volume), with its folders.
pub fn touch(path: &Path) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create a folder in the shared volume");
    }
    std::fs::write(path, b"").expect("write a file in the shared volume");
}
