//! The operators' view on a running daemon: `/metrics` (checked by `promtool`) and the
//! dashboard (loaded in headless Chromium).

mod daemon_support;

use std::process::Stdio;
use std::time::Duration;

use daemon_support::*;
use tokio::io::AsyncWriteExt;

const TWO_CITIES: &str = r#"
name = "two-cities"
restart = { strategy = "fixed-delay", attempts = 5, delay = "0s" }
[[vertices]]
id = "beijing"
parallelism = 2
command = ["x"]
[[vertices]]
id = "beijing-orders"
parallelism = 2
command = ["x"]
[[vertices]]
id = "shanghai"
parallelism = 2
command = ["x"]
[[edges]]
from = "beijing"
to = "beijing-orders"
pattern = "pointwise"
exchange = "pipelined"
"#;

fn require(tool: &str) {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{tool} is not installed: `apt-get install {}` (.ci/run does)",
        if tool == "promtool" {
            "prometheus"
        } else {
            tool
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_page_passes_promtool_and_counts_a_failover() {
    require("promtool");
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let a = FakeExecutor::start(&daemon, "tm-a", 4).await;
        let b = FakeExecutor::start(&daemon, "tm-b", 4).await;
        let client = daemon.client().await;
        let job = submit(&client, TWO_CITIES).await;
        wait_all_running(&client, &job).await;

        // Fail one Beijing task: its region restarts (fine-grained), Shanghai does not.
        let view = get_job(&client, &job).await;
        let failed = task(&view, "beijing-orders#1");
        let on = if failed.executor == a.id { &a } else { &b };
        on.fail(
            &attempt_ref(&job, "beijing-orders#1", 0),
            "recoverable",
            "boom",
        )
        .await
        .expect("report accepted");
        eventually("the restarted region runs again", DEADLINE, || async {
            let v = get_job(&client, &job).await;
            (task(&v, "beijing-orders#1").attempt == 1
                && v.tasks.iter().all(|t| t.state == "RUNNING"))
            .then_some(())
            .ok_or_else(|| describe(&v))
        })
        .await;

        let page = eventually("recovery is measured", DEADLINE, || async {
            let (code, body) = http_get(daemon.http_addr, "/metrics").await;
            assert_eq!(code, 200);
            let want =
                format!("jobmaster_recovery_seconds_count{{job=\"{job}\",name=\"two-cities\"}} 1");
            if body.contains(&want) {
                Ok(body)
            } else {
                Err(body)
            }
        })
        .await;
        let labels = format!("job=\"{job}\",name=\"two-cities\"");
        for line in [
            format!("jobmaster_failovers_total{{{labels}}} 1"),
            format!("jobmaster_restarts_total{{{labels}}} 1"),
            format!("jobmaster_full_restarts_total{{{labels}}} 0"),
            format!("jobmaster_region_restarts_total{{{labels}}} 1"),
            format!("jobmaster_tasks_restarted_total{{{labels}}} 2"),
            format!("jobmaster_tasks_restarted_count{{{labels}}} 1"),
            format!("jobmaster_failure_detection_seconds_count{{{labels}}} 1"),
            format!("jobmaster_tasks{{{labels},state=\"RUNNING\"}} 6"),
            format!("jobmaster_job_state{{{labels},state=\"RUNNING\"}} 1"),
            "jobmaster_executor_registered{executor=\"tm-a\"} 1".to_owned(),
            "jobmaster_executor_slots{executor=\"tm-b\"} 4".to_owned(),
        ] {
            assert!(page.contains(&line), "missing {line:?} in\n{page}");
        }

        let mut promtool = tokio::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool runs");
        let mut stdin = promtool.stdin.take().unwrap();
        stdin.write_all(page.as_bytes()).await.unwrap();
        drop(stdin);
        let out = promtool.wait_with_output().await.unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        daemon.shutdown().await.0.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_regions_and_task_states_in_chromium() {
    require("chromium");
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let _a = FakeExecutor::start(&daemon, "tm-a", 8).await;
        let client = daemon.client().await;
        // Checkpointed (the fake executor acknowledges at once): the checkpoint panel shows.
        let spec = format!("checkpoint = {{ interval = \"100ms\" }}\n{TWO_CITIES}");
        let job = submit(&client, &spec).await;
        wait_all_running(&client, &job).await;
        let checkpoints = format!("/api/jobs/{job}/checkpoints");
        let completed = eventually("a completed checkpoint", DEADLINE, || async {
            let (code, body) = http_get(daemon.http_addr, &checkpoints).await;
            let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
            let done = v["checkpoints"]
                .as_array()
                .is_some_and(|l| l.iter().any(|c| c["state"] == "COMPLETED"));
            (code == 200 && v["enabled"] == true && done)
                .then_some(v)
                .ok_or(body)
        })
        .await;
        assert_eq!(completed["interval_ms"], 100);

        let (code, api) = http_get(daemon.http_addr, &format!("/api/jobs/{job}")).await;
        assert_eq!(code, 200, "{api}");
        let v: serde_json::Value = serde_json::from_str(&api).unwrap();
        assert_eq!(v["regions"].as_array().unwrap().len(), 4);
        let (code, _) = http_get(daemon.http_addr, "/api/jobs/0000000000000bad").await;
        assert_eq!(code, 404);

        let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
        let url = format!("http://{}/", daemon.http_addr);
        let profile = tempdir("chromium-profile");
        let chromium = |extra: Vec<String>| {
            let mut args = vec![
                "--headless".to_owned(),
                "--no-sandbox".to_owned(),
                "--disable-gpu".to_owned(),
                "--disable-dev-shm-usage".to_owned(),
                format!("--user-data-dir={}", profile.display()),
                "--virtual-time-budget=4000".to_owned(),
                "--window-size=1400,900".to_owned(),
            ];
            args.extend(extra);
            args.push(url.clone());
            tokio::process::Command::new("chromium")
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .output()
        };
        let out =
            tokio::time::timeout(Duration::from_secs(40), chromium(vec!["--dump-dom".into()]))
                .await
                .expect("chromium finishes")
                .expect("chromium runs");
        let dom = String::from_utf8_lossy(&out.stdout);
        assert!(dom.contains("two-cities"), "job name shown:\n{dom}");
        for region in 0..4 {
            assert!(
                dom.contains(&format!("data-region=\"{region}\"")),
                "region {region} shown:\n{dom}"
            );
        }
        for t in ["beijing#0", "beijing-orders#1", "shanghai#1"] {
            assert!(
                dom.contains(&format!("{t} · RUNNING")),
                "{t} shown RUNNING:\n{dom}"
            );
        }
        assert!(dom.contains("tm-a"), "executor listed");
        assert!(
            dom.contains("<h2>Checkpoints</h2>") && dom.contains("latest completed: "),
            "checkpoint panel shown:\n{dom}"
        );
        assert!(
            dom.contains("ck-COMPLETED"),
            "a completed checkpoint listed:\n{dom}"
        );
        let _ = tokio::time::timeout(
            Duration::from_secs(40),
            chromium(vec![format!("--screenshot={}", shot.display())]),
        )
        .await;
        assert!(shot.is_file(), "screenshot kept at {}", shot.display());
        let _ = std::fs::remove_dir_all(&profile);
        daemon.shutdown().await.0.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_opens_a_job_from_its_url_and_summarises_a_large_one_in_chromium() {
    require("chromium");
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let client = daemon.client().await;
        // 2,500 tasks and no executor: they wait in CREATED.
        let large = submit(
            &client,
            "name = \"wide\"\n[[vertices]]\nid = \"work\"\nparallelism = 2500\ncommand = [\"x\"]\n",
        )
        .await;
        let small = submit(&client, TWO_CITIES).await;
        let profile = tempdir("chromium-profile-large");
        // Without a URL the newest job (the small one) is shown: the URL selects the large one.
        let url = format!("http://{}/#job={large}", daemon.http_addr);
        let out = tokio::time::timeout(
            Duration::from_secs(40),
            tokio::process::Command::new("chromium")
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    &format!("--user-data-dir={}", profile.display()),
                    "--virtual-time-budget=4000",
                    "--dump-dom",
                    &url,
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("chromium finishes")
        .expect("chromium runs");
        let dom = String::from_utf8_lossy(&out.stdout);
        assert!(
            dom.contains(&format!("href=\"#job={small}\"")),
            "both jobs link to their URL:\n{dom}"
        );
        assert!(
            dom.contains("summarised per vertex and region"),
            "the aggregated view:\n{dom}"
        );
        assert!(
            dom.contains("CREATED 2500"),
            "the vertex's tasks by state:\n{dom}"
        );
        assert!(
            dom.contains("data-region=\"999\""),
            "the first 1,000 regions summarised:\n{dom}"
        );
        assert!(!dom.contains("work#0 ·"), "no box per task:\n{dom}");
        assert!(
            dom.contains("task: part of a scheduled restart"),
            "the legend:\n{dom}"
        );
        let _ = std::fs::remove_dir_all(&profile);
        daemon.shutdown().await.0.unwrap();
    })
    .await;
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("jobmaster-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the real `jmctl` against `endpoint`.
async fn jmctl(endpoint: &str, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_jmctl"))
        .arg("--endpoint")
        .arg(endpoint)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .output()
        .await
        .expect("jmctl runs")
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "jmctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jmctl_drives_a_job_and_reports_errors_with_exit_codes() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let a = FakeExecutor::start(&daemon, "tm-a", 8).await;
        let url = daemon.url();
        let dir = tempdir("jmctl");
        let spec = dir.join("two-cities.toml");
        std::fs::write(&spec, TWO_CITIES).unwrap();

        let job = json_of(
            &jmctl(
                &url,
                &["--output", "json", "submit", spec.to_str().unwrap()],
            )
            .await,
        )["job_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let client = daemon.client().await;
        wait_all_running(&client, &job).await;

        let status = json_of(&jmctl(&url, &["--output", "json", "status", &job]).await);
        assert_eq!(status["job_id"], job.as_str());
        assert_eq!(status["name"], "two-cities");
        assert_eq!(status["state"], "RUNNING");
        let tasks = status["tasks"].as_array().unwrap();
        assert_eq!(tasks.len(), 6);
        for t in tasks {
            for field in ["name", "state", "attempt", "executor", "region"] {
                assert!(t.get(field).is_some(), "task field {field}: {t}");
            }
            assert_eq!(t["executor"], "tm-a");
        }

        let executors = json_of(&jmctl(&url, &["--output", "json", "executors"]).await);
        let e = &executors.as_array().unwrap()[0];
        assert_eq!(e["id"], "tm-a");
        assert_eq!(e["slots"], 8);
        assert_eq!(e["free_slots"], 2);
        for field in [
            "address",
            "heartbeat_age_ms",
            "partitions",
            "free_disk_bytes",
        ] {
            assert!(e.get(field).is_some(), "executor field {field}: {e}");
        }

        let explain = json_of(
            &jmctl(
                &url,
                &[
                    "--output",
                    "json",
                    "explain",
                    &job,
                    "--task",
                    "beijing-orders#0",
                ],
            )
            .await,
        );
        assert_eq!(
            explain["restart"],
            serde_json::json!(["beijing#0", "beijing-orders#0"])
        );

        let table = jmctl(&url, &["status", &job]).await;
        let text = String::from_utf8_lossy(&table.stdout);
        assert!(
            text.contains("REGION") && text.contains("shanghai#1"),
            "{text}"
        );

        let out = jmctl(&url, &["inject", &job, "--task", "shanghai#1"]).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        a.confirm_cancels().await;
        let history = eventually("the failure is in the history", DEADLINE, || async {
            let h = json_of(&jmctl(&url, &["--output", "json", "exceptions", &job]).await);
            if h["entries"].as_array().is_some_and(|e| e.len() == 1) {
                Ok(h)
            } else {
                Err(h.to_string())
            }
        })
        .await;
        assert_eq!(history["entries"][0]["root"]["task"], "shanghai#1");
        // The tables have headers, and a decision says it once how many tasks restart.
        let text =
            String::from_utf8_lossy(&jmctl(&url, &["exceptions", &job]).await.stdout).into_owned();
        assert!(
            text.contains("ROOT FAILURE") && text.contains("=> restart "),
            "{text}"
        );
        assert!(!text.contains("tasks) ("), "{text}");
        let text = String::from_utf8_lossy(
            &jmctl(&url, &["explain", &job, "--task", "beijing-orders#0"])
                .await
                .stdout,
        )
        .into_owned();
        assert!(
            text.contains("SCOPE") && text.contains("WHY") && text.contains("TASKS"),
            "{text}"
        );

        let list = json_of(&jmctl(&url, &["--output", "json", "list"]).await);
        assert_eq!(list[0]["job_id"], job.as_str());

        // Errors: server-side (exit 1), input (exit 2), connection (exit 1); one line each.
        for (args, code, needle) in [
            (vec!["status", "00000000000000ff"], 1, "NotFound"),
            (vec!["status", "nope"], 1, "job_id"),
            (vec!["submit", "does-not-exist.toml"], 2, "cannot read"),
            (vec!["inject", &job, "--task", "nope#0"], 1, "NotFound"),
            (vec!["explain", &job], 2, ""),
        ] {
            let out = jmctl(&url, &args).await;
            assert_eq!(
                out.status.code(),
                Some(code),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(needle), "{args:?}: {err}");
        }
        let out = jmctl("http://127.0.0.1:1", &["list"]).await;
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr)
                .trim_end()
                .lines()
                .count(),
            1
        );

        let out = jmctl(&url, &["completions", "bash"]).await;
        assert!(String::from_utf8_lossy(&out.stdout).contains("jmctl"));
        let _ = std::fs::remove_dir_all(&dir);
        daemon.shutdown().await.0.unwrap();
    })
    .await;
}

// ----- failure domains and blast radius -----------------------------------------------------------

/// The restart set ExplainFailover answers for `target`, as sorted task names.
async fn explained(
    client: &jobmaster::api::v1::job_master_service_client::JobMasterServiceClient<
        tonic::transport::Channel,
    >,
    job: &str,
    target: jobmaster::api::v1::explain_failover_request::Target,
) -> Result<Vec<String>, tonic::Status> {
    let mut c = client.clone();
    let r = bounded(
        "ExplainFailover",
        c.explain_failover(jobmaster::api::v1::ExplainFailoverRequest {
            job_id: job.to_owned(),
            target: Some(target),
        }),
    )
    .await?
    .into_inner();
    let mut tasks = r.restart;
    tasks.sort();
    Ok(tasks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_reach_jmctl_executors_and_a_domain_loss_restarts_the_union_of_its_executors() {
    use jobmaster::api::v1::explain_failover_request::Target;
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let _a1 =
            FakeExecutor::start_labelled(&daemon, "tm-a1", 2, &[("zone", "a"), ("rack", "r1")])
                .await;
        let _a2 = FakeExecutor::start_labelled(&daemon, "tm-a2", 2, &[("zone", "a")]).await;
        let _b1 = FakeExecutor::start_labelled(&daemon, "tm-b1", 2, &[("zone", "b")]).await;
        let url = daemon.url();
        let client = daemon.client().await;
        let job = submit(&client, TWO_CITIES).await;
        wait_all_running(&client, &job).await;

        // Labels round-trip: registration -> registry -> ListExecutors -> jmctl.
        let list = json_of(&jmctl(&url, &["--output", "json", "executors"]).await);
        let labels: std::collections::BTreeMap<String, serde_json::Value> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["id"].as_str().unwrap().to_owned(), e["labels"].clone()))
            .collect();
        assert_eq!(
            labels["tm-a1"],
            serde_json::json!({"rack": "r1", "zone": "a"})
        );
        assert_eq!(labels["tm-b1"], serde_json::json!({"zone": "b"}));
        for e in list.as_array().unwrap() {
            assert_eq!(e["quarantined"], false, "{e}");
        }
        let table = jmctl(&url, &["executors"]).await;
        let table = String::from_utf8_lossy(&table.stdout);
        assert!(table.lines().next().unwrap().contains("LABELS"), "{table}");
        assert!(
            table.lines().next().unwrap().contains("QUARANTINE"),
            "{table}"
        );
        let a1 = table.lines().find(|l| l.starts_with("tm-a1")).unwrap();
        assert!(
            a1.contains("rack=r1,zone=a") && a1.trim_end().ends_with('-'),
            "{a1}"
        );

        // Losing zone a = losing tm-a1 and tm-a2 at once: the union of their restart sets (the
        // job is pipelined only, so nothing beyond it).
        let mut union: Vec<String> = Vec::new();
        for id in ["tm-a1", "tm-a2"] {
            union.extend(
                explained(&client, &job, Target::Executor(id.into()))
                    .await
                    .unwrap(),
            );
        }
        union.sort();
        union.dedup();
        let zone_a = explained(&client, &job, Target::Domain("zone=a".into()))
            .await
            .unwrap();
        assert!(!zone_a.is_empty());
        assert_eq!(zone_a, union);
        let zone_b = explained(&client, &job, Target::Domain("zone=b".into()))
            .await
            .unwrap();
        assert_eq!(
            zone_b,
            explained(&client, &job, Target::Executor("tm-b1".into()))
                .await
                .unwrap()
        );
        let via_jmctl = json_of(
            &jmctl(
                &url,
                &["--output", "json", "explain", &job, "--domain", "zone=a"],
            )
            .await,
        );
        let mut restart: Vec<String> = via_jmctl["restart"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect();
        restart.sort();
        assert_eq!(restart, zone_a);

        // A malformed domain is INVALID_ARGUMENT, a label nobody carries NOT_FOUND.
        let bad = explained(&client, &job, Target::Domain("zone".into()))
            .await
            .unwrap_err();
        assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
        assert!(bad.message().contains("key=value"), "{bad:?}");
        let unknown = explained(&client, &job, Target::Domain("zone=x".into()))
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
        assert!(unknown.message().contains("zone=x"), "{unknown:?}");
        let out = jmctl(&url, &["explain", &job, "--domain", "zone"]).await;
        assert_eq!(
            out.status.code(),
            Some(2),
            "a malformed domain is bad input"
        );
        let out = jmctl(&url, &["explain", &job, "--domain", "zone=x"]).await;
        assert_eq!(
            out.status.code(),
            Some(1),
            "an unknown domain is the server's answer"
        );

        // Blast radius: per executor what ExplainFailover says its loss restarts; the expected
        // fraction is their mean over the three executors, out of the 6 tasks.
        let br = json_of(
            &jmctl(
                &url,
                &["--output", "json", "explain", &job, "--blast-radius"],
            )
            .await,
        );
        assert_eq!(
            (br["tasks"].as_u64(), br["executors"].as_u64()),
            (Some(6), Some(3))
        );
        let mut sum = 0.0;
        for e in br["per_executor"].as_array().unwrap() {
            let id = e["executor"].as_str().unwrap();
            let set = explained(&client, &job, Target::Executor(id.into()))
                .await
                .unwrap();
            assert_eq!(e["restart_tasks"].as_u64(), Some(set.len() as u64), "{id}");
            assert_eq!(e["hosted_tasks"], 2, "{id}: every slot is taken");
            sum += set.len() as f64 / 6.0;
        }
        let fraction = br["expected_fraction"].as_f64().unwrap();
        assert!(
            (fraction - sum / 3.0).abs() < 1e-9,
            "{fraction} vs {}",
            sum / 3.0
        );
        let table = jmctl(&url, &["explain", &job, "--blast-radius"]).await;
        assert!(
            String::from_utf8_lossy(&table.stdout)
                .contains("restarted by one random executor loss"),
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_with_a_malformed_label_is_refused_with_invalid_argument() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let mut gateway = daemon.gateway().await;
        let refused = gateway
            .register_executor(jobmaster::api::v1::RegisterExecutorRequest {
                executor_id: "tm-x".into(),
                address: "127.0.0.1:1".into(),
                slots: 1,
                session_id: session_id(),
                free_disk_bytes: 1 << 30,
                labels: [("zone".to_owned(), String::new())].into_iter().collect(),
                attempts: Vec::new(),
                partitions: Vec::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().contains("empty value"), "{refused:?}");
        assert!(executor_ids(&daemon.client().await).await.is_empty());
    })
    .await;
}

/// `jmctl submit --wait SPEC` started in the background.
fn submit_and_wait(endpoint: &str, spec: &std::path::Path) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_jmctl"))
        .arg("--endpoint")
        .arg(endpoint)
        .args(["submit", "--wait"])
        .arg(spec)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("jmctl runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_exits_with_the_jobs_final_state() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let a = FakeExecutor::start(&daemon, "tm-a", 4).await;
        let client = daemon.client().await;
        let dir = tempdir("submit-wait");
        for (name, ends, code) in [("done", "finish", 0), ("broken", "fail", 3)] {
            let spec = dir.join(format!("{name}.toml"));
            std::fs::write(
                &spec,
                format!(
                    "name = \"{name}\"\nrestart = {{ strategy = \"none\" }}\n[[vertices]]\nid = \"v\"\nparallelism = 1\ncommand = [\"x\"]\n"
                ),
            )
            .unwrap();
            let child = submit_and_wait(&daemon.url(), &spec);
            let job = eventually("the job is submitted", Duration::from_secs(20), || {
                let client = client.clone();
                async move {
                    let mut c = client.clone();
                    let jobs = c
                        .list_jobs(jobmaster::api::v1::ListJobsRequest {})
                        .await
                        .map_err(|s| s.to_string())?
                        .into_inner()
                        .jobs;
                    jobs.into_iter()
                        .find(|j| j.name == name)
                        .map(|j| j.job_id)
                        .ok_or_else(|| "not yet".to_owned())
                }
            })
            .await;
            wait_all_running(&client, &job).await;
            let attempt = attempt_ref(&job, "v#0", 0);
            if ends == "finish" {
                a.finish(&attempt).await.expect("finished");
            } else {
                a.fail(&attempt, "recoverable", "boom").await.expect("failed");
            }
            let out = child.wait_with_output().await.expect("jmctl ends");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(code), "{name}: {stderr}");
            if code == 0 {
                assert!(String::from_utf8_lossy(&out.stdout).contains("FINISHED"));
            } else {
                assert!(stderr.contains("ended FAILED") && stderr.contains(&job), "{stderr}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}
