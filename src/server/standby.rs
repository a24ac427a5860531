//! A standby JobMaster's servers (`ha.mode = "etcd"`, not leading): every gRPC call is
//! answered UNAVAILABLE with the current leader's endpoint in the `jobmaster-leader` metadata
//! (when one leads), the health service reports NOT_SERVING, and HTTP answers 503 naming the
//! leader. Executors and `jmctl` follow the hint to the leader.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use super::{ServeError, security};
use crate::api::v1::job_master_service_server::JobMasterServiceServer;
use crate::api::v1::task_executor_gateway_server::TaskExecutorGatewayServer;
use crate::api::{LEADER_METADATA, STANDBY_MESSAGE};
use crate::security::incoming::{HttpListener, Peer, incoming};
use crate::settings::Settings;

/// Who leads, as a standby last read it from etcd: the leader's gRPC endpoint (`None`: nobody),
/// and when (`None`: never yet).
#[derive(Debug, Clone, Default)]
pub struct LeaderView {
    pub leader: Option<String>,
    pub read_at: Option<std::time::Instant>,
}

/// What a standby knows of the leader.
pub type LeaderHint = watch::Receiver<LeaderView>;

/// What a standby says about the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Told {
    /// The leader's endpoint.
    Leader(String),
    /// Nobody leads: executors keep their tasks on this (it is evidence).
    Nobody,
    /// It cannot tell (etcd unreachable for too long): not evidence; executors fence as usual.
    Unknown,
}

/// What to tell from `view`. "Nobody leads" is evidence that lets executors keep their tasks,
/// so it is said only within `trust` of a successful read of etcd: a leader elected after that
/// read restarts unreported tasks only `recovery.reconcile-timeout` after its election, and
/// `trust` is shorter by more than an executor's reconnect round, so an executor that kept its
/// tasks on that word has fenced them by then. This standby itself never leads while standing
/// by: a view naming it is an old one, and counts as nobody.
fn told(view: &LeaderView, own: &str, trust: std::time::Duration) -> Told {
    match (&view.leader, view.read_at) {
        (_, None) => Told::Unknown,
        (_, Some(at)) if at.elapsed() > trust => Told::Unknown,
        (Some(l), _) if l != own => Told::Leader(l.clone()),
        _ => Told::Nobody,
    }
}

/// The message of a standby's UNAVAILABLE answers (an unknown leader does not start with
/// [`STANDBY_MESSAGE`]: clients must not read it as "nobody leads").
fn message(told: &Told) -> String {
    match told {
        Told::Leader(l) => format!("{STANDBY_MESSAGE}; the leader is at {l}"),
        Told::Nobody => format!("{STANDBY_MESSAGE} and no jobmaster leads right now; retry"),
        Told::Unknown => "this jobmaster stands by but cannot reach etcd: it does not know who \
                          leads; try the other jobmasters"
            .to_owned(),
    }
}

/// Percent-encodes a grpc-message value (the characters gRPC allows unencoded are kept).
fn grpc_message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Answers any gRPC call: a trailers-only UNAVAILABLE response.
async fn refuse(hint: LeaderHint, own: Arc<str>, trust: Duration) -> axum::response::Response {
    let told = told(&hint.borrow(), &own, trust);
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from_static("14"));
    if let Ok(v) = HeaderValue::from_str(&grpc_message(&message(&told))) {
        headers.insert("grpc-message", v);
    }
    if let Told::Leader(l) = &told
        && let Ok(v) = HeaderValue::from_str(l)
    {
        headers.insert(LEADER_METADATA, v);
    }
    (StatusCode::OK, headers).into_response()
}

