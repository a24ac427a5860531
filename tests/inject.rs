//! InjectFailure takes what a task can do and keeps what a history can hold (issue 13,
//! case 7): a task cannot be "executor-lost", and a 1 MiB message is cut to 8 KiB.

mod daemon_support;

use std::time::Duration;

use daemon_support::*;
use jobmaster::api::v1::{
    GetExceptionHistoryRequest, InjectFailureRequest, inject_failure_request,
};
use tonic::Code;

const TEST_LIMIT: Duration = Duration::from_secs(60);

const ONE: &str = r#"
name = "one"
[[vertices]]
id = "work"
parallelism = 1
command = ["sleep", "3600"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_task_failures_take_task_classes_and_long_messages_are_cut() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let _a = FakeExecutor::start(&daemon, "tm-a", 2).await;
        let mut client = daemon.client().await;
        let job = submit(&client, ONE).await;
        wait_all_running(&client, &job).await;
        let inject = |class: &str, message: String| InjectFailureRequest {
            job_id: job.clone(),
            target: Some(inject_failure_request::Target::Task("work#0".into())),
            class: class.into(),
            message,
        };
        for class in ["executor-lost", "partition-lost"] {
            let refused = client
                .inject_failure(inject(class, String::new()))
                .await
                .expect_err("not a task's failure");
            assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
            assert!(refused.message().contains(class), "{refused:?}");
        }
        client
            .inject_failure(inject("recoverable", "x".repeat(1 << 20)))
            .await
            .expect("a long message is accepted");
        let history = client
            .get_exception_history(GetExceptionHistoryRequest {
                job_id: job.clone(),
            })
            .await
            .expect("history")
            .into_inner();
        let message = &history
            .entries
            .last()
            .expect("one entry")
            .root
            .as_ref()
            .expect("root")
            .message;
        assert!(message.len() < 9 * 1024, "{} bytes kept", message.len());
        assert!(
            message.ends_with("more bytes cut)"),
            "{}",
            &message[message.len() - 40..]
        );
    })
    .await;
}
