//! A small etcd v3 client over the vendored API subset (`proto/etcd`): KV ranges and guarded
//! transactions, leases and their keep-alive stream, and the election service. It talks to one
//! member at a time and moves on to the next one of `ha.etcd-endpoints` when a member does not
//! answer, so one lost member of three changes nothing.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::HaError;

/// The generated etcd API (see `proto/etcd/README.md`).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
    pub mod v3electionpb {
        tonic::include_proto!("v3electionpb");
    }
}

use pb::etcdserverpb::kv_client::KvClient;
use pb::etcdserverpb::lease_client::LeaseClient;
use pb::etcdserverpb::{
    LeaseGrantRequest, LeaseRevokeRequest, RangeRequest, TxnRequest, TxnResponse,
};
use pb::mvccpb::KeyValue;
use pb::v3electionpb::election_client::ElectionClient;
use pb::v3electionpb::{CampaignRequest, LeaderKey, LeaderRequest, ResignRequest};

/// Keys per range request when loading (etcd answers a range in one message).
const PAGE: i64 = 1000;

/// Largest message we accept from etcd (a page of values of up to ~1 MiB each would not fit
/// in tonic's default 4 MiB).
const MAX_RECEIVE: usize = 256 << 20;

/// A connection to an etcd cluster.
pub struct Etcd {
    members: Vec<(String, Channel)>,
    /// The member asked first.
    current: AtomicUsize,
    timeout: Duration,
}

