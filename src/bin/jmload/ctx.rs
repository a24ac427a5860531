//! What the scenarios share: the operator client, the simulated executors' one gRPC server
//! (each executor has its own listening port; accepted connections are handed to the server),
//! the WatchEvents log, polling waits, and the job specs. With `--tls` ([`crate::tls`]) every
//! connection is TLS and the executors' server is a second one, behind the executors'
//! authorization layer.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use jobmaster::api::v1::job_master_service_client::JobMasterServiceClient;
use jobmaster::api::v1::task_executor_gateway_client::TaskExecutorGatewayClient;
use jobmaster::api::v1::{
    GetJobRequest, GetJobResponse, SubmitJobRequest, WatchEvent, WatchEventsRequest,
};
use jobmaster::core::{AttemptState, JobState};
use jobmaster::fake_executor::{Executor, ExecutorConfig, Fleet};
use jobmaster::security::auth::{GrpcAuthLayer, Rules};
use jobmaster::security::connector::{self, Expect};
use jobmaster::security::incoming::incoming;
use jobmaster::security::tls::Tls;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint, Server};

use crate::executors::{self, HbHandle, HbStats, Hub, heartbeat_loop, register_one};
use crate::tls::{TaggedConn, TlsSetup, split_connect_info};
use crate::{MAX_MESSAGE, POLL, RPC_TIMEOUT};

