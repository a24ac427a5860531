//! High availability on etcd (`ha.mode = "etcd"`, DESIGN §4): several JobMasters campaign in
//! etcd's election for `NS/leader`; the leader serves on a lease it keeps alive and keeps its
//! state in etcd ([`etcd_store`]); the others stand by, answering UNAVAILABLE with the leader's
//! endpoint, and campaign until the leader is gone. A new leader loads from etcd and adopts the
//! running attempts as a restarted JobMaster does: no task restarts.
//!
//! - Epoch: the leader key's create revision (grows across leaders), carried by every command.
//! - No zombie leader: [`lease::Leadership`] ends before etcd can let another JobMaster lead;
//!   every order and every store write checks it, and etcd refuses writes not guarded by the
//!   current leader key. Losing it ends the term: the JobMaster stops serving as the leader and
//!   campaigns again as a standby.

pub mod etcd;
pub mod etcd_store;
pub mod lease;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{info, warn};

use crate::server::standby::LeaderView;
use crate::server::{Lead, ServeError};
use crate::settings::Settings;
use etcd::Etcd;
use etcd_store::{EtcdStore, Guard};
use lease::Leadership;

/// Terms this process won, and terms it lost (stepped down without being asked to).
pub static TERMS_WON: AtomicU64 = AtomicU64::new(0);
pub static TERMS_LOST: AtomicU64 = AtomicU64::new(0);

/// What can go wrong talking to etcd.
#[derive(Debug, thiserror::Error)]
pub enum HaError {
    #[error("{0}")]
    Config(String),
    #[error("etcd {what} on {member} failed: {} ({:?})", status.message(), status.code())]
    Etcd {
        what: &'static str,
        member: String,
        status: Box<tonic::Status>,
    },
    #[error("etcd lease: {0}")]
    Lease(String),
}

/// The endpoint a leader proclaims: `ha.advertise`, or the listen address.
pub fn advertise(settings: &Settings, listen: SocketAddr) -> Result<String, HaError> {
    if !settings.ha.advertise.is_empty() {
        return Ok(settings.ha.advertise.clone());
    }
    if listen.ip().is_unspecified() {
        return Err(HaError::Config(format!(
            "server.listen is {listen}: set ha.advertise to the URL executors and jmctl reach \
             this jobmaster at"
        )));
    }
    let scheme = if settings.tls.cert.is_empty() {
        "http"
    } else {
        "https"
    };
    Ok(format!("{scheme}://{listen}"))
}

/// A listener of our own on the same socket (the socket stays open across terms).
fn share(listener: &std::net::TcpListener) -> Result<tokio::net::TcpListener, std::io::Error> {
    let l = listener.try_clone()?;
    l.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(l)
}