/// Serves as a standby on `grpc` and `http` until `stop`; `own` is this JobMaster's endpoint
/// (never named as the leader).
pub async fn serve_standby(
    settings: &Settings,
    grpc: TcpListener,
    http: TcpListener,
    hint: LeaderHint,
    own: String,
    trust: Duration,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let own: Arc<str> = own.into();
    let grpc_addr = grpc.local_addr()?;
    let http_addr = http.local_addr()?;
    let (tls, _guard) = security(settings, &[grpc_addr, http_addr])?;
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_not_serving::<JobMasterServiceServer<super::operator::Operator>>()
        .await;
    health_reporter
        .set_not_serving::<TaskExecutorGatewayServer<super::gateway::Gateway>>()
        .await;
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    let grpc_hint = hint.clone();
    let router = tonic::service::Routes::new(health)
        .into_axum_router()
        .fallback({
            let own = own.clone();
            move || refuse(grpc_hint.clone(), own.clone(), trust)
        });
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut stop_grpc = stop_tx.subscribe();
    let mut stop_http = stop_tx.subscribe();
    let (grpc_incoming, grpc_acceptor) = incoming(grpc, tls.clone());
    let (http_listener, http_acceptor) = HttpListener::new(http, tls)?;
    let grpc_server = tonic::transport::Server::builder()
        .add_routes(tonic::service::Routes::from(router))
        .serve_with_incoming_shutdown(grpc_incoming, async move {
            let _ = stop_grpc.recv().await;
        });
    let http_hint = hint;
    let app = axum::Router::new().fallback(move || {
        let told = told(&http_hint.borrow(), &own, trust);
        async move { (StatusCode::SERVICE_UNAVAILABLE, message(&told)) }
    });
    let http_server = axum::serve(
        http_listener,
        app.into_make_service_with_connect_info::<Peer>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stop_http.recv().await;
    });
    info!(grpc = %grpc_addr, http = %http_addr, "standing by");
    let grpc_task = tokio::spawn(async move {
        let _ = grpc_server.await;
    });
    let http_task = tokio::spawn(async move {
        let _ = http_server.await;
    });
    stop.await;
    let _ = stop_tx.send(());
    grpc_acceptor.close().await;
    http_acceptor.close().await;
    // Calls in flight are answered at once: nothing to wait for beyond a moment.
    let grace = std::time::Duration::from_millis(500);
    for task in [grpc_task, http_task] {
        let abort = task.abort_handle();
        if tokio::time::timeout(grace, task).await.is_err() {
            abort.abort();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn view(leader: Option<&str>, age: Duration) -> LeaderView {
        LeaderView {
            leader: leader.map(str::to_owned),
            read_at: Instant::now().checked_sub(age),
        }
    }

    #[test]
    fn nobody_leads_is_said_only_within_the_trust_of_the_last_etcd_read() {
        let trust = Duration::from_secs(8);
        let own = "http://127.0.0.1:1";
        let fresh = Duration::from_millis(100);
        assert_eq!(
            told(&view(Some("http://127.0.0.1:2"), fresh), own, trust),
            Told::Leader("http://127.0.0.1:2".into())
        );
        assert_eq!(told(&view(None, fresh), own, trust), Told::Nobody);
        assert_eq!(
            told(&view(Some(own), fresh), own, trust),
            Told::Nobody,
            "an old view naming this standby"
        );
        let stale = Duration::from_secs(9);
        assert_eq!(told(&view(None, stale), own, trust), Told::Unknown);
        assert_eq!(
            told(&view(Some("http://127.0.0.1:2"), stale), own, trust),
            Told::Unknown
        );
        assert_eq!(told(&LeaderView::default(), own, trust), Told::Unknown);
    }

    #[test]
    fn only_a_known_state_is_said_in_the_standby_words_clients_read() {
        let leader = message(&Told::Leader("http://10.0.0.2:6123".into()));
        assert!(leader.starts_with(STANDBY_MESSAGE) && leader.contains("http://10.0.0.2:6123"));
        assert!(message(&Told::Nobody).starts_with(STANDBY_MESSAGE));
        assert!(!message(&Told::Unknown).starts_with(STANDBY_MESSAGE));
        let unknown = tonic::Status::unavailable(message(&Told::Unknown));
        assert_eq!(crate::api::leader::standby(&unknown), None, "not evidence");
        assert_eq!(grpc_message("a b%é"), "a b%25%C3%A9");
    }
}
