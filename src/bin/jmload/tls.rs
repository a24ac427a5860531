//! `--tls`: the same scenarios with TLS and authentication everywhere (issue 12). A throwaway
//! CA and certificates (`jobmaster certs`' library) go into a temporary folder, removed at the
//! end (`--tls-dir DIR` uses, or creates, a lasting folder instead: for a daemon at
//! `--endpoint` started with that folder's files). The in-process daemon serves TLS with them
//! and the token file; the operator client authenticates with the operator certificate; each
//! simulated executor connects to the daemon with its own certificate (issued when it is
//! added) and serves its TaskExecutorService over TLS, refusing callers without a certificate
//! of the CA, as `taskexecutor` does.
//!
//! The simulated executors share one gRPC server, which tells them apart by the local port a
//! call arrived on ([`jobmaster::fake_executor::Fleet`]). A TLS connection from
//! [`incoming`] carries its [`Peer`] instead of a `TcpConnectInfo`, so each executor's
//! listener tags its connections with the port ([`TaggedConn`]), and [`split_connect_info`]
//! gives each request both extensions: the `Peer` for the authorization layer, the
//! `TcpConnectInfo` for the fleet.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};

use anyhow::{Context, Result, anyhow};
use jobmaster::security::Identity;
use jobmaster::security::certs::{self, CertsOptions};
use jobmaster::security::incoming::{Conn, Peer};
use jobmaster::security::tls::{ClientAuth, Tls, TlsFiles};
use jobmaster::settings::Settings;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::codegen::http;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// The certificate folder of a `--tls` run.
pub(crate) struct TlsSetup {
    dir: PathBuf,
    /// Remove `dir` at the end (a throwaway folder).
    remove: bool,
    operator: Arc<Tls>,
    /// One `certs::generate` at a time (each rewrites nothing but the new executor's files).
    issuing: Mutex<()>,
}

impl TlsSetup {
    /// A CA, the daemon's and the operator's certificates and the tokens in `dir` (kept), or
    /// in a new temporary folder (removed when this is dropped).
    pub(crate) fn create(dir: Option<&Path>) -> Result<TlsSetup> {
        let (dir, remove) = match dir {
            Some(dir) => (dir.to_owned(), false),
            None => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                let dir = std::env::temp_dir()
                    .join(format!("jmload-certs-{}-{nanos:x}", std::process::id()));
                (dir, true)
            }
        };
        certs::generate(&CertsOptions::new(&dir))
            .with_context(|| format!("creating certificates in {}", dir.display()))?;
        let operator = Tls::load(
            TlsFiles {
                ca: dir.join(certs::CA_CERT),
                cert: Some((
                    dir.join(certs::OPERATOR_CERT),
                    dir.join(certs::OPERATOR_KEY),
                )),
            },
            ClientAuth::Optional,
            None,
        )?;
        Ok(TlsSetup {
            dir,
            remove,
            operator,
            issuing: Mutex::new(()),
        })
    }

    /// The in-process daemon's `[tls]` and `auth.token-file`.
    pub(crate) fn apply(&self, settings: &mut Settings) {
        let path = |file: &str| self.dir.join(file).to_string_lossy().into_owned();
        settings.tls.ca = path(certs::CA_CERT);
        settings.tls.cert = path(certs::JOBMASTER_CERT);
        settings.tls.key = path(certs::JOBMASTER_KEY);
        settings.auth.token_file = path(certs::TOKENS);
    }

    /// The operator's client TLS.
    pub(crate) fn operator(&self) -> Arc<Tls> {
        self.operator.clone()
    }

    /// Executor `id`'s TLS (its certificate is issued by the CA if it has none yet): the
    /// client of its gateway connection and the server of its TaskExecutorService, which
    /// requires a client certificate.
    pub(crate) fn executor(&self, id: &str) -> Result<Arc<Tls>> {
        let cert = self.dir.join(certs::executor_cert_file(id));
        let key = self.dir.join(certs::executor_key_file(id));
        {
            let _one = self.issuing.lock().unwrap_or_else(|e| e.into_inner());
            if !cert.exists() {
                let mut options = CertsOptions::new(&self.dir);
                options.executors = vec![id.to_owned()];
                certs::generate(&options)
                    .with_context(|| format!("issuing executor {id}'s certificate"))?;
            }
        }
        Tls::load_server(
            TlsFiles {
                ca: self.dir.join(certs::CA_CERT),
                cert: Some((cert, key)),
            },
            ClientAuth::Required,
            &Identity::Executor(id.to_owned()),
        )
        .map_err(|e| anyhow!("executor {id}'s certificate: {e}"))
    }
}

impl Drop for TlsSetup {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// An accepted TLS connection of a simulated executor, tagged with its listener's address.
pub(crate) struct TaggedConn {
    pub(crate) conn: Conn,
    pub(crate) local: SocketAddr,
}

/// What a [`TaggedConn`] gives each of its requests; [`split_connect_info`] splits it.
#[derive(Clone)]
pub(crate) struct TaggedInfo {
    peer: Peer,
    local: SocketAddr,
}

impl Connected for TaggedConn {
    type ConnectInfo = TaggedInfo;
    fn connect_info(&self) -> TaggedInfo {
        TaggedInfo {
            peer: self.conn.peer().clone(),
            local: self.local,
        }
    }
}

/// Gives a request of a [`TaggedConn`] its `Peer` (for the authorization layer) and a
/// `TcpConnectInfo` (the local port says which simulated executor it is for).
pub(crate) fn split_connect_info(
    mut request: http::Request<tonic::body::Body>,
) -> http::Request<tonic::body::Body> {
    if let Some(info) = request.extensions_mut().remove::<TaggedInfo>() {
        request.extensions_mut().insert(TcpConnectInfo {
            local_addr: Some(info.local),
            remote_addr: Some(info.peer.remote),
        });
        request.extensions_mut().insert(info.peer);
    }
    request
}

impl AsyncRead for TaggedConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().conn).poll_read(cx, buf)
    }
}

impl AsyncWrite for TaggedConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().conn).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().conn).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.conn.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().conn).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().conn).poll_shutdown(cx)
    }
}
