//! Accepted connections of our servers (gRPC and HTTP), in plain text or TLS, each with the
//! [`Peer`] it comes from: its address and, over TLS, the identity its certificate names.
//!
//! Handshakes run in their own tasks with a deadline, so a client that connects and says
//! nothing holds up nobody else.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::debug;

use super::Identity;
use super::tls::Tls;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most handshakes in progress at once. Beyond it the acceptor waits (connections queue in
/// the kernel's backlog) rather than resetting them.
const MAX_HANDSHAKES: usize = 1024;
/// Most handshakes in progress from one IP address; a connection beyond it is closed at once,
/// so one source of idle connections cannot take every handshake slot.
const MAX_HANDSHAKES_PER_IP: usize = 32;

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
pub struct Peer {
    pub remote: SocketAddr,
    /// The identity of the client certificate it presented (TLS only).
    pub identity: Option<Identity>,
}

/// One accepted connection.
pub struct Conn {
    io: Io,
    peer: Peer,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Conn {
    pub fn peer(&self) -> &Peer {
        &self.peer
    }
}

/// The task that owns a listener: [`Acceptor::close`] stops it and closes the port.
pub struct Acceptor(tokio::task::JoinHandle<()>);

impl Acceptor {
    /// Stops accepting; when it returns the listener is closed.
    pub async fn close(self) {
        self.0.abort();
        let _ = self.0.await;
    }
}

/// Accepts connections on `listener`, with TLS when `tls` is given.
pub fn incoming(
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
) -> (ReceiverStream<Result<Conn, io::Error>>, Acceptor) {
    let (tx, rx) = mpsc::channel(64);
    let task = tokio::spawn(accept_loop(listener, tls, tx));
    (ReceiverStream::new(rx), Acceptor(task))
}

/// Handshakes in progress per source address.
#[derive(Default)]
struct PerIp(std::sync::Mutex<HashMap<IpAddr, usize>>);

impl PerIp {
    fn enter(&self, ip: IpAddr) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= MAX_HANDSHAKES_PER_IP {
            return false;
        }
        *n += 1;
        true
    }

    fn leave(&self, ip: IpAddr) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&ip);
            }
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
    tx: mpsc::Sender<Result<Conn, io::Error>>,
) {
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    let per_ip = Arc::new(PerIp::default());
    loop {
        // Over TLS, wait for a handshake slot before taking the next connection.
        let permit = match &tls {
            Some(_) => tokio::select! {
                permit = handshakes.clone().acquire_owned() => match permit {
                    Ok(p) => Some(p),
                    Err(_) => return,
                },
                () = tx.closed() => return,
            },
            None => None,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = tx.closed() => return,
        };
        let (stream, remote) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Small replies must not wait for delayed ACKs.
        let _ = stream.set_nodelay(true);
        let Some(tls) = &tls else {
            let conn = Conn {
                io: Io::Plain(stream),
                peer: Peer {
                    remote,
                    identity: None,
                },
            };
            if tx.send(Ok(conn)).await.is_err() {
                return;
            }
            continue;
        };
        let Some(config) = tls.server_config() else {
            return;
        };
        if !per_ip.enter(remote.ip()) {
            debug!(%remote, "too many tls handshakes from this address: connection closed");
            continue;
        }
        let tx = tx.clone();
        let per_ip = per_ip.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
            per_ip.leave(remote.ip());
            let stream = match handshake {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    debug!(%remote, error = %e, "tls handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%remote, "tls handshake timed out");
                    return;
                }
            };
            let identity = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| Identity::from_certificate(leaf));
            let conn = Conn {
                io: Io::Tls(Box::new(stream)),
                peer: Peer { remote, identity },
            };
            let _ = tx.send(Ok(conn)).await;
        });
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// gRPC handlers find the [`Peer`] among the request's extensions.
impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = Peer;
    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

/// The HTTP server's side of [`incoming`]: axum accepts from it.
pub struct HttpListener {
    stream: ReceiverStream<Result<Conn, io::Error>>,
    local: SocketAddr,
}

impl HttpListener {
    pub fn new(
        listener: TcpListener,
        tls: Option<Arc<Tls>>,
    ) -> io::Result<(HttpListener, Acceptor)> {
        let local = listener.local_addr()?;
        let (stream, acceptor) = incoming(listener, tls);
        Ok((HttpListener { stream, local }, acceptor))
    }
}

impl axum::serve::Listener for HttpListener {
    type Io = Conn;
    type Addr = Peer;

    async fn accept(&mut self) -> (Conn, Peer) {
        use tokio_stream::StreamExt;
        loop {
            match self.stream.next().await {
                Some(Ok(conn)) => {
                    let peer = conn.peer.clone();
                    return (conn, peer);
                }
                Some(Err(_)) => continue,
                // The acceptor only ends when this stream is dropped.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Peer> {
        Ok(Peer {
            remote: self.local,
            identity: None,
        })
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, HttpListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, HttpListener>) -> Peer {
        stream.remote_addr().clone()
    }
}
