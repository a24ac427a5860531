//! Executors coming and going, on the coordinator's side: a registration (its gRPC client
//! and dispatcher, what it holds for a restarted core to adopt) and a loss (its dispatcher
//! stopped, its session remembered so that it cannot come back with its attempts).

use tonic::transport::Endpoint;
use tracing::{info, warn};

use super::{Coordinator, Dispatcher};
use crate::api::convert;
use crate::api::v1::task_executor_service_client::TaskExecutorServiceClient;
use crate::api::v1::{AttemptRef, PartitionRef};
use crate::core::{AttemptState, Event, ExecutorId, Holdings, JobId, Labels};
use crate::log_text::Escaped;
use crate::server::ApiError;

impl Coordinator {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn register(
        &mut self,
        executor: ExecutorId,
        address: String,
        slots: u32,
        session: String,
        free_disk: u64,
        labels: Labels,
        (attempts, partitions): (Vec<(AttemptRef, AttemptState)>, Vec<PartitionRef>),
    ) -> Result<(), ApiError> {
        if let Some(status) = self.shared.executors.get(&executor)
            && status.session == session
        {
            return Ok(()); // the same session again: a retried registration
        }
        if self.lost_sessions.get(&executor) == Some(&session) {
            // Its attempts failed over already: it must not come back with them.
            return Err(ApiError::FailedPrecondition(format!(
                "executor {executor}: session {session:?} was declared lost; kill its attempts \
                 and register with a new session"
            )));
        }
        let tls = self.shared.tls.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
            .map_err(|e| ApiError::InvalidArgument(format!("address {address:?}: {e}")))?
            .connect_timeout(self.shared.settings.rpc.connect_timeout)
            .timeout(self.shared.settings.rpc.timeout);
        let limit = self.shared.settings.server.max_message_bytes;
        // Over TLS, whatever answers on the address must hold this executor's certificate.
        let expect = crate::security::connector::Expect::Executor(executor.0.clone());
        let channel =
            crate::security::connector::channel(endpoint.clone(), tls.clone(), expect.clone());
        // Connect (and do the TLS handshake) now, not on the first command: that command is
        // often a failover's redeploy, whose latency counts.
        let connecting = tokio::spawn(crate::security::connector::connect(endpoint, tls, expect));
        let client = TaskExecutorServiceClient::new(channel)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        // A new session of a known id: the old session is lost first (its attempts fail over,
        // its dispatcher stops), so every loss goes through one path.
        if self.shared.executors.contains_key(&executor) {
            self.lose(
                &executor,
                None,
                "executor registered again with a new session",
            );
        }
        // The dispatcher and status go in before the core hears of the executor: the
        // registration may place waiting regions on it at once, and those deploys need them.
        self.dispatchers.insert(
            executor.clone(),
            Dispatcher::start(executor.clone(), client, connecting, self.shared.clone()),
        );
        self.shared.executors.insert(
            executor.clone(),
            crate::server::ExecutorStatus::new(address.clone(), session, free_disk, labels.clone()),
        );
        let holds = self.holdings(&executor, attempts, &partitions);
        let adopting = holds.attempts.len();
        if let Err(e) = self.feed(Event::ExecutorRegistered {
            executor: executor.clone(),
            slots,
            labels,
            holds,
        }) {
            // Refused (nothing changed in the core): the registration did not happen.
            self.dispatchers.remove(&executor);
            self.shared.executors.remove(&executor);
            return Err(e);
        }
        info!(executor = %Escaped(&executor.0), address = %Escaped(&address), slots, held = adopting, "executor registered");
        Ok(())
    }

    /// What a registering executor holds, in the core's terms; attempts of jobs or tasks the
    /// core does not know are cancelled at once.
    fn holdings(
        &mut self,
        executor: &ExecutorId,
        attempts: Vec<(AttemptRef, AttemptState)>,
        partitions: &[PartitionRef],
    ) -> Holdings {
        let mut holds = Holdings::default();
        for (r, state) in attempts {
            match convert::attempt_id(&self.core, &r) {
                Some(a) => holds.attempts.push((a, state)),
                None if !state.is_terminal() => self.send_cancel(executor, r),
                None => {}
            }
        }
        for p in partitions {
            if let Some(id) = convert::partition_id(&self.core, p)
                && let Ok(job) = p.job_id.parse::<JobId>()
            {
                holds.partitions.push((job, id, p.attempt));
            }
        }
        holds
    }

    pub(super) fn lose(&mut self, executor: &ExecutorId, session: Option<&str>, reason: &str) {
        let current = self
            .shared
            .executors
            .get(executor)
            .map(|s| s.session.clone());
        match (current, session) {
            (None, _) => return,
            (Some(current), Some(session)) if current != session => return,
            _ => {}
        }
        // `reason` as a plain &str is written with `{:?}`, which escapes control and format chars.
        warn!(executor = %Escaped(&executor.0), reason, "executor lost");
        self.forget(executor);
        let _ = self.feed(Event::ExecutorLost {
            executor: executor.clone(),
            reason: reason.to_owned(),
        });
    }

    /// Removes a lost executor from the registry, stops its dispatcher and remembers its
    /// session, which may not register again.
    pub(super) fn forget(&mut self, executor: &ExecutorId) {
        if let Some((id, status)) = self.shared.executors.remove(executor) {
            self.lost_sessions.insert(id, status.session);
        }
        self.dispatchers.remove(executor);
    }
}
