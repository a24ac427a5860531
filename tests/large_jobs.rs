//! Large jobs and many jobs (issue 13, items 1 and 2): reads are paged and summarised, the
//! dashboard's JSON says what changed, ended jobs are dropped after their retention, and
//! quotas refuse what would not fit.

mod daemon_support;

use daemon_support::*;
use jobmaster::api::v1::GetJobRequest;
use jobmaster::api::v1::job_master_service_client::JobMasterServiceClient;
use tonic::Code;
use tonic::transport::Channel;

/// `p` independent tasks of one vertex (no executor needed: they wait in CREATED).
fn wide(name: &str, p: u32) -> String {
    format!(
        "name = \"{name}\"\n[[vertices]]\nid = \"work\"\nparallelism = {p}\ncommand = [\"x\"]\n"
    )
}

async fn cancel(client: &JobMasterServiceClient<Channel>, job: &str) {
    cancel_job(client, job).await;
}

async fn job_ids(client: &JobMasterServiceClient<Channel>) -> Vec<String> {
    list_jobs(client)
        .await
        .into_iter()
        .map(|j| j.job_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_job_is_read_in_pages_and_summarised_per_vertex_and_region() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let client = daemon.client().await;
        let job = submit(&client, &wide("wide", 2500)).await;

        // gRPC: pages of at most 1,000 tasks by default, with per-state counts.
        let mut c = client.clone();
        let first = c
            .get_job(GetJobRequest {
                job_id: job.clone(),
                ..GetJobRequest::default()
            })
            .await
            .expect("GetJob")
            .into_inner();
        assert_eq!(first.total_tasks, 2500);
        assert_eq!(first.tasks.len(), 1000);
        assert!(first.has_more_tasks);
        assert_eq!(first.next_task_offset, 1000);
        assert_eq!(first.vertices[0].states[0].state, "CREATED");
        assert_eq!(first.vertices[0].states[0].count, 2500);
        assert_eq!(first.total_regions, 2500);
        assert!(first.start_time_ms > 1_600_000_000_000, "wall-clock time");
        let last = c
            .get_job(GetJobRequest {
                job_id: job.clone(),
                task_offset: 2000,
                task_limit: 1000,
                ..GetJobRequest::default()
            })
            .await
            .expect("GetJob")
            .into_inner();
        assert_eq!(last.tasks.len(), 500);
        assert!(!last.has_more_tasks);
        assert_eq!(last.tasks[0].name, "work#2000");
        let too_many = c
            .get_job(GetJobRequest {
                job_id: job.clone(),
                task_limit: 50_000,
                ..GetJobRequest::default()
            })
            .await
            .expect_err("a page beyond the maximum");
        assert_eq!(too_many.code(), Code::InvalidArgument);
        assert!(
            too_many.message().contains("at most 10000"),
            "{}",
            too_many.message()
        );
        let unknown = c
            .get_job(GetJobRequest {
                job_id: job.clone(),
                vertex: "nope".into(),
                ..GetJobRequest::default()
            })
            .await
            .expect_err("an unknown vertex");
        assert_eq!(unknown.code(), Code::NotFound);
        assert!(
            unknown.message().contains("its vertices are work"),
            "{}",
            unknown.message()
        );

        // HTTP: beyond 2,000 tasks the job comes summarised, without tasks.
        let (code, body) = http_get(daemon.http_addr, &format!("/api/jobs/{job}")).await;
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v.get("tasks").is_none(), "no task list for 2,500 tasks");
        assert_eq!(v["total_tasks"], 2500);
        assert_eq!(v["vertices"][0]["states"]["CREATED"], 2500);
        assert_eq!(v["regions"].as_array().unwrap().len(), 1000);
        let version = v["version"].as_u64().unwrap();
        // Nothing changed since: 304, no body.
        let (code, body) = http_get(
            daemon.http_addr,
            &format!("/api/jobs/{job}?since={version}"),
        )
        .await;
        assert_eq!(code, 304, "{body}");
        // A page of tasks, filtered.
        let (code, body) = http_get(
            daemon.http_addr,
            &format!("/api/jobs/{job}/tasks?offset=2400&limit=50&state=created"),
        )
        .await;
        assert_eq!(code, 200, "{body}");
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(page["rows"].as_array().unwrap().len(), 50);
        assert_eq!(page["rows"][0]["name"], "work#2400");
        assert_eq!(page["next_offset"], 2450);
        let (code, body) = http_get(
            daemon.http_addr,
            &format!("/api/jobs/{job}/tasks?state=FAILED"),
        )
        .await;
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("\"rows\":[]"), "{body}");

        // Cancelled: every task changed after that version.
        cancel(&client, &job).await;
        let (code, body) = http_get(
            daemon.http_addr,
            &format!("/api/jobs/{job}/tasks?since={version}&limit=10000"),
        )
        .await;
        assert_eq!(code, 200, "{body}");
        let changed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(changed["rows"].as_array().unwrap().len(), 2500);
        assert_eq!(changed["rows"][0]["state"], "CANCELED");
        daemon.shutdown().await.0.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_jobs_are_dropped_beyond_the_retained_count() {
    within(TEST_LIMIT, async {
        let daemon =
            Daemon::start(settings(&[("JOBMASTER__JOBS__RETAIN_ENDED__COUNT", "1")])).await;
        let client = daemon.client().await;
        let a = submit(&client, &wide("a", 10)).await;
        let b = submit(&client, &wide("b", 10)).await;
        cancel(&client, &a).await;
        assert_eq!(
            get_job(&client, &a).await.state,
            "CANCELED",
            "kept: one ended job"
        );
        cancel(&client, &b).await;
        // A second ended job: the older one goes.
        eventually("job a dropped", DEADLINE, || async {
            match try_get_job(&client, &a).await {
                Err(s) if s.code() == Code::NotFound => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        assert_eq!(job_ids(&client).await, vec![b.clone()]);
        assert_eq!(get_job(&client, &b).await.state, "CANCELED");
        let (code, _) = http_get(daemon.http_addr, &format!("/api/jobs/{a}")).await;
        assert_eq!(code, 404);
        daemon.shutdown().await.0.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_jobs_are_dropped_after_the_retained_age() {
    within(TEST_LIMIT, async {
        let daemon =
            Daemon::start(settings(&[("JOBMASTER__JOBS__RETAIN_ENDED__AGE", "200ms")])).await;
        let client = daemon.client().await;
        let a = submit(&client, &wide("a", 10)).await;
        cancel(&client, &a).await;
        eventually("job a dropped", DEADLINE, || async {
            let ids = job_ids(&client).await;
            if ids.is_empty() {
                Ok(())
            } else {
                Err(format!("{ids:?}"))
            }
        })
        .await;
        daemon.shutdown().await.0.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_refuse_with_resource_exhausted_and_ended_jobs_make_room() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[
            ("JOBMASTER__JOBS__MAX_JOBS", "2"),
            ("JOBMASTER__JOBS__MAX_TOTAL_TASKS", "100"),
        ]))
        .await;
        let client = daemon.client().await;
        let a = submit(&client, &wide("a", 60)).await;
        let too_big = try_submit(&client, &wide("big", 41), "")
            .await
            .expect_err("60 + 41 tasks > 100");
        assert_eq!(too_big.code(), Code::ResourceExhausted);
        assert!(
            too_big.message().contains("jobs.max-total-tasks = 100"),
            "{}",
            too_big.message()
        );
        let b = submit(&client, &wide("b", 40)).await;
        let third = try_submit(&client, &wide("c", 1), "")
            .await
            .expect_err("a third job > 2");
        assert_eq!(third.code(), Code::ResourceExhausted);
        assert!(
            third.message().contains("jobs.max-jobs = 2"),
            "{}",
            third.message()
        );
        // An ended job makes room: it is dropped for the new one.
        cancel(&client, &a).await;
        let c = submit(&client, &wide("c", 50)).await;
        let mut ids = job_ids(&client).await;
        ids.sort();
        let mut want = vec![b, c];
        want.sort();
        assert_eq!(ids, want);
        daemon.shutdown().await.0.unwrap();
    })
    .await;
}
