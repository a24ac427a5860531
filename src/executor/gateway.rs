//! The executor's client of the JobMaster's TaskExecutorGateway, pointed at the endpoint it
//! follows now ([`super::follow`] chooses it, [`super::connection`] points it): registration,
//! heartbeats, reports and the goodbye all go to that endpoint. A channel per endpoint is kept,
//! so that pointing back at an endpoint reuses its connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use super::StartError;
use crate::api::v1::task_executor_gateway_client::TaskExecutorGatewayClient;
use crate::security::connector::{self, Expect};
use crate::security::tls::Tls;

/// Channels kept for endpoints outside `executor.jobmaster` (named by standbys), at most.
const MAX_HINTED: usize = 8;

/// The gateway client of the endpoint followed now.
pub(crate) struct Gateway {
    tls: Option<Arc<Tls>>,
    rpc_timeout: Duration,
    /// `executor.jobmaster`: their channels are always kept.
    list: Vec<String>,
    inner: Mutex<Inner>,
}

struct Inner {
    current: String,
    client: TaskExecutorGatewayClient<Channel>,
    channels: HashMap<String, Channel>,
}

impl Gateway {
    /// A gateway over `list` (not empty), pointed at its first endpoint. Every endpoint must be
    /// a URL whose scheme matches the executor's TLS (`https://` with it, `http://` without).
    pub(crate) fn new(
        list: Vec<String>,
        tls: Option<Arc<Tls>>,
        rpc_timeout: Duration,
    ) -> Result<Gateway, StartError> {
        let mut channels = HashMap::new();
        for url in &list {
            channels.insert(url.clone(), channel(url, tls.clone(), rpc_timeout)?);
        }
        let first = list.first().ok_or(StartError::JobmasterList(
            crate::api::leader::EndpointsError::Empty,
        ))?;
        let client = TaskExecutorGatewayClient::new(channels[first].clone());
        Ok(Gateway {
            inner: Mutex::new(Inner {
                current: first.clone(),
                client,
                channels,
            }),
            tls,
            rpc_timeout,
            list,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A client of the endpoint followed now.
    pub(crate) fn client(&self) -> TaskExecutorGatewayClient<Channel> {
        self.lock().client.clone()
    }

    /// Points the gateway at `url` (a no-op if it points there already); an endpoint that
    /// cannot be used (a standby named it) is an error, and the gateway stays where it was.
    pub(crate) fn point(&self, url: &str) -> Result<(), StartError> {
        let mut inner = self.lock();
        if inner.current == url {
            return Ok(());
        }
        let channel = self.channel_of(&mut inner, url)?;
        inner.client = TaskExecutorGatewayClient::new(channel);
        inner.current = url.to_owned();
        Ok(())
    }

    /// A client of `url` that leaves the gateway where it points (the search for a new leader
    /// while the one followed is silent); an endpoint that cannot be used is an error.
    pub(crate) fn client_of(
        &self,
        url: &str,
    ) -> Result<TaskExecutorGatewayClient<Channel>, StartError> {
        let mut inner = self.lock();
        let channel = self.channel_of(&mut inner, url)?;
        Ok(TaskExecutorGatewayClient::new(channel))
    }

    /// The channel kept for `url`, made (and kept) if there is none.
    fn channel_of(&self, inner: &mut Inner, url: &str) -> Result<Channel, StartError> {
        if let Some(c) = inner.channels.get(url) {
            return Ok(c.clone());
        }
        let c = channel(url, self.tls.clone(), self.rpc_timeout)?;
        let hinted = inner
            .channels
            .keys()
            .filter(|k| !self.list.contains(k))
            .count();
        if hinted >= MAX_HINTED {
            let list = &self.list;
            let current = inner.current.clone();
            inner
                .channels
                .retain(|k, _| list.contains(k) || *k == current);
        }
        inner.channels.insert(url.to_owned(), c.clone());
        Ok(c)
    }
}

/// A lazy channel to the JobMaster at `url`; over TLS the server must prove to be the
/// jobmaster (only its answers set the epoch).
fn channel(url: &str, tls: Option<Arc<Tls>>, rpc_timeout: Duration) -> Result<Channel, StartError> {
    let https = url.starts_with("https://");
    if https != tls.is_some() {
        return Err(StartError::JobmasterScheme {
            url: url.to_owned(),
            scheme: if https { "https" } else { "http" },
            state: if https { "off" } else { "on" },
            want: if https { "http" } else { "https" },
            fix: if https {
                "set tls.ca, tls.cert, tls.key"
            } else {
                "unset tls.ca, tls.cert, tls.key"
            },
        });
    }
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|error| StartError::JobmasterUrl {
            url: url.to_owned(),
            error,
        })?
        .connect_timeout(Duration::from_secs(1))
        .timeout(rpc_timeout);
    Ok(connector::channel(endpoint, tls, Expect::JobMaster))
}