/// What the scenarios share: the operator client, the simulated executors' server, their
/// counters, the WatchEvents log.
pub(crate) struct Ctx {
    pub(crate) url: String,
    pub(crate) op: JobMasterServiceClient<Channel>,
    /// The simulated executors, by the port of their listener.
    pub(crate) fleet: Arc<Fleet>,
    pub(crate) hub: Arc<Hub>,
    pub(crate) events: Arc<Events>,
    pub(crate) stats: Arc<HbStats>,
    conn_tx: mpsc::Sender<io::Result<TcpStream>>,
    /// `--tls`: the certificates, and the executors' TLS server's connections.
    tls: Option<(Arc<TlsSetup>, mpsc::Sender<io::Result<TaggedConn>>)>,
    pub(crate) stop_tx: watch::Sender<bool>,
    /// ≈ the daemon's clock zero (in-process daemon only).
    pub(crate) origin: Option<Instant>,
    /// The daemon's HTTP address (/metrics), if known.
    pub(crate) http: Option<SocketAddr>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// A channel to the daemon at `url`; over TLS (`tls`, an https URL) with that certificate,
/// and the daemon must prove to be the jobmaster.
pub(crate) async fn connect(url: &str, tls: Option<Arc<Tls>>) -> Result<Channel> {
    let endpoint = Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    let mut last = None;
    for _ in 0..50 {
        let connected = match &tls {
            None => endpoint.connect().await,
            Some(tls) => {
                connector::connect(endpoint.clone(), Some(tls.clone()), Expect::JobMaster).await
            }
        };
        match connected {
            Ok(channel) => return Ok(channel),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(anyhow!("cannot connect to {url}: {last:?}"))
}

impl Ctx {
    pub(crate) async fn new(
        url: String,
        origin: Option<Instant>,
        unary_reports: bool,
        tls: Option<Arc<TlsSetup>>,
    ) -> Result<Ctx> {
        let op =
            JobMasterServiceClient::new(connect(&url, tls.as_ref().map(|t| t.operator())).await?)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE);
        let hub = Arc::new(Hub::new());
        let fleet = Fleet::new(executors::options(unary_reports), hub.clone());
        let (stop_tx, stop_rx) = watch::channel(false);
        let (conn_tx, conn_rx) = mpsc::channel::<io::Result<TcpStream>>(1024);
        let service = fleet.service();
        let mut server_stop = stop_rx.clone();
        let server = tokio::spawn(async move {
            let result = Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(ReceiverStream::new(conn_rx), async move {
                    let _ = server_stop.changed().await;
                })
                .await;
            if let Err(e) = result {
                eprintln!("jmload: the simulated executors' server failed: {e}");
            }
        });
        let mut tasks = vec![server];
        let tls = match tls {
            None => None,
            Some(setup) => {
                // Connections of the executors' TLS listeners, tagged with their port.
                let (tls_tx, tls_rx) = mpsc::channel::<io::Result<TaggedConn>>(1024);
                let service = fleet.service();
                let mut server_stop = stop_rx.clone();
                tasks.push(tokio::spawn(async move {
                    let result = Server::builder()
                        .layer(tower::util::MapRequestLayer::new(split_connect_info))
                        .layer(GrpcAuthLayer::new(Rules::Executor { tls: true }))
                        .add_service(service)
                        .serve_with_incoming_shutdown(ReceiverStream::new(tls_rx), async move {
                            let _ = server_stop.changed().await;
                        })
                        .await;
                    if let Err(e) = result {
                        eprintln!("jmload: the simulated executors' tls server failed: {e}");
                    }
                }));
                Some((setup, tls_tx))
            }
        };
        let events = Arc::new(Events::default());
        let (ready_tx, ready_rx) = oneshot::channel();
        let watcher = tokio::spawn(watch_events(
            op.clone(),
            events.clone(),
            ready_tx,
            stop_rx.clone(),
        ));
        let _ = tokio::time::timeout(RPC_TIMEOUT, ready_rx).await;
        tasks.push(watcher);
        Ok(Ctx {
            url,
            op,
            fleet,
            hub,
            events,
            stats: Arc::new(HbStats::default()),
            conn_tx,
            tls,
            stop_tx,
            origin,
            http: None,
            tasks: Mutex::new(tasks),
        })
    }

    /// Whether the run is over TLS (`--tls`).
    pub(crate) fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The gateway channel of simulated executor `id`. Plain: `shared` if given, else a new
    /// connection. TLS: always its own connection, with its own certificate (the daemon lets
    /// a connection act only for the executor its certificate names).
    pub(crate) async fn gateway(&self, id: &str, shared: Option<&Channel>) -> Result<Channel> {
        match (&self.tls, shared) {
            (None, Some(channel)) => Ok(channel.clone()),
            (None, None) => connect(&self.url, None).await,
            (Some((setup, _)), _) => connect(&self.url, Some(setup.executor(id)?)).await,
        }
    }

    pub(crate) async fn shutdown(self) {
        let _ = self.stop_tx.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap());
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }

    /// A simulated executor on its own listening port (not yet registered).
    /// With `one_shot`, the listener accepts the daemon's one connection and closes.
    pub(crate) async fn add_executor(
        &self,
        id: String,
        gateway: Channel,
        slots: u32,
        one_shot: bool,
    ) -> Result<Arc<Executor>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let server_tls = match &self.tls {
            Some((setup, tls_tx)) => Some((setup.executor(&id)?, tls_tx.clone())),
            None => None,
        };
        let exec = Executor::new(
            ExecutorConfig {
                session: format!("{id}-{}", std::process::id()),
                id,
                address: addr.to_string(),
                slots,
                free_disk_bytes: 1 << 40,
                rpc_timeout: RPC_TIMEOUT,
                labels: Default::default(),
            },
            TaskExecutorGatewayClient::new(gateway)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        );
        self.fleet.add(addr.port(), exec.clone());
        let mut stop = self.stop_tx.subscribe();
        if let Some((tls, tls_tx)) = server_tls {
            // TLS (handshakes, with TCP_NODELAY) as `taskexecutor` accepts; the stream ends
            // the listener when dropped.
            let (mut accepted, acceptor) = incoming(listener, Some(tls));
            tokio::spawn(async move {
                let _acceptor = acceptor;
                loop {
                    tokio::select! {
                        conn = accepted.next() => match conn {
                            Some(Ok(conn)) => {
                                let tagged = TaggedConn { conn, local: addr };
                                if tls_tx.send(Ok(tagged)).await.is_err() || one_shot {
                                    return;
                                }
                            }
                            Some(Err(e)) => eprintln!("jmload: accept on {addr}: {e}"),
                            None => return,
                        },
                        _ = stop.changed() => return,
                    }
                }
            });
            return Ok(exec);
        }
        let conn_tx = self.conn_tx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            let _ = stream.set_nodelay(true);
                            if conn_tx.send(Ok(stream)).await.is_err() || one_shot {
                                return;
                            }
                        }
                        Err(e) => {
                            eprintln!("jmload: accept on {addr}: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    },
                    _ = stop.changed() => return,
                }
            }
        });
        Ok(exec)
    }

    /// Registers `exec`; returns the heartbeat interval the daemon asks for.
    pub(crate) async fn register(&self, exec: &Executor) -> Result<Duration> {
        register_one(exec).await
    }

    /// Registers `count` simulated executors of `slots` slots, each on its own connection (as
    /// real executor processes are), with heartbeats spread over one interval; returns once
    /// each has had its first heartbeat answered.
    pub(crate) async fn start_fleet(&self, count: usize, slots: u32) -> Result<Vec<HbHandle>> {
        Ok(self
            .start_fleet_with(count, slots, None)
            .await?
            .into_iter()
            .map(|(_, hb)| hb)
            .collect())
    }

    /// [`Ctx::start_fleet`], returning the executors too; with `reconnect`, each registers
    /// again (every `reconnect`, listing what it holds) when its heartbeat stream ends, as
    /// executors do when the JobMaster restarts.
    pub(crate) async fn start_fleet_with(
        &self,
        count: usize,
        slots: u32,
        reconnect: Option<Duration>,
    ) -> Result<Vec<(Arc<Executor>, HbHandle)>> {
        let mut handles = Vec::with_capacity(count);
        for i in 0..count {
            let id = format!("exec-{i:04}");
            let channel = self.gateway(&id, None).await?;
            let exec = self.add_executor(id, channel, slots, false).await?;
            let interval = self.register(&exec).await?;
            let phase = interval * i as u32 / count as u32;
            let mut hb = self.start_heartbeats_with(exec.clone(), interval, phase, reconnect);
            hb.first_answer(RPC_TIMEOUT).await?;
            handles.push((exec, hb));
        }
        Ok(handles)
    }

    pub(crate) fn start_heartbeats(
        &self,
        exec: Arc<Executor>,
        interval: Duration,
        phase: Duration,
    ) -> HbHandle {
        self.start_heartbeats_with(exec, interval, phase, None)
    }

    fn start_heartbeats_with(
        &self,
        exec: Arc<Executor>,
        interval: Duration,
        phase: Duration,
        reconnect: Option<Duration>,
    ) -> HbHandle {
        let close = Arc::new(Notify::new());
        let (first_tx, first_rx) = oneshot::channel();
        let join = tokio::spawn(heartbeat_loop(
            exec,
            interval,
            phase,
            self.stats.clone(),
            self.stop_tx.subscribe(),
            close.clone(),
            first_tx,
            reconnect,
        ));
        HbHandle {
            close,
            first: Some(first_rx),
            join,
        }
    }

    pub(crate) async fn submit(&self, spec: String) -> Result<String> {
        let mut op = self.op.clone();
        let answer = tokio::time::timeout(
            Duration::from_secs(120),
            op.submit_job(SubmitJobRequest {
                spec,
                format: "json".into(),
            }),
        )
        .await
        .context("SubmitJob timed out")?
        .context("SubmitJob")?;
        Ok(answer.into_inner().job_id)
    }

    /// The job with all its tasks (GetJob pages of 10,000 tasks, joined).
    pub(crate) async fn get_job(&self, job: &str) -> Result<GetJobResponse> {
        let mut op = self.op.clone();
        let mut offset = 0;
        let mut all: Option<GetJobResponse> = None;
        loop {
            let page = tokio::time::timeout(
                RPC_TIMEOUT,
                op.get_job(GetJobRequest {
                    job_id: job.to_owned(),
                    task_offset: offset,
                    task_limit: 10_000,
                    ..GetJobRequest::default()
                }),
            )
            .await
            .context("GetJob timed out")?
            .context("GetJob")?
            .into_inner();
            let (more, next) = (page.has_more_tasks, page.next_task_offset);
            match &mut all {
                None => all = Some(page),
                Some(a) => a.tasks.extend(page.tasks),
            }
            if !more {
                return Ok(all.expect("one page was read"));
            }
            offset = next;
        }
    }

    /// Waits until the job is RUNNING with every task RUNNING.
    pub(crate) async fn wait_job_running(
        &self,
        job: &str,
        timeout: Duration,
    ) -> Result<GetJobResponse> {
        let deadline = Instant::now() + timeout;
        loop {
            let view = self.get_job(job).await?;
            let running = AttemptState::Running.name();
            if view.state == JobState::Running.name()
                && view.tasks.iter().all(|t| t.state == running)
            {
                return Ok(view);
            }
            if Instant::now() > deadline {
                let mut states: std::collections::BTreeMap<(&str, u32), usize> =
                    std::collections::BTreeMap::new();
                for t in &view.tasks {
                    *states.entry((t.state.as_str(), t.attempt)).or_default() += 1;
                }
                bail!(
                    "job {job} not running after {timeout:?}: state {}, tasks by (state, \
                     attempt): {states:?}; reports refused or failed: {}",
                    view.state,
                    self.hub.report_errors.load(Ordering::Relaxed)
                );
            }
            // Large jobs: GetJob is a big answer, built on the coordinator; ask less often.
            let pause = if view.tasks.len() > 10_000 { 500 } else { 20 };
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }
}

