//! Who may call what: the rules of the JobMaster's and the executors' gRPC services and of the
//! HTTP port, applied before any handler runs.
//!
//! JobMaster (gRPC): `JobMasterService` reads need the viewer role, writes (submit, cancel,
//! inject, release) the operator role, proven by a bearer token or an operator certificate;
//! `TaskExecutorGateway` needs an executor certificate (the handlers then check it names the
//! executor the message is about); health and reflection are open. Executor: every command
//! needs the JobMaster's certificate, `FetchPartition` an executor's. Without TLS and without
//! a token file nothing is checked (a loopback-only or explicitly insecure deployment).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{HeaderMap, Request, Response};
use tonic::Status;

use super::incoming::Peer;
use super::tokens::Tokens;
use super::{Identity, Role};

/// Who made a request, as far as it was proven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Nothing is checked on this server (no TLS, no tokens).
    Unchecked,
    JobMaster,
    Executor(String),
    Operator {
        role: Role,
        name: String,
    },
}

impl Caller {
    /// Whether the caller may speak for executor `id` (gateway RPCs).
    pub fn may_act_as_executor(&self, id: &str) -> bool {
        match self {
            Caller::Unchecked => true,
            Caller::Executor(own) => own == id,
            _ => false,
        }
    }
}

/// A refusal, as gRPC and HTTP statuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No or unknown credentials.
    Unauthenticated(String),
    /// Known caller, not allowed.
    PermissionDenied(String),
}

impl From<Denied> for Status {
    fn from(d: Denied) -> Status {
        match d {
            Denied::Unauthenticated(m) => Status::unauthenticated(m),
            Denied::PermissionDenied(m) => Status::permission_denied(m),
        }
    }
}

/// The JobMaster's credentials: is TLS on (so peers present certificates), which tokens.
pub struct Guard {
    pub tls: bool,
    pub tokens: Option<Arc<Tokens>>,
    /// `/metrics` without credentials (`auth.metrics-open`).
    pub metrics_open: bool,
}

const SERVICE: &str = "/jobmaster.v1.JobMasterService/";
const GATEWAY: &str = "/jobmaster.v1.TaskExecutorGateway/";
const EXECUTOR_SERVICE: &str = "/jobmaster.v1.TaskExecutorService/";

/// JobMasterService methods that change something.
const WRITES: [&str; 5] = [
    "SubmitJob",
    "CancelJob",
    "InjectFailure",
    "ReleaseExecutor",
    "TriggerCheckpoint",
];

fn bearer(headers: &HeaderMap) -> Result<Option<&str>, Denied> {
    let Some(value) = headers.get("authorization") else {
        return Ok(None);
    };
    let text = value.to_str().ok().and_then(|v| {
        v.strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
    });
    match text {
        Some(token) => Ok(Some(token.trim())),
        None => Err(Denied::Unauthenticated(
            "the authorization header must be `Bearer <token>`".into(),
        )),
    }
}

impl Guard {
    /// Whether anything is checked.
    pub fn enabled(&self) -> bool {
        self.tls || self.tokens.is_some()
    }

    /// The operator behind a request, with at least `needed`.
    pub fn operator(
        &self,
        peer: Option<&Peer>,
        headers: &HeaderMap,
        needed: Role,
        what: &str,
    ) -> Result<Caller, Denied> {
        if !self.enabled() {
            return Ok(Caller::Unchecked);
        }
        let (role, name) = match bearer(headers)? {
            Some(token) => {
                let Some(tokens) = &self.tokens else {
                    return Err(Denied::Unauthenticated(
                        "this jobmaster accepts no tokens (auth.token-file is not set): use an \
                         operator certificate"
                            .into(),
                    ));
                };
                let entry = tokens.check(token).ok_or_else(|| {
                    Denied::Unauthenticated("the token is not known to this jobmaster".into())
                })?;
                (entry.role, entry.name)
            }
            None => match peer.and_then(|p| p.identity.as_ref()) {
                Some(Identity::Operator { role, name }) => (*role, name.clone()),
                Some(other) => {
                    return Err(Denied::PermissionDenied(format!(
                        "the certificate of {other} is not an operator's: {what} needs an \
                         operator certificate or token"
                    )));
                }
                None => {
                    return Err(Denied::Unauthenticated(format!(
                        "{what} needs credentials: a token (jmctl --token or JOBMASTER_TOKEN) \
                         or an operator certificate"
                    )));
                }
            },
        };
        if role < needed {
            return Err(Denied::PermissionDenied(format!(
                "{role} {name:?} is not allowed {what}: that needs the {needed} role"
            )));
        }
        Ok(Caller::Operator { role, name })
    }

