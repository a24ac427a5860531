//! `taskexecutor --label key=value`: malformed labels are refused before anything starts.

use std::process::Command;

fn taskexecutor(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_taskexecutor"))
        .args(args)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--jobmaster",
            "http://127.0.0.1:1",
        ])
        .output()
        .expect("taskexecutor runs")
}

#[test]
fn a_malformed_label_exits_with_2_and_says_how_to_write_one() {
    for (label, needle) in [
        ("zone", "must be key=value"),
        ("zone=", "empty value"),
        ("=a", "empty key"),
        ("zone=a b", "ASCII letters"),
    ] {
        let out = taskexecutor(&["--label", label]);
        assert_eq!(out.status.code(), Some(2), "--label {label:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "--label {label:?}: {stderr}");
    }
    let out = taskexecutor(&["--label", "zone=a", "--label", "zone=b"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("given twice"));
}

#[test]
fn a_malformed_label_in_the_configuration_is_refused_naming_the_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_taskexecutor"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--jobmaster",
            "http://127.0.0.1:1",
        ])
        .env("JOBMASTER__EXECUTOR__LABELS", "zone=a, rack")
        .output()
        .expect("taskexecutor runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("executor.labels") && stderr.contains("\"rack\""),
        "{stderr}"
    );
}