/// Polls `done` every few ms until it holds or `timeout` passes.
pub(crate) async fn wait_for(what: &str, timeout: Duration, done: impl Fn() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

// ----- events -------------------------------------------------------------------------------

/// WatchEvents as received: the ones the scenarios need, with their arrival time.
#[derive(Default)]
pub(crate) struct Events {
    pub(crate) log: Mutex<Vec<(Instant, WatchEvent)>>,
    pub(crate) executor_lost: AtomicU64,
    pub(crate) task_failed: AtomicU64,
    pub(crate) task_events: AtomicU64,
    pub(crate) restarts: AtomicU64,
    pub(crate) lagged: AtomicU64,
    pub(crate) missed: AtomicU64,
    /// Keep every task-state event, not only FAILED ones (while a failover run records).
    pub(crate) keep_task_states: AtomicBool,
}

impl Events {
    pub(crate) fn len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// Events logged from index `from` on that match.
    pub(crate) fn since(
        &self,
        from: usize,
        f: impl Fn(&WatchEvent) -> bool,
    ) -> Vec<(Instant, WatchEvent)> {
        self.log.lock().unwrap()[from..]
            .iter()
            .filter(|(_, e)| f(e))
            .cloned()
            .collect()
    }
}

async fn watch_events(
    mut client: JobMasterServiceClient<Channel>,
    events: Arc<Events>,
    ready: oneshot::Sender<()>,
    mut stop: watch::Receiver<bool>,
) {
    let stream = client
        .watch_events(WatchEventsRequest {
            job_id: String::new(),
        })
        .await;
    let _ = ready.send(());
    let Ok(stream) = stream else {
        eprintln!("jmload: WatchEvents failed");
        return;
    };
    let mut stream = stream.into_inner();
    loop {
        let message = tokio::select! {
            m = stream.message() => m,
            _ = stop.changed() => return,
        };
        let Ok(Some(e)) = message else { return };
        let at = Instant::now();
        let keep = match e.kind.as_str() {
            "task-state" => {
                events.task_events.fetch_add(1, Ordering::Relaxed);
                let failed = e.state == AttemptState::Failed.name();
                if failed {
                    events.task_failed.fetch_add(1, Ordering::Relaxed);
                }
                failed || events.keep_task_states.load(Ordering::Relaxed)
            }
            "executor-lost" => {
                events.executor_lost.fetch_add(1, Ordering::Relaxed);
                true
            }
            "restart-scheduled" => {
                events.restarts.fetch_add(1, Ordering::Relaxed);
                true
            }
            "lagged" => {
                events.lagged.fetch_add(1, Ordering::Relaxed);
                let n = e
                    .detail
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                events.missed.fetch_add(n, Ordering::Relaxed);
                true
            }
            _ => true,
        };
        if keep {
            events.log.lock().unwrap().push((at, e));
        }
    }
}

// ----- job specs ----------------------------------------------------------------------------

fn vertex(id: &str, parallelism: u32) -> Value {
    json!({ "id": id, "parallelism": parallelism, "command": ["true"] })
}

pub(crate) fn two_vertex_spec(
    name: &str,
    p: u32,
    pattern: &str,
    failover: &str,
    restart: Value,
) -> String {
    json!({
        "name": name,
        "failover": failover,
        "restart": restart,
        "vertices": [vertex("source", p), vertex("sink", p)],
        "edges": [{ "from": "source", "to": "sink", "pattern": pattern, "exchange": "pipelined" }],
    })
    .to_string()
}

pub(crate) fn single_vertex_spec(name: &str, p: u32, restart: Value) -> String {
    json!({
        "name": name,
        "failover": "region",
        "restart": restart,
        "vertices": [vertex("work", p)],
        "edges": [],
    })
    .to_string()
}

pub(crate) fn zero_backoff() -> Value {
    json!({ "strategy": "fixed-delay", "attempts": 1_000_000, "delay": "0s" })
}
