//! The TaskExecutorGateway believes nothing an executor's message claims without checking it
//! (issue 12): a registration with a malformed executor id, session id, address, slot count
//! or label is refused with INVALID_ARGUMENT naming the field, and the executor is not
//! registered; reports, heartbeats and disconnects with malformed ids are refused the same way.

mod daemon_support;

use jobmaster::api::v1::task_executor_gateway_client::TaskExecutorGatewayClient;
use jobmaster::api::v1::{
    DisconnectRequest, HeartbeatRequest, RegisterExecutorRequest, UpdateTaskStatesRequest,
};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Code, Status};

use daemon_support::*;

/// A well-formed registration of `id` at `address`; tests spoil one field.
fn registration(id: &str, address: &str) -> RegisterExecutorRequest {
    RegisterExecutorRequest {
        executor_id: id.to_owned(),
        address: address.to_owned(),
        slots: 4,
        session_id: session_id(),
        free_disk_bytes: 1 << 30,
        labels: Default::default(),
        attempts: Vec::new(),
        partitions: Vec::new(),
    }
}

async fn register(
    gateway: &TaskExecutorGatewayClient<Channel>,
    request: RegisterExecutorRequest,
) -> Result<(), Status> {
    let mut g = gateway.clone();
    bounded("RegisterExecutor", g.register_executor(request))
        .await
        .map(|_| ())
}

/// Registers `request`, which must be refused with INVALID_ARGUMENT naming `field`; returns the
/// refusal's message.
async fn refused(
    gateway: &TaskExecutorGatewayClient<Channel>,
    request: RegisterExecutorRequest,
    field: &str,
) -> String {
    let what = format!("{request:?}");
    let status = register(gateway, request)
        .await
        .expect_err(&format!("{what} must be refused"));
    assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
    assert!(
        status.message().contains(field),
        "{what}: the refusal names {field}: {status:?}"
    );
    status.message().to_owned()
}

/// No executor registered: they heartbeat rarely enough never to be declared lost meanwhile.
fn quiet_settings(extra: &[(&str, &str)]) -> jobmaster::settings::Settings {
    let mut all = vec![
        ("JOBMASTER__HEARTBEAT__TIMEOUT", "60s"),
        // At least the heartbeat timeout (checked at start).
        ("JOBMASTER__RECOVERY__RECONCILE_TIMEOUT", "60s"),
    ];
    all.extend_from_slice(extra);
    settings(&all)
}

#[tokio::test]
async fn executor_ids_with_line_breaks_zero_width_or_bidi_characters_are_refused() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(quiet_settings(&[])).await;
        let gateway = daemon.gateway().await;
        let client = daemon.client().await;
        let long = "x".repeat(129);
        for id in [
            "exec-a\nINFO executor registered executor=exec-b",
            "exec\u{200B}a",
            "exec\u{202E}a",
            "exec\u{2066}a",
            "exec\u{FEFF}",
            "exec\u{1b}[31m",
            "exec a",
            "exec#1",
            "",
            long.as_str(),
        ] {
            refused(&gateway, registration(id, "127.0.0.1:6124"), "executor_id").await;
        }
        let message = refused(
            &gateway,
            registration("exec\u{202E}a", "127.0.0.1:6124"),
            "executor_id",
        )
        .await;
        assert!(
            message.contains("\\u{202e} at position 5"),
            "the refusal says which character, where: {message}"
        );
        assert!(
            !message.contains('\u{202E}'),
            "the refusal quotes the id escaped: {message:?}"
        );
        assert_eq!(executor_ids(&client).await, Vec::<String>::new());
    })
    .await
}

#[tokio::test]
async fn addresses_that_are_not_host_and_port_are_refused() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(quiet_settings(&[])).await;
        let gateway = daemon.gateway().await;
        let client = daemon.client().await;
        for address in [
            "evil",
            "host:0",
            "http://x:1/path",
            "x:1/path",
            "user@host:6124",
            "host:65536",
            "host:port",
            "::1:6124",
            "host\n:6124",
            "",
        ] {
            refused(&gateway, registration("exec-a", address), "address").await;
        }
        assert_eq!(executor_ids(&client).await, Vec::<String>::new());
    })
    .await
}

#[tokio::test]
async fn host_names_ipv4_and_bracketed_ipv6_addresses_are_accepted() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(quiet_settings(&[])).await;
        let gateway = daemon.gateway().await;
        let client = daemon.client().await;
        let accepted = [
            ("exec-v6", "[::1]:6124"),
            ("exec-dns", "host.example:6124"),
            ("exec-v4", "10.0.0.1:6124"),
        ];
        for (id, address) in accepted {
            register(&gateway, registration(id, address))
                .await
                .unwrap_or_else(|s| panic!("{id} at {address} is accepted: {s:?}"));
        }
        let mut listed: Vec<(String, String)> = executors(&client)
            .await
            .into_iter()
            .map(|e| (e.id, e.address))
            .collect();
        listed.sort();
        let mut expected: Vec<(String, String)> = accepted
            .iter()
            .map(|(id, address)| ((*id).to_owned(), (*address).to_owned()))
            .collect();
        expected.sort();
        assert_eq!(listed, expected);
    })
    .await
}

