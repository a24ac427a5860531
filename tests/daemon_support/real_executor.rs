//! The real `taskexecutor` agent (`jobmaster::executor::run`) in-process, on a 127.0.0.1
//! port-0 listener with data under a fresh temporary folder.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use jobmaster::executor::{ExecutorConfig, ExecutorSecurity, StartError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{bounded, session_id};

pub struct RealExecutor {
    pub addr: SocketAddr,
    pub root: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), StartError>>,
}

impl RealExecutor {
    /// Starts executor `id` with `slots`, registering at `jobmaster` (a URL), with `security`.
    pub async fn start(
        jobmaster: String,
        id: &str,
        slots: u32,
        security: ExecutorSecurity,
    ) -> RealExecutor {
        RealExecutor::start_with(jobmaster, id, slots, security, Duration::from_secs(30)).await
    }

    /// [`RealExecutor::start`] with its `jobmaster_reconnect_timeout`.
    pub async fn start_with(
        jobmaster: String,
        id: &str,
        slots: u32,
        security: ExecutorSecurity,
        reconnect_timeout: Duration,
    ) -> RealExecutor {
        RealExecutor::start_configured(jobmaster, id, slots, |config| {
            config.security = security;
            config.jobmaster_reconnect_timeout = reconnect_timeout;
        })
        .await
    }

    /// [`RealExecutor::start`] in plain text, with `configure` applied to its configuration
    /// (the data dir is `root/data`; every attempt runs under the `taskexecutor` binary as its
    /// shim).
    pub async fn start_configured(
        jobmaster: String,
        id: &str,
        slots: u32,
        configure: impl FnOnce(&mut ExecutorConfig),
    ) -> RealExecutor {
        let root = std::env::temp_dir().join(format!("jobmaster-real-{id}-{}", session_id()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind an executor port");
        let addr = listener.local_addr().expect("executor address");
        let mut config = ExecutorConfig {
            jobmaster,
            id: id.into(),
            advertise: String::new(),
            slots,
            data_dir: root.join("data"),
            persistent_dir: root.join("persistent"),
            jobmaster_reconnect_timeout: Duration::from_secs(30),
            fence_margin: Duration::from_millis(500),
            cancel_grace: Duration::from_secs(1),
            task_nice: 10,
            min_free_disk: 0,
            rpc_timeout: Duration::from_secs(5),
            labels: Default::default(),
            security: ExecutorSecurity::default(),
            run_as: None,
            retain_attempts: 3,
            // As the default: logs stay readable (`jmctl logs`) after the job ended.
            retain_ended_jobs: Duration::from_secs(600),
            shim: env!("CARGO_BIN_EXE_taskexecutor").into(),
        };
        configure(&mut config);
        let config = jobmaster::executor::resolve(config, addr).expect("valid executor config");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(jobmaster::executor::run(config, listener, async {
            let _ = stopped.await;
        }));
        RealExecutor {
            addr,
            root,
            stop: Some(stop),
            task,
        }
    }

    /// Stops it (bounded) and deletes its folder.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = bounded("the executor stops", &mut self.task).await;
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