    /// The JobMaster's gRPC rules, by method path.
    pub fn grpc(
        &self,
        path: &str,
        peer: Option<&Peer>,
        headers: &HeaderMap,
    ) -> Result<Caller, Denied> {
        if let Some(method) = path.strip_prefix(SERVICE) {
            let needed = if WRITES.contains(&method) {
                Role::Operator
            } else {
                Role::Viewer
            };
            return self.operator(peer, headers, needed, &format!("calling {method}"));
        }
        if path.starts_with(GATEWAY) && self.tls {
            return match peer.and_then(|p| p.identity.as_ref()) {
                Some(Identity::Executor(id)) => Ok(Caller::Executor(id.clone())),
                Some(other) => Err(Denied::PermissionDenied(format!(
                    "only executors call TaskExecutorGateway; this is the certificate of {other}"
                ))),
                None => Err(Denied::Unauthenticated(
                    "TaskExecutorGateway needs an executor certificate (tls.cert, tls.key of \
                     the taskexecutor)"
                        .into(),
                )),
            };
        }
        Ok(Caller::Unchecked)
    }
}

/// An executor's gRPC rules: commands (and `ReadTaskLog`: task logs are relayed by the
/// JobMaster, which checks the operator's role) only from the JobMaster, `FetchPartition` only
/// from executors. `tls` false: nothing is checked.
pub fn executor_grpc(tls: bool, path: &str, peer: Option<&Peer>) -> Result<Caller, Denied> {
    if !tls {
        return Ok(Caller::Unchecked);
    }
    let identity = peer.and_then(|p| p.identity.as_ref());
    let fetch = path == format!("{EXECUTOR_SERVICE}FetchPartition");
    match identity {
        Some(Identity::JobMaster) if !fetch => Ok(Caller::JobMaster),
        Some(Identity::Executor(id)) if fetch => Ok(Caller::Executor(id.clone())),
        Some(other) => Err(Denied::PermissionDenied(format!(
            "{other} may not call {path} on an executor: {}",
            if fetch {
                "only executors fetch partitions"
            } else {
                "only the jobmaster sends commands"
            }
        ))),
        None => Err(Denied::Unauthenticated(
            "executors accept only callers with a certificate of the cluster's CA".into(),
        )),
    }
}

/// Rules a [`GrpcAuthLayer`] applies.
#[derive(Clone)]
pub enum Rules {
    JobMaster(Arc<Guard>),
    Executor { tls: bool },
}

impl Rules {
    fn check(
        &self,
        path: &str,
        peer: Option<&Peer>,
        headers: &HeaderMap,
    ) -> Result<Caller, Denied> {
        match self {
            Rules::JobMaster(guard) => guard.grpc(path, peer, headers),
            Rules::Executor { tls } => executor_grpc(*tls, path, peer),
        }
    }
}

/// A tower layer for tonic's `Server::layer`: refuses a request its [`Rules`] do not allow
/// (UNAUTHENTICATED or PERMISSION_DENIED) and puts the [`Caller`] among the extensions of
/// the ones it lets through.
#[derive(Clone)]
pub struct GrpcAuthLayer {
    rules: Rules,
}

impl GrpcAuthLayer {
    pub fn new(rules: Rules) -> GrpcAuthLayer {
        GrpcAuthLayer { rules }
    }
}

impl<S> tower::Layer<S> for GrpcAuthLayer {
    type Service = GrpcAuth<S>;
    fn layer(&self, inner: S) -> GrpcAuth<S> {
        GrpcAuth {
            inner,
            rules: self.rules.clone(),
        }
    }
}

#[derive(Clone)]
pub struct GrpcAuth<S> {
    inner: S,
    rules: Rules,
}

