//! HA clusters for the process tier: a real etcd (1 or 3 members on loopback ports, from
//! Debian's `etcd-server`), several `jobmaster --ha etcd` processes, and the taskexecutors of a
//! [`Cluster`] that know every jobmaster's endpoint (`--jobmaster URL,URL,...`).
//!
//! Everything is killed when dropped. Tests that need etcd skip (with a message) when the
//! `etcd` binary is missing; `.ci/run` installs it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use jobmaster::api::v1::GetLeaderRequest;
use jobmaster::api::v1::job_master_service_client::JobMasterServiceClient;
use tonic::transport::Channel;

use super::{BASE_ENV, Cluster, JOBMASTER, eventually};

/// Whether etcd is installed (tests skip without it).
pub fn etcd_available() -> bool {
    Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A free loopback port (bound and released: another process could take it first, which the
/// callers' retries cover).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

/// An etcd cluster of child processes.
pub struct Etcd {
    root: PathBuf,
    members: Vec<Member>,
}

impl Etcd {
    /// Starts `n` members under `root/etcd` and waits until the cluster answers.
    pub async fn start(root: &Path, n: usize) -> Etcd {
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_port(),
                peer: free_port(),
                child: None,
            })
            .collect();
        let mut etcd = Etcd {
            root: root.join("etcd"),
            members,
        };
        for i in 0..n {
            etcd.spawn(i, "new");
        }
        etcd.wait_healthy().await;
        etcd
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let cluster = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let m = &self.members[i];
        std::fs::create_dir_all(&self.root).expect("etcd dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join(format!("{}.log", m.name)))
            .expect("etcd log");
        let client = format!("http://127.0.0.1:{}", m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let child = Command::new("etcd")
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(self.root.join(&m.name))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args([
                "--initial-cluster",
                &cluster,
                "--initial-cluster-state",
                state,
            ])
            .args(["--initial-cluster-token", "jobmaster-test"])
            // Fast elections on loopback (the defaults are 100 ms / 1 s).
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone"))
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.members[i].child = Some(child);
    }

    /// The client URLs, comma-separated.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A client of the whole cluster.
    pub fn client(&self) -> jobmaster::ha::etcd::Etcd {
        let endpoints: Vec<String> = self.endpoints().split(',').map(str::to_owned).collect();
        jobmaster::ha::etcd::Etcd::new(&endpoints, Duration::from_secs(1), Duration::from_secs(2))
            .expect("etcd client")
    }

    /// Waits until a linearizable read succeeds (a quorum is up).
    pub async fn wait_healthy(&self) {
        let client = self.client();
        eventually("etcd answers", Duration::from_secs(30), || {
            let client = &client;
            async move {
                client
                    .get(b"/health-probe")
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
        .await;
    }

    /// SIGKILL to member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its data (after [`Etcd::kill`]).
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} runs");
        self.spawn(i, "existing");
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// One `jobmaster --ha etcd` process.
struct Jm {
    listen: String,
    child: Option<Child>,
}

/// etcd, jobmasters in HA mode, and executors (in `cluster`, whose `url` lists every
/// jobmaster).
pub struct HaCluster {
    pub cluster: Cluster,
    pub etcd: Etcd,
    jms: Vec<Jm>,
    env: Vec<(String, String)>,
}

impl HaCluster {
    /// etcd of `members`, `jobmasters` jobmasters (the first one started first, so it leads),
    /// then `executors`, registered with the leader.
    pub async fn start(
        name: &str,
        members: usize,
        jobmasters: usize,
        executors: &[(&str, u32)],
        env: &[(&str, &str)],
    ) -> HaCluster {
        let cluster = Cluster::new(name, env);
        let etcd = Etcd::start(&cluster.root, members).await;
        let jms = (0..jobmasters)
            .map(|_| Jm {
                listen: format!("127.0.0.1:{}", free_port()),
                child: None,
            })
            .collect();
        let env = BASE_ENV
            .iter()
            .chain(env)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut ha = HaCluster {
            cluster,
            etcd,
            jms,
            env,
        };
        ha.cluster.url = ha.urls();
        ha.start_jm(0);
        ha.wait_leader(Duration::from_secs(30)).await;
        for i in 1..jobmasters {
            ha.start_jm(i);
        }
        for (id, slots) in executors {
            ha.cluster.start_executor(id, *slots);
        }
        let ids: Vec<&str> = executors.iter().map(|(id, _)| *id).collect();
        ha.wait_registered(&ids).await;
        ha
    }

    /// Every jobmaster's gRPC URL, comma-separated.
    pub fn urls(&self) -> String {
        self.jms
            .iter()
            .map(|j| format!("http://{}", j.listen))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn url(&self, i: usize) -> String {
        format!("http://{}", self.jms[i].listen)
    }

    /// Starts jobmaster `i` (again).
    pub fn start_jm(&mut self, i: usize) {
        assert!(self.jms[i].child.is_none(), "jobmaster {i} runs");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.cluster.root.join(format!("jobmaster-{i}.log")))
            .expect("jobmaster log");
        let child = Command::new(JOBMASTER)
            .args(["--ha", "etcd", "--etcd-endpoints", &self.etcd.endpoints()])
            .args(["--listen", &self.jms[i].listen, "--http", "127.0.0.1:0"])
            .args(["--log-format", "json"])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&self.cluster.root)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone"))
            .stderr(log)
            .spawn()
            .expect("start a jobmaster");
        self.jms[i].child = Some(child);
    }

    /// Jobmaster `i`'s log.
    pub fn jm_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.cluster.root.join(format!("jobmaster-{i}.log")))
            .unwrap_or_default()
    }

    /// Messages of jobmaster `i`'s log (JSON lines' `fields.message`).
    pub fn jm_messages(&self, i: usize) -> Vec<String> {
        self.jm_log(i)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["fields"]["message"].as_str().map(str::to_owned))
            .collect()
    }

    pub fn pid(&self, i: usize) -> i32 {
        self.jms[i].child.as_ref().expect("runs").id() as i32
    }

    /// Sends `signal` to jobmaster `i`; SIGKILL also reaps it.
    pub fn signal_jm(&mut self, i: usize, signal: i32) {
        let pid = self.pid(i);
        // SAFETY: kill(2) on our own child, not reaped yet.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill({signal})");
        if signal == libc::SIGKILL {
            let mut c = self.jms[i].child.take().expect("runs");
            let _ = c.wait();
        }
    }

    /// The leader's index and GetLeader answer: the one jobmaster that answers it (a standby
    /// answers UNAVAILABLE).
    pub async fn leader(&self) -> Result<(usize, jobmaster::api::v1::GetLeaderResponse), String> {
        let mut found = Vec::new();
        for (i, jm) in self.jms.iter().enumerate() {
            if jm.child.is_none() {
                continue;
            }
            let url = format!("http://{}", jm.listen);
            let Ok(channel) = tonic::transport::Endpoint::from_shared(url)
                .expect("url")
                .connect_timeout(Duration::from_millis(500))
                .timeout(Duration::from_secs(1))
                .connect()
                .await
            else {
                continue;
            };
            if let Ok(r) = JobMasterServiceClient::new(channel)
                .get_leader(GetLeaderRequest {})
                .await
            {
                found.push((i, r.into_inner()));
            }
        }
        match found.len() {
            1 => Ok(found.pop().expect("one")),
            0 => Err("no jobmaster leads".into()),
            n => Err(format!("{n} jobmasters answer as leaders")),
        }
    }

    /// Waits until exactly one jobmaster leads; returns it.
    pub async fn wait_leader(
        &self,
        within: Duration,
    ) -> (usize, jobmaster::api::v1::GetLeaderResponse) {
        eventually("one jobmaster leads", within, || self.leader()).await
    }

    /// Waits until jobmaster `i` does not answer as the leader and another one leads.
    pub async fn wait_leader_other_than(
        &self,
        i: usize,
        within: Duration,
    ) -> (usize, jobmaster::api::v1::GetLeaderResponse) {
        eventually("another jobmaster leads", within, || async {
            match self.leader().await {
                Ok((j, _)) if j == i => Err(format!("jobmaster {i} still leads")),
                other => other,
            }
        })
        .await
    }

    /// An operator client of the current leader.
    pub async fn client(&self) -> JobMasterServiceClient<Channel> {
        let (i, _) = self.wait_leader(Duration::from_secs(30)).await;
        let channel = tonic::transport::Endpoint::from_shared(self.url(i))
            .expect("url")
            .connect()
            .await
            .expect("connect to the leader");
        JobMasterServiceClient::new(channel)
    }

    /// Waits until `ids` are registered with the leader.
    pub async fn wait_registered(&self, ids: &[&str]) {
        eventually(
            "executors registered with the leader",
            Duration::from_secs(60),
            || async {
                let mut client = self.client().await;
                let listed = client
                    .list_executors(jobmaster::api::v1::ListExecutorsRequest {})
                    .await
                    .map_err(|e| e.to_string())?
                    .into_inner()
                    .executors;
                let missing: Vec<&&str> = ids
                    .iter()
                    .filter(|id| !listed.iter().any(|e| e.id == **id))
                    .collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(format!("not registered: {missing:?}"))
                }
            },
        )
        .await;
    }

    /// A job's state and tasks, from the leader.
    pub async fn job(&self, job: &str) -> Result<jobmaster::api::v1::GetJobResponse, String> {
        let mut client = self.client().await;
        client
            .get_job(jobmaster::api::v1::GetJobRequest {
                job_id: job.to_owned(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner())
            .map_err(|e| e.to_string())
    }
}

impl Drop for HaCluster {
    fn drop(&mut self) {
        for jm in &mut self.jms {
            if let Some(mut c) = jm.child.take() {
                // SIGCONT first: a stopped process does not die of SIGKILL until continued.
                // SAFETY: kill(2) on our own child.
                unsafe { libc::kill(c.id() as i32, libc::SIGCONT) };
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