impl Etcd {
    /// Clients for `endpoints` (URLs of etcd members). Nothing connects yet.
    pub fn new(
        endpoints: &[String],
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<Etcd, HaError> {
        if endpoints.is_empty() {
            return Err(HaError::Config(
                "ha.etcd-endpoints is empty: list the client URLs of the etcd members".into(),
            ));
        }
        let mut members = Vec::with_capacity(endpoints.len());
        for url in endpoints {
            let endpoint = Endpoint::from_shared(url.clone())
                .map_err(|e| {
                    HaError::Config(format!(
                        "ha.etcd-endpoints: {url:?} is not a URL ({e}); write http://HOST:PORT"
                    ))
                })?
                .connect_timeout(connect_timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(1))
                .keep_alive_timeout(timeout)
                .keep_alive_while_idle(true);
            members.push((url.clone(), endpoint.connect_lazy()));
        }
        Ok(Etcd {
            members,
            current: AtomicUsize::new(0),
            timeout,
        })
    }

    /// The member asked first now.
    pub fn member(&self) -> &str {
        &self.members[self.current.load(Ordering::Relaxed) % self.members.len()].0
    }

    /// A channel to the member asked first, and its index.
    fn channel(&self) -> (usize, Channel) {
        let i = self.current.load(Ordering::Relaxed) % self.members.len();
        (i, self.members[i].1.clone())
    }

    /// Moves on from member `i` (if it is still the current one).
    fn skip(&self, i: usize) {
        let _ = self.current.compare_exchange(
            i,
            (i + 1) % self.members.len(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Runs `call` on each member in turn until one answers (or refuses for a reason another
    /// member would share). `None` timeout: the call may take as long as it needs.
    async fn call<T, F, Fut>(
        &self,
        what: &'static str,
        timeout: Option<Duration>,
        call: F,
    ) -> Result<T, HaError>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut last = None;
        for _ in 0..self.members.len() {
            let (i, channel) = self.channel();
            let result = match timeout {
                Some(t) => match tokio::time::timeout(t, call(channel)).await {
                    Ok(r) => r,
                    Err(_) => Err(Status::deadline_exceeded(format!("no answer within {t:?}"))),
                },
                None => call(channel).await,
            };
            match result {
                Ok(v) => return Ok(v),
                Err(status) if member_trouble(&status) => {
                    self.skip(i);
                    last = Some((self.members[i].0.clone(), status));
                }
                Err(status) => {
                    return Err(HaError::Etcd {
                        what,
                        member: self.members[i].0.clone(),
                        status: Box::new(status),
                    });
                }
            }
        }
        let (member, status) = last.expect("at least one member");
        Err(HaError::Etcd {
            what,
            member,
            status: Box::new(status),
        })
    }

    fn kv(channel: Channel) -> KvClient<Channel> {
        KvClient::new(channel).max_decoding_message_size(MAX_RECEIVE)
    }

    /// Every key under `prefix`, in key order, read at one revision.
    pub async fn range_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, HaError> {
        let end = prefix_end(prefix);
        let mut out = Vec::new();
        let mut from = prefix.to_vec();
        let mut revision = 0;
        loop {
            let request = RangeRequest {
                key: from.clone(),
                range_end: end.clone(),
                limit: PAGE,
                revision,
                ..RangeRequest::default()
            };
            let page = self
                .call("range", Some(self.timeout), |c| {
                    let request = request.clone();
                    async move { Ok(Etcd::kv(c).range(request).await?.into_inner()) }
                })
                .await?;
            if revision == 0 {
                revision = page.header.map_or(0, |h| h.revision);
            }
            let more = page.more;
            if let Some(last) = page.kvs.last() {
                from = last.key.clone();
                from.push(0);
            }
            out.extend(page.kvs);
            if !more {
                return Ok(out);
            }
        }
    }

    /// One key's value.
    pub async fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, HaError> {
        let request = RangeRequest {
            key: key.to_vec(),
            ..RangeRequest::default()
        };
        let page = self
            .call("get", Some(self.timeout), |c| {
                let request = request.clone();
                async move { Ok(Etcd::kv(c).range(request).await?.into_inner()) }
            })
            .await?;
        Ok(page.kvs.into_iter().next())
    }

    /// A transaction.
    pub async fn txn(&self, request: TxnRequest) -> Result<TxnResponse, HaError> {
        self.call("txn", Some(self.timeout), |c| {
            let request = request.clone();
            async move { Ok(Etcd::kv(c).txn(request).await?.into_inner()) }
        })
        .await
    }

    /// A new lease of `ttl` (whole seconds, at least 1); returns its id and granted TTL.
    pub async fn grant(&self, ttl: Duration) -> Result<(i64, Duration), HaError> {
        let ttl = ttl.as_secs().max(1) as i64;
        let response = self
            .call("lease grant", Some(self.timeout), |c| async move {
                Ok(LeaseClient::new(c)
                    .lease_grant(LeaseGrantRequest { ttl, id: 0 })
                    .await?
                    .into_inner())
            })
            .await?;
        if !response.error.is_empty() {
            return Err(HaError::Lease(response.error));
        }
        Ok((response.id, Duration::from_secs(response.ttl.max(0) as u64)))
    }

    /// Ends a lease at once (its keys go with it). Best effort.
    pub async fn revoke(&self, id: i64) -> Result<(), HaError> {
        self.call("lease revoke", Some(self.timeout), |c| async move {
            LeaseClient::new(c)
                .lease_revoke(LeaseRevokeRequest { id })
                .await?;
            Ok(())
        })
        .await
    }

    /// A lease client on the current member, for the keep-alive stream; with its index (see
    /// [`Etcd::lease_failed`]).
    pub fn lease_client(&self) -> (usize, LeaseClient<Channel>) {
        let (i, channel) = self.channel();
        (i, LeaseClient::new(channel))
    }

    /// The keep-alive stream on member `i` failed: use another one next time.
    pub fn lease_failed(&self, i: usize) {
        self.skip(i);
    }

    /// Waits until this lease leads election `name`; `value` is what it proclaims (our
    /// endpoint). Returns the leader key: its create revision is the leader's epoch.
    pub async fn campaign(
        &self,
        name: &[u8],
        lease: i64,
        value: &[u8],
    ) -> Result<LeaderKey, HaError> {
        let request = CampaignRequest {
            name: name.to_vec(),
            lease,
            value: value.to_vec(),
        };
        let response = self
            .call("campaign", None, |c| {
                let request = request.clone();
                async move { Ok(ElectionClient::new(c).campaign(request).await?.into_inner()) }
            })
            .await?;
        response
            .leader
            .ok_or_else(|| HaError::Lease("etcd answered a campaign without a leader key".into()))
    }

    /// The current leader of election `name`: its key and value; `None` without one.
    pub async fn leader(&self, name: &[u8]) -> Result<Option<KeyValue>, HaError> {
        let request = LeaderRequest {
            name: name.to_vec(),
        };
        let result = self
            .call("leader", Some(self.timeout), |c| {
                let request = request.clone();
                async move { ElectionClient::new(c).leader(request).await }
            })
            .await;
        match result {
            Ok(response) => Ok(response.into_inner().kv),
            // "election: no leader".
            Err(HaError::Etcd { status, .. })
                if status.code() == Code::NotFound || status.message().contains("no leader") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Gives up leadership (the next campaigner leads at once). Best effort.
    pub async fn resign(&self, leader: LeaderKey) -> Result<(), HaError> {
        let request = ResignRequest {
            leader: Some(leader),
        };
        self.call("resign", Some(self.timeout), |c| {
            let request = request.clone();
            async move {
                ElectionClient::new(c).resign(request).await?;
                Ok(())
            }
        })
        .await
    }
}

/// A failure of the member rather than of the request: another member may answer.
fn member_trouble(status: &Status) -> bool {
    // "election: no leader" is an answer (nobody leads), not trouble.
    if status.message().starts_with("election:") {
        return false;
    }
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled
    ) || status.message().contains("leader changed")
        || status.message().contains("no leader")
}

/// The end of the range of keys starting with `prefix` (etcd's convention).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff: every key from `prefix` on.
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_of_a_prefix_ends_at_its_last_byte_plus_one() {
        assert_eq!(prefix_end(b"/jm/jobs/"), b"/jm/jobs0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn an_empty_or_malformed_endpoint_list_names_the_key() {
        let e = Etcd::new(&[], Duration::from_secs(1), Duration::from_secs(1))
            .err()
            .unwrap();
        assert!(e.to_string().contains("ha.etcd-endpoints"), "{e}");
        let e = Etcd::new(
            &["not a url".into()],
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("not a URL"), "{e}");
    }
}