impl<S, B, R> tower::Service<Request<B>> for GrpcAuth<S>
where
    S: tower::Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<R>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let checked = self.rules.check(
            request.uri().path(),
            request.extensions().get::<Peer>(),
            request.headers(),
        );
        match checked {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                // The clone that was polled ready serves this request.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(inner.call(request))
            }
            Err(denied) => {
                let response = Status::from(denied).into_http::<R>();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

/// A client interceptor that sends an operator's bearer token with every call.
#[derive(Clone)]
pub struct BearerToken(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl BearerToken {
    /// `None`: no token. A token with characters a header cannot carry is an error.
    pub fn new(token: Option<&str>) -> Result<BearerToken, String> {
        match token.map(str::trim).filter(|t| !t.is_empty()) {
            None => Ok(BearerToken(None)),
            Some(t) => format!("Bearer {t}")
                .parse()
                .map(|v| BearerToken(Some(v)))
                .map_err(|_| "the token holds characters a header cannot carry".to_owned()),
        }
    }
}

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The caller a gRPC handler was let through with ([`Caller::Unchecked`] if no layer ran).
pub fn caller_of<T>(request: &tonic::Request<T>) -> Caller {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or(Caller::Unchecked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(identity: Option<Identity>) -> Peer {
        Peer {
            remote: "127.0.0.1:1".parse().expect("addr"),
            identity,
        }
    }

    #[test]
    fn executors_take_commands_only_from_the_jobmaster_and_fetches_only_from_executors() {
        let submit = "/jobmaster.v1.TaskExecutorService/SubmitTasks";
        let fetch = "/jobmaster.v1.TaskExecutorService/FetchPartition";
        let jm = peer(Some(Identity::JobMaster));
        let ex = peer(Some(Identity::Executor("b".into())));
        let op = peer(Some(Identity::Operator {
            role: Role::Operator,
            name: "x".into(),
        }));
        assert_eq!(
            executor_grpc(true, submit, Some(&jm)),
            Ok(Caller::JobMaster)
        );
        assert!(matches!(
            executor_grpc(true, submit, Some(&ex)),
            Err(Denied::PermissionDenied(_))
        ));
        assert!(matches!(
            executor_grpc(true, submit, Some(&op)),
            Err(Denied::PermissionDenied(_))
        ));
        assert!(matches!(
            executor_grpc(true, submit, Some(&peer(None))),
            Err(Denied::Unauthenticated(_))
        ));
        assert_eq!(
            executor_grpc(true, fetch, Some(&ex)),
            Ok(Caller::Executor("b".into()))
        );
        assert!(executor_grpc(true, fetch, Some(&jm)).is_err());
        let logs = "/jobmaster.v1.TaskExecutorService/ReadTaskLog";
        assert_eq!(executor_grpc(true, logs, Some(&jm)), Ok(Caller::JobMaster));
        for other in [&ex, &op, &peer(None)] {
            assert!(executor_grpc(true, logs, Some(other)).is_err(), "{other:?}");
        }
        assert_eq!(executor_grpc(false, submit, None), Ok(Caller::Unchecked));
    }

    #[test]
    fn a_gateway_call_needs_an_executor_certificate_when_tls_is_on() {
        let guard = Guard {
            tls: true,
            tokens: None,
            metrics_open: false,
        };
        let path = "/jobmaster.v1.TaskExecutorGateway/RegisterExecutor";
        let headers = HeaderMap::new();
        assert_eq!(
            guard.grpc(
                path,
                Some(&peer(Some(Identity::Executor("a".into())))),
                &headers
            ),
            Ok(Caller::Executor("a".into()))
        );
        assert!(matches!(
            guard.grpc(path, Some(&peer(None)), &headers),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(
            Caller::Executor("a".into()).may_act_as_executor("a")
                && !Caller::Executor("a".into()).may_act_as_executor("b")
        );
    }

    #[test]
    fn an_operator_certificate_carries_its_role() {
        let guard = Guard {
            tls: true,
            tokens: None,
            metrics_open: false,
        };
        let viewer = peer(Some(Identity::Operator {
            role: Role::Viewer,
            name: "v".into(),
        }));
        let headers = HeaderMap::new();
        assert!(
            guard
                .grpc(
                    "/jobmaster.v1.JobMasterService/ListJobs",
                    Some(&viewer),
                    &headers
                )
                .is_ok()
        );
        assert!(matches!(
            guard.grpc(
                "/jobmaster.v1.JobMasterService/SubmitJob",
                Some(&viewer),
                &headers
            ),
            Err(Denied::PermissionDenied(_))
        ));
        // Triggering a checkpoint is an operator's act; listing them a viewer's.
        assert!(matches!(
            guard.grpc(
                "/jobmaster.v1.JobMasterService/TriggerCheckpoint",
                Some(&viewer),
                &headers
            ),
            Err(Denied::PermissionDenied(_))
        ));
        assert!(
            guard
                .grpc(
                    "/jobmaster.v1.JobMasterService/ListCheckpoints",
                    Some(&viewer),
                    &headers
                )
                .is_ok()
        );
        assert!(matches!(
            guard.grpc(
                "/jobmaster.v1.JobMasterService/ListJobs",
                Some(&peer(None)),
                &headers
            ),
            Err(Denied::Unauthenticated(_))
        ));
        assert_eq!(
            guard.grpc("/grpc.health.v1.Health/Check", Some(&peer(None)), &headers),
            Ok(Caller::Unchecked)
        );
    }
}