/// Keeps `hint` on who leads, as last read from etcd (linearizably), and when.
async fn watch_leader(etcd: Arc<Etcd>, name: Vec<u8>, hint: watch::Sender<LeaderView>) {
    loop {
        let read = tokio::time::timeout(Duration::from_secs(1), etcd.leader(&name)).await;
        if let Ok(Ok(leader)) = read {
            let leader = leader.map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
            hint.send_replace(LeaderView {
                leader,
                read_at: Some(Instant::now()),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs a JobMaster with `ha.mode = "etcd"` on `grpc` and `http` until `shutdown`: standby,
/// campaign, lead, and back to standby whenever a term ends.
pub async fn run(
    settings: Settings,
    grpc: std::net::TcpListener,
    http: std::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let ha = settings.ha.clone();
    let etcd = Arc::new(
        Etcd::new(
            &ha.endpoints(),
            settings.rpc.connect_timeout,
            settings.rpc.timeout,
        )
        .map_err(|e| ServeError::Config(e.to_string()))?,
    );
    let endpoint =
        advertise(&settings, grpc.local_addr()?).map_err(|e| ServeError::Config(e.to_string()))?;
    let ns = ha.namespace.trim_end_matches('/').to_owned();
    let name = format!("{ns}/leader").into_bytes();
    // How long a standby's view of etcd counts as evidence of who leads (see LeaderView).
    let trust = settings
        .recovery
        .reconcile_timeout
        .saturating_sub(Duration::from_secs(2));
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let (hint_tx, hint) = watch::channel(LeaderView::default());
    let watcher = tokio::spawn(watch_leader(etcd.clone(), name.clone(), hint_tx));
    let stopped = |stop: &watch::Receiver<bool>| *stop.borrow();
    // The standby's servers: started at once whenever this process does not lead — also the
    // moment a term ends, before the leader's servers have wound down and before etcd hears
    // of the end (which may take long without a quorum): executors must find an answer on
    // this address, never a socket that accepts and says nothing.
    let start_standby = || -> Result<Standby, ServeError> {
        let (stop_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
        let settings = settings.clone();
        let (g, h) = (share(&grpc)?, share(&http)?);
        let hint = hint.clone();
        let own = endpoint.clone();
        let task = tokio::spawn(async move {
            crate::server::standby::serve_standby(&settings, g, h, hint, own, trust, async {
                let _ = stopped_rx.await;
            })
            .await
        });
        Ok(Standby {
            stop: stop_tx,
            task,
        })
    };
    let mut standby = Some(start_standby()?);
    let outcome = loop {
        if stopped(&stop) {
            break Ok(());
        }
        if standby.is_none() {
            standby = Some(start_standby()?);
        }
        let elected = campaign(&etcd, &name, &endpoint, ha.lease_ttl, stop.clone()).await;
        if let Some(s) = standby.take()
            && let Err(e) = s.end().await
        {
            break Err(e);
        }
        let Some((key, leadership)) = elected else {
            break Ok(());
        };
        let epoch = key.rev as u64;
        let key_text = String::from_utf8_lossy(&key.key).into_owned();
        info!(epoch, key = %key_text, endpoint = %endpoint, "elected leader");
        TERMS_WON.fetch_add(1, Ordering::Relaxed);
        let guard = Guard {
            key: key.key.clone(),
            rev: key.rev,
        };
        let store = match EtcdStore::open(etcd.clone(), &ns, guard, leadership.clone()).await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cannot load the state from etcd; resigning");
                standby = Some(start_standby()?);
                end_term(&etcd, key, &leadership).await;
                continue;
            }
        };
        let lead = Lead {
            epoch,
            key: key_text,
            endpoint: endpoint.clone(),
            leadership: leadership.clone(),
        };
        let mut term_stop = stop.clone();
        let lost = leadership.clone();
        let term_end = async move {
            tokio::select! {
                _ = term_stop.wait_for(|s| *s) => {}
                _ = lost.lost() => {}
            }
        };
        let serve = crate::server::serve_led(
            settings.clone(),
            Box::new(store),
            share(&grpc)?,
            share(&http)?,
            term_end,
            Some(lead),
        );
        tokio::pin!(serve);
        let served = tokio::select! {
            served = &mut serve => served,
            _ = leadership.lost() => {
                // Lost: the standby answers from now on, while the leader winds down.
                if !stopped(&stop) {
                    standby = Some(start_standby()?);
                }
                serve.await
            }
        };
        let held = leadership.is_held();
        let why = leadership.reason();
        if !held && standby.is_none() && !stopped(&stop) {
            standby = Some(start_standby()?);
        }
        end_term(&etcd, key, &leadership).await;
        if stopped(&stop) {
            break served;
        }
        if held {
            // Not a lost term: a failure of this process (a supervisor restarts it).
            break served.and(Err(ServeError::Config("the leader stopped serving".into())));
        }
        TERMS_LOST.fetch_add(1, Ordering::Relaxed);
        let reason = why.unwrap_or_else(|| "the lease lapsed".into());
        match served {
            Err(e) => warn!(reason = %reason, error = %e, "leadership lost: stepped down"),
            Ok(()) => warn!(reason = %reason, "leadership lost: stepped down"),
        }
    };
    if let Some(s) = standby.take() {
        let _ = s.end().await;
    }
    watcher.abort();
    outcome
}

/// A running standby server.
struct Standby {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl Standby {
    /// Stops it and waits until its sockets are closed.
    async fn end(self) -> Result<(), ServeError> {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(ServeError::Config(format!("standby server failed: {e}"))),
        }
    }
}

/// Campaigns until elected (or stopped): a lease kept alive meanwhile, and the election.
async fn campaign(
    etcd: &Arc<Etcd>,
    name: &[u8],
    endpoint: &str,
    ttl: Duration,
    mut stop: watch::Receiver<bool>,
) -> Option<(etcd::pb::v3electionpb::LeaderKey, Arc<Leadership>)> {
    let mut failures = 0u32;
    loop {
        if *stop.borrow() {
            return None;
        }
        let sent = Instant::now();
        let grant = tokio::select! {
            g = etcd.grant(ttl) => g,
            _ = stop.wait_for(|s| *s) => return None,
        };
        let (lease, granted) = match grant {
            Ok(g) => g,
            Err(e) => {
                failures += 1;
                warn!(error = %e, "cannot get an etcd lease; retrying");
                let backoff = Duration::from_millis(200 * u64::from(failures.min(10)));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => continue,
                    _ = stop.wait_for(|s| *s) => return None,
                }
            }
        };
        failures = 0;
        let leadership = Leadership::new(lease, sent + granted);
        let keeper = tokio::spawn(lease::keep_alive(etcd.clone(), leadership.clone(), granted));
        let won = tokio::select! {
            w = etcd.campaign(name, lease, endpoint.as_bytes()) => w,
            why = leadership.lost() => {
                warn!(reason = %why, "lease lost while campaigning; campaigning again");
                continue;
            }
            _ = stop.wait_for(|s| *s) => {
                keeper.abort();
                let _ = etcd.revoke(lease).await;
                return None;
            }
        };
        match won {
            // Still held when elected (a campaign can return long after it was asked).
            Ok(key) if leadership.is_held() => return Some((key, leadership)),
            Ok(_) => {
                keeper.abort();
                let _ = etcd.revoke(lease).await;
            }
            Err(e) => {
                warn!(error = %e, "campaign failed; campaigning again");
                keeper.abort();
                leadership.lose("campaign failed");
                let _ = etcd.revoke(lease).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Ends a term: no more acting, and the next campaigner leads at once (best effort: if etcd
/// cannot be reached, the lease expires by itself).
async fn end_term(etcd: &Etcd, key: etcd::pb::v3electionpb::LeaderKey, leadership: &Leadership) {
    let held = leadership.is_held();
    leadership.lose("term ended");
    // Bounded: without a quorum these cannot succeed, and the lease ends by itself.
    let tell = async {
        if held {
            let _ = etcd.resign(key).await;
        }
        let _ = etcd.revoke(leadership.lease).await;
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), tell).await;
}
