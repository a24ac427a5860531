//! The read model against a real core: what the coordinator publishes, and that readers are
//! answered without the coordinator.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::Request as GrpcRequest;

use super::*;
use crate::api::v1::job_master_service_server::JobMasterService;
use crate::api::v1::{GetJobRequest, ListJobsRequest};
use crate::core::{CoreConfig, Event, JobSpec};
use crate::server::Shared;
use crate::server::coordinator::Request;
use crate::server::operator::Operator;

fn spec(p: u32) -> JobSpec {
    JobSpec::from_toml(&format!(
        "name = \"wide\"\n[[vertices]]\nid = \"src\"\nparallelism = {p}\ncommand = [\"x\"]\n\
         [[vertices]]\nid = \"sink\"\nparallelism = {p}\ncommand = [\"x\"]\n\
         [[edges]]\nfrom = \"src\"\nto = \"sink\"\npattern = \"pointwise\"\nexchange = \"pipelined\"\n"
    ))
    .expect("valid spec")
}

/// A core holding one job of `2 p` tasks (none placed), and its published view.
fn published(p: u32) -> (JobMaster, Views, Arc<ReadModel>, JobId) {
    let mut core = JobMaster::new(CoreConfig::default());
    let job = JobId(7);
    core.handle(Event::SubmitJob { job, spec: spec(p) }, 0)
        .expect("submitted");
    let model = Arc::new(ReadModel::default());
    let mut views = Views::new(model.clone(), 1_000_000);
    views.add(&core, job, 0);
    views.publish(&core, &crate::server::metrics::Metrics::default(), 5);
    (core, views, model, job)
}

/// Shared state whose coordinator inbox is never served (and holds one request at most).
fn unserved(model: Arc<ReadModel>) -> (Arc<Shared>, mpsc::Receiver<Request>) {
    crate::server::unserved(1, model)
}

#[tokio::test]
async fn list_jobs_and_get_job_are_answered_while_the_coordinator_serves_nobody() {
    let (_core, _views, model, job) = published(3000);
    let (shared, _inbox) = unserved(model);
    let operator = Operator::new(shared);
    let deadline = Duration::from_secs(10);
    let list = tokio::time::timeout(
        deadline,
        operator.list_jobs(GrpcRequest::new(ListJobsRequest {})),
    )
    .await
    .expect("ListJobs does not wait for the coordinator")
    .expect("ListJobs")
    .into_inner();
    assert_eq!(list.jobs.len(), 1);
    assert_eq!(list.jobs[0].tasks, 6000);
    assert_eq!(list.jobs[0].start_time_ms, 1_000_000);
    let page = tokio::time::timeout(
        deadline,
        operator.get_job(GrpcRequest::new(GetJobRequest {
            job_id: job.to_string(),
            task_offset: 2500,
            task_limit: 10,
            ..GetJobRequest::default()
        })),
    )
    .await
    .expect("GetJob does not wait for the coordinator")
    .expect("GetJob")
    .into_inner();
    assert_eq!(page.total_tasks, 6000);
    assert_eq!(page.tasks.len(), 10);
    assert_eq!(page.tasks[0].name, "src#2500");
    assert!(page.has_more_tasks);
    assert_eq!(page.next_task_offset, 2510);
    assert_eq!(page.vertices.len(), 2);
    assert_eq!(page.vertices[1].states[0].state, "CREATED");
    assert_eq!(page.vertices[1].states[0].count, 3000);
    // 3,000 pointwise regions: the first page of their summaries.
    assert_eq!(page.total_regions, 3000);
    assert_eq!(page.regions.len(), render::DEFAULT_PAGE);
    assert_eq!(page.regions[0].tasks, 2);
}

#[test]
fn task_changes_move_the_counts_and_only_changed_rows_are_newer_than_a_version() {
    let (core, mut views, model, job) = published(3);
    let v1 = model.job(job).unwrap().version;
    let sink1 = crate::core::TaskId(4);
    let attempt = AttemptId {
        job,
        task: sink1,
        attempt: 0,
    };
    views.task_state(attempt, AttemptState::Scheduled, Some(&"e1".into()), 10);
    views.restart_scheduled(job, &[sink1]);
    views.publish(&core, &crate::server::metrics::Metrics::default(), 10);
    let s = model.job(job).unwrap();
    assert!(s.version > v1);
    let (changed, next) = s.page(
        0,
        100,
        &TaskFilter {
            since: Some(v1),
            ..TaskFilter::default()
        },
    );
    assert_eq!(next, None);
    assert_eq!(changed.len(), 1, "only the changed task");
    let (i, row) = changed[0];
    assert_eq!(s.shape.task_name(i), "sink#1");
    assert_eq!(row.state, AttemptState::Scheduled);
    assert_eq!(row.executor.as_deref(), Some("e1"));
    assert_eq!(row.since_ms, 1_000_010, "wall-clock time of the change");
    assert!(row.restarting);
    let region = s.shape.task_region.get(i).copied().unwrap() as usize;
    let r = s.regions.get(region).unwrap();
    assert_eq!(r.restarting, 1);
    assert_eq!(r.counts[state_index(AttemptState::Scheduled)], 1);
    assert_eq!(r.counts[state_index(AttemptState::Created)], 1);
    assert_eq!(s.vertices[1][state_index(AttemptState::Scheduled)], 1);
    assert_eq!(s.vertices[1][state_index(AttemptState::Created)], 2);
    // Running again: no longer restarting.
    views.task_state(attempt, AttemptState::Running, Some(&"e1".into()), 20);
    views.publish(&core, &crate::server::metrics::Metrics::default(), 20);
    let s = model.job(job).unwrap();
    assert!(!s.tasks.get(i).unwrap().restarting);
    assert_eq!(s.regions.get(region).unwrap().restarting, 0);
}

#[test]
fn a_dropped_job_leaves_the_read_model() {
    let (_core, mut views, model, job) = published(2);
    assert!(model.job(job).is_some());
    views.remove(job);
    assert!(model.job(job).is_none());
    assert!(model.jobs().is_empty());
}
