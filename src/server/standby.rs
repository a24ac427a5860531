//! A standby JobMaster's servers (`ha.mode = "etcd"`, not leading): every gRPC call is
//! answered UNAVAILABLE with the current leader's endpoint in the `jobmaster-leader` metadata
//! (when one leads), the health service reports NOT_SERVING, and HTTP answers 503 naming the
//! leader. Executors and `jmctl` follow the hint to the leader.

use std::future::Future;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use super::{ServeError, security};
use crate::api::{LEADER_METADATA, STANDBY_MESSAGE};
use crate::api::v1::job_master_service_server::JobMasterServiceServer;
use crate::api::v1::task_executor_gateway_server::TaskExecutorGatewayServer;
use crate::security::incoming::{HttpListener, Peer, incoming};
use crate::settings::Settings;

/// Whom a standby names as the leader: its gRPC endpoint, `None` while nobody leads.
pub type LeaderHint = watch::Receiver<Option<String>>;

/// The message of a standby's UNAVAILABLE answers.
fn message(leader: Option<&str>) -> String {
    match leader {
        Some(l) => format!("{STANDBY_MESSAGE}; the leader is at {l}"),
        None => format!("{STANDBY_MESSAGE} and no jobmaster leads right now; retry"),
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

/// The leader to name: not this standby itself (a hint not updated yet since it stepped down).
fn leader_of(hint: &LeaderHint, own: &str) -> Option<String> {
    hint.borrow().clone().filter(|l| l != own)
}

/// Answers any gRPC call: a trailers-only UNAVAILABLE response.
async fn refuse(hint: LeaderHint, own: Arc<str>) -> axum::response::Response {
    let leader = leader_of(&hint, &own);
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from_static("14"));
    if let Ok(v) = HeaderValue::from_str(&grpc_message(&message(leader.as_deref()))) {
        headers.insert("grpc-message", v);
    }
    if let Some(v) = leader.and_then(|l| HeaderValue::from_str(&l).ok()) {
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
            move || refuse(grpc_hint.clone(), own.clone())
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
        let leader = leader_of(&http_hint, &own);
        async move { (StatusCode::SERVICE_UNAVAILABLE, message(leader.as_deref())) }
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
    use super::*;

    #[test]
    fn the_message_names_the_leader_or_says_nobody_leads() {
        assert!(message(Some("http://10.0.0.2:6123")).contains("http://10.0.0.2:6123"));
        assert!(message(None).contains("no jobmaster leads"));
        assert_eq!(grpc_message("a b%é"), "a b%25%C3%A9");
    }
}
