//! Outgoing connections of our clients: TCP, then TLS when configured, then a check that the
//! server's certificate names the identity we meant to reach ([`Expect`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::Identity;
use super::tls::{Tls, sni};

/// Whom the server must prove to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The JobMaster (executors, operators).
    JobMaster,
    /// This executor (the JobMaster sending it commands).
    Executor(String),
    /// Any executor (an executor fetching a partition from another).
    AnyExecutor,
}

impl Expect {
    fn admits(&self, identity: &Identity) -> bool {
        match (self, identity) {
            (Expect::JobMaster, Identity::JobMaster) => true,
            (Expect::Executor(want), Identity::Executor(id)) => want == id,
            (Expect::AnyExecutor, Identity::Executor(_)) => true,
            _ => false,
        }
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::JobMaster => f.write_str("the jobmaster"),
            Expect::Executor(id) => write!(f, "executor {id:?}"),
            Expect::AnyExecutor => f.write_str("an executor"),
        }
    }
}

/// A tower connector for tonic's [`Endpoint::connect_with_connector_lazy`].
#[derive(Clone)]
pub struct Connector {
    tls: Option<Arc<Tls>>,
    expect: Expect,
}

impl Connector {
    pub fn new(tls: Option<Arc<Tls>>, expect: Expect) -> Connector {
        Connector { tls, expect }
    }
}

/// A channel to `endpoint` through [`Connector`]; connects on first use.
pub fn channel(endpoint: Endpoint, tls: Option<Arc<Tls>>, expect: Expect) -> Channel {
    endpoint.connect_with_connector_lazy(Connector::new(tls, expect))
}

/// A channel to `endpoint` through [`Connector`], connected now.
pub async fn connect(
    endpoint: Endpoint,
    tls: Option<Arc<Tls>>,
    expect: Expect,
) -> Result<Channel, tonic::transport::Error> {
    endpoint
        .connect_with_connector(Connector::new(tls, expect))
        .await
}

/// An error with its causes, `a: b: c` (tonic's transport errors say only "transport error"
/// themselves).
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

/// Whether a call failed because nothing listened at the address: the TCP connect was refused
/// (`ECONNREFUSED`, a reset answering the SYN). Of the transport failures only this one is
/// evidence that the process on the other side is gone (crashed, or restarting): a timeout, an
/// unreachable host or a hung connection may as well be a partition with the process alive
/// behind it. It assumes that nothing between the two forges refusals (a firewall REJECT rule
/// would); see "Keeping tasks vs. fencing them" in the README.
pub fn connection_refused(status: &tonic::Status) -> bool {
    refused_error(status)
}

/// [`connection_refused`] of any error (e.g. a failed connect's transport error): whether
/// `error` or one of its causes is a refused TCP connect.
pub fn refused_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = source {
        if error
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        source = error.source();
    }
    false
}

/// An established client connection.
pub enum ClientIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

fn refused(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, message)
}

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<ClientIo>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<ClientIo>>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        let expect = self.expect.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, format!("{uri} has no host"))
                })?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let https = uri.scheme_str() == Some("https");
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            let stream = TcpStream::connect((host.as_str(), port)).await?;
            stream.set_nodelay(true)?;
            let Some(tls) = tls else {
                if https {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{uri} asks for TLS: set tls.ca (--tls-ca) to verify the server"),
                    ));
                }
                return Ok(TokioIo::new(ClientIo::Plain(stream)));
            };
            let connector = tokio_rustls::TlsConnector::from(tls.client_config());
            let stream = connector.connect(sni(), stream).await?;
            let identity = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| Identity::from_certificate(leaf));
            match identity {
                Some(identity) if expect.admits(&identity) => {
                    Ok(TokioIo::new(ClientIo::Tls(Box::new(stream))))
                }
                Some(identity) => Err(refused(format!(
                    "{uri} presented the certificate of {identity}, not of {expect}"
                ))),
                None => Err(refused(format!(
                    "{uri} presented a certificate that names no jobmaster identity"
                ))),
            }
        })
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientIo::Plain(s) => s.is_write_vectored(),
            ClientIo::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    use super::*;

    /// A health check through [`channel`] to `addr` with a short deadline.
    async fn call(addr: std::net::SocketAddr) -> tonic::Status {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .expect("url")
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_millis(500));
        let mut client = HealthClient::new(channel(endpoint, None, Expect::JobMaster));
        client
            .check(HealthCheckRequest::default())
            .await
            .expect_err("nothing answers")
    }

    #[tokio::test]
    async fn a_closed_port_is_refused_and_a_silent_one_is_not() {
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("address")
        };
        let status = call(closed).await;
        assert!(connection_refused(&status), "{status:?}");

        // Bound but never accepting: the kernel completes the handshake, then nobody speaks.
        // That is what a hung or cut-off peer looks like, not a gone one.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let status = call(silent.local_addr().expect("address")).await;
        assert!(!connection_refused(&status), "{status:?}");
        drop(silent);

        assert!(!connection_refused(&tonic::Status::unavailable(
            "connection refused"
        )));
    }
}