#[tokio::test]
async fn slots_above_the_configured_maximum_are_refused() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(quiet_settings(&[(
            "JOBMASTER__SERVER__MAX_EXECUTOR_SLOTS",
            "8",
        )]))
        .await;
        let gateway = daemon.gateway().await;
        let client = daemon.client().await;
        let message = refused(
            &gateway,
            RegisterExecutorRequest {
                slots: 9,
                ..registration("exec-big", "127.0.0.1:6124")
            },
            "slots",
        )
        .await;
        assert_eq!(
            message,
            "slots 9 is more than server.max-executor-slots (8) allows"
        );
        refused(
            &gateway,
            RegisterExecutorRequest {
                slots: 0,
                ..registration("exec-none", "127.0.0.1:6124")
            },
            "slots",
        )
        .await;
        assert_eq!(executor_ids(&client).await, Vec::<String>::new());
        register(
            &gateway,
            RegisterExecutorRequest {
                slots: 8,
                ..registration("exec-max", "127.0.0.1:6124")
            },
        )
        .await
        .expect("as many slots as the maximum are accepted");
        assert_eq!(executor_ids(&client).await, vec!["exec-max".to_owned()]);
    })
    .await
}

#[tokio::test]
async fn labels_with_control_or_format_characters_are_refused() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(quiet_settings(&[])).await;
        let gateway = daemon.gateway().await;
        let client = daemon.client().await;
        for (key, value) in [
            ("zone", "a\nb"),
            ("zone", "a\u{1b}[31m"),
            ("zone", "a\u{202E}b"),
            ("zone", "a\u{200B}"),
            ("zone", "a\u{85}"),
            ("zone", ""),
            ("zo\nne", "a"),
            ("zone\u{2066}", "a"),
            ("", "a"),
        ] {
            let mut r = registration("exec-a", "127.0.0.1:6124");
            r.labels.insert(key.to_owned(), value.to_owned());
            refused(&gateway, r, "label").await;
        }
        assert_eq!(executor_ids(&client).await, Vec::<String>::new());
    })
    .await
}

#[tokio::test]
async fn session_ids_must_be_printable_ascii_words() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(quiet_settings(&[])).await;
        let gateway = daemon.gateway().await;
        let client = daemon.client().await;
        let long = "s".repeat(129);
        for session in ["", "a session", "s\n", "s\u{200B}", "sé", long.as_str()] {
            let r = RegisterExecutorRequest {
                session_id: session.to_owned(),
                ..registration("exec-a", "127.0.0.1:6124")
            };
            refused(&gateway, r, "session_id").await;
        }
        assert_eq!(executor_ids(&client).await, Vec::<String>::new());
    })
    .await
}

#[tokio::test]
async fn reports_heartbeats_and_disconnects_with_malformed_ids_are_invalid_arguments() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(quiet_settings(&[])).await;
        let mut gateway = daemon.gateway().await;
        let forged = "exec-a\nINFO executor disconnects";
        let status = bounded(
            "UpdateTaskStates",
            gateway.update_task_states(UpdateTaskStatesRequest {
                executor_id: forged.to_owned(),
                session_id: session_id(),
                updates: Vec::new(),
            }),
        )
        .await
        .expect_err("a malformed executor id is refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("executor_id"), "{status:?}");

        let status = bounded(
            "Disconnect",
            gateway.disconnect(DisconnectRequest {
                executor_id: "exec-a".to_owned(),
                session_id: "with space".to_owned(),
                reason: "bye".to_owned(),
            }),
        )
        .await
        .expect_err("a malformed session id is refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("session_id"), "{status:?}");

        let heartbeat = HeartbeatRequest {
            executor_id: forged.to_owned(),
            session_id: session_id(),
            ..HeartbeatRequest::default()
        };
        let mut answers = bounded(
            "Heartbeat",
            gateway.heartbeat(tokio_stream::iter([heartbeat])),
        )
        .await
        .expect("the heartbeat stream opens")
        .into_inner();
        let answer = bounded("the heartbeat answer", answers.next())
            .await
            .expect("the stream answers");
        let status = answer.expect_err("a heartbeat with a malformed id is refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("executor_id"), "{status:?}");
    })
    .await
}

#[tokio::test]
async fn a_report_from_a_session_that_never_registered_is_not_called_replaced() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(quiet_settings(&[])).await;
        let gateway = daemon.gateway().await;
        register(&gateway, registration("exec-a", "127.0.0.1:6124"))
            .await
            .expect("registers");
        let mut g = gateway.clone();
        let status = g
            .update_task_states(UpdateTaskStatesRequest {
                executor_id: "exec-a".into(),
                session_id: "never-registered".into(),
                updates: vec![],
            })
            .await
            .expect_err("an unknown session is refused");
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert!(
            status.message().contains("never registered")
                && status.message().contains("register again")
                && !status.message().contains("was replaced"),
            "{status:?}"
        );
    })
    .await
}
