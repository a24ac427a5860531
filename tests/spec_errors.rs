//! Job spec parsing: TOML and JSON carry the same fields, and every rejection names what is
//! wrong.

use std::time::Duration;

use jobmaster::core::{
    Exchange, FailoverStrategy, JobSpec, Pattern, RestartStrategyConfig, SpecError, SpecFormat,
    SpecLimits,
};

const VALID: &str = r#"
name = "city-orders"
failover = "individual"

[restart]
strategy = "failure-rate"
max-failures-per-interval = 3
failure-rate-interval = "5min"

[[vertices]]
id = "source"
parallelism = 2
command = ["sh", "-c", "exec my-source"]

[[vertices]]
id = "orders"
parallelism = 3
command = ["my-orders"]

[[edges]]
from = "source"
to = "orders"
pattern = "all-to-all"
exchange = "persistent"
"#;

const VALID_JSON: &str = r#"{
  "name": "city-orders",
  "failover": "individual",
  "restart": {"strategy": "failure-rate", "max-failures-per-interval": 3, "failure-rate-interval": "5min"},
  "vertices": [
    {"id": "source", "parallelism": 2, "command": ["sh", "-c", "exec my-source"]},
    {"id": "orders", "parallelism": 3, "command": ["my-orders"]}
  ],
  "edges": [{"from": "source", "to": "orders", "pattern": "all-to-all", "exchange": "persistent"}]
}"#;

fn err(text: &str) -> String {
    JobSpec::parse(text, SpecFormat::detect(None, text))
        .expect_err("spec must be rejected")
        .to_string()
}

/// The valid TOML spec with `from` replaced by `to`.
fn edit(from: &str, to: &str) -> String {
    assert!(VALID.contains(from), "{from}");
    VALID.replacen(from, to, 1)
}

fn with_edges(extra: &str) -> String {
    format!("{VALID}{extra}")
}

#[test]
fn toml_and_json_specs_with_the_same_fields_are_equal() {
    let toml = JobSpec::from_toml(VALID).unwrap();
    let json = JobSpec::from_json(VALID_JSON).unwrap();
    assert_eq!(toml, json);
    assert_eq!(toml.failover, FailoverStrategy::Individual);
    assert_eq!(toml.vertices[1].parallelism, 3);
    assert_eq!(toml.edges[0].pattern, Pattern::AllToAll);
    assert_eq!(toml.edges[0].exchange, Exchange::Persistent);
    assert_eq!(
        toml.restart,
        RestartStrategyConfig::FailureRate {
            max_failures_per_interval: 3,
            interval: Duration::from_secs(300),
            delay: Duration::from_secs(1),
        }
    );
    assert_eq!(toml.task_count(), 5);
}

#[test]
fn format_is_detected_from_file_name_then_content() {
    assert_eq!(
        SpecFormat::detect(Some("job.json"), "name = 1"),
        SpecFormat::Json
    );
    assert_eq!(SpecFormat::detect(Some("job.TOML"), "{"), SpecFormat::Toml);
    assert_eq!(
        SpecFormat::detect(None, "  \n{\"name\": 1}"),
        SpecFormat::Json
    );
    assert_eq!(
        SpecFormat::detect(Some("job.spec"), "name = 1"),
        SpecFormat::Toml
    );
}

#[test]
fn defaults_are_region_failover_and_exponential_delay() {
    let spec = JobSpec::from_toml(
        &VALID
            .replace("failover = \"individual\"\n", "")
            .replace(
                "[restart]\nstrategy = \"failure-rate\"\nmax-failures-per-interval = 3\nfailure-rate-interval = \"5min\"\n",
                "",
            ),
    )
    .unwrap();
    assert_eq!(spec.failover, FailoverStrategy::Region);
    assert_eq!(spec.restart, RestartStrategyConfig::default_exponential());
    match spec.restart {
        RestartStrategyConfig::ExponentialDelay {
            initial_backoff,
            max_backoff,
            multiplier,
            reset_backoff_threshold,
            jitter_factor,
            attempts_before_reset_backoff,
        } => {
            assert_eq!(initial_backoff, Duration::from_secs(1));
            assert_eq!(max_backoff, Duration::from_secs(60));
            assert_eq!(multiplier, 1.5);
            assert_eq!(reset_backoff_threshold, Duration::from_secs(3600));
            assert_eq!(jitter_factor, 0.1);
            assert_eq!(attempts_before_reset_backoff, None);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn restart_strategies_take_their_keys_and_defaults() {
    let restart = |table: &str| {
        JobSpec::from_toml(&edit(
            "strategy = \"failure-rate\"\nmax-failures-per-interval = 3\nfailure-rate-interval = \"5min\"\n",
            table,
        ))
        .map(|s| s.restart)
    };
    assert_eq!(
        restart("strategy = \"none\"\n"),
        Ok(RestartStrategyConfig::None)
    );
    assert_eq!(
        restart("strategy = \"fixed-delay\"\n"),
        Ok(RestartStrategyConfig::FixedDelay {
            attempts: 1,
            delay: Duration::from_secs(1)
        })
    );
    assert_eq!(
        restart("strategy = \"fixed-delay\"\nattempts = 3\ndelay = \"250ms\"\n"),
        Ok(RestartStrategyConfig::FixedDelay {
            attempts: 3,
            delay: Duration::from_millis(250)
        })
    );
    assert_eq!(
        restart("strategy = \"failure-rate\"\n"),
        Ok(RestartStrategyConfig::FailureRate {
            max_failures_per_interval: 1,
            interval: Duration::from_secs(60),
            delay: Duration::from_secs(1),
        })
    );
    let e = restart("strategy = \"exponential-delay\"\nattempts = 3\n").unwrap_err();
    assert!(e.to_string().contains("restart.attempts"), "{e}");
    assert!(e.to_string().contains("exponential-delay"), "{e}");
    let e = restart("strategy = \"fixed-delay\"\ndelay = \"soon\"\n").unwrap_err();
    assert!(e.to_string().contains("restart.delay"), "{e}");
    let e = restart("strategy = \"exponential-delay\"\njitter-factor = 2.0\n").unwrap_err();
    assert!(e.to_string().contains("restart.jitter-factor"), "{e}");
    let e = restart(
        "strategy = \"exponential-delay\"\ninitial-backoff = \"1min\"\nmax-backoff = \"1s\"\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("restart.max-backoff"), "{e}");
    let e = restart("strategy = \"sometimes\"\n").unwrap_err();
    assert!(e.to_string().contains("restart.strategy"), "{e}");
    assert!(e.to_string().contains("\"sometimes\""), "{e}");
}

#[test]
fn unknown_vertex_in_an_edge_is_named() {
    let e = err(&edit("to = \"orders\"", "to = \"ordres\""));
    assert!(e.contains("edges[0].to") && e.contains("\"ordres\""), "{e}");
    let e = err(&edit("from = \"source\"", "from = \"sauce\""));
    assert!(
        e.contains("edges[0].from") && e.contains("\"sauce\""),
        "{e}"
    );
}

#[test]
fn duplicate_vertex_id_is_named() {
    let e = err(&edit("id = \"orders\"", "id = \"source\""));
    assert!(
        e.contains("vertices[1].id") && e.contains("\"source\""),
        "{e}"
    );
    assert!(e.contains("unique"), "{e}");
}

#[test]
fn vertex_ids_that_cannot_be_folder_names_are_refused_at_submit() {
    // Accepted before, then every deploy failed on the executor ("must be plain names").
    let e = err(&edit(
        "id = \"orders\"",
        "id = \"<img/src=x/onerror=alert(1)>\"",
    ));
    assert!(e.contains("vertices[1].id"), "{e}");
    assert!(
        e.contains("'/' at position 5") || e.contains("\\u{2f} at position 5"),
        "{e}"
    );
    for dots in [".", ".."] {
        let e = err(&edit("id = \"orders\"", &format!("id = \"{dots}\"")));
        assert!(e.contains("folder name"), "{e}");
    }
}

#[test]
fn vertex_ids_with_invisible_or_bidi_characters_are_refused_naming_the_character() {
    // An id that reads as "orders" in a log or a metric label but is another id.
    for (bad, shown) in [
        ("or\u{202E}ders", "\\u{202e} at position 3"),
        ("orders\u{200B}", "\\u{200b} at position 7"),
        ("\u{2066}orders", "\\u{2066} at position 1"),
        ("ord\u{00AD}ers", "\\u{ad} at position 4"),
        ("orders\u{FEFF}", "\\u{feff} at position 7"),
    ] {
        let e = err(&edit("id = \"orders\"", &format!("id = \"{bad}\"")));
        assert!(e.contains("vertices[1].id"), "{e}");
        assert!(e.contains(shown), "{e}");
        assert!(
            !e.chars()
                .any(|c| ['\u{202E}', '\u{200B}', '\u{2066}', '\u{AD}', '\u{FEFF}'].contains(&c)),
            "the error shows the character escaped: {e:?}"
        );
    }
}

#[test]
fn parallelism_must_be_between_one_and_the_maximum() {
    for bad in ["0", "-4", "100001", "9223372036854775807"] {
        let e = err(&edit("parallelism = 3", &format!("parallelism = {bad}")));
        assert!(e.contains("vertices[1].parallelism"), "{e}");
        assert!(e.contains("\"orders\"") && e.contains("100000"), "{e}");
    }
    assert!(JobSpec::from_toml(&edit("parallelism = 3", "parallelism = 100000")).is_ok());
    let limited = JobSpec::parse_with_limits(
        &edit("parallelism = 3", "parallelism = 9"),
        SpecFormat::Toml,
        SpecLimits { max_parallelism: 8 },
    );
    assert!(matches!(
        limited,
        Err(SpecError::Parallelism { max: 8, .. })
    ));
}

#[test]
fn cycle_is_rejected_naming_its_vertices() {
    let text = with_edges(
        r#"
[[vertices]]
id = "enrich"
parallelism = 1
command = ["x"]

[[edges]]
from = "orders"
to = "enrich"
pattern = "pointwise"
exchange = "pipelined"

[[edges]]
from = "enrich"
to = "source"
pattern = "pointwise"
exchange = "blocking"
"#,
    );
    let e = err(&text);
    assert!(e.contains("cycle"), "{e}");
    assert!(
        e.contains("source -> orders -> enrich -> source"),
        "the cycle is spelled out in arc order: {e}"
    );
}

#[test]
fn self_loop_is_rejected() {
    let e = err(&edit("to = \"orders\"", "to = \"source\""));
    assert!(e.contains("edges[0]") && e.contains("to itself"), "{e}");
}

#[test]
fn duplicate_edge_is_rejected_even_with_another_exchange() {
    let e = err(&with_edges(
        "\n[[edges]]\nfrom = \"source\"\nto = \"orders\"\npattern = \"pointwise\"\nexchange = \"pipelined\"\n",
    ));
    assert!(e.contains("edges[1]") && e.contains("second edge"), "{e}");
}

#[test]
fn unknown_pattern_exchange_and_failover_values_are_named() {
    let e = err(&edit("\"all-to-all\"", "\"broadcast\""));
    assert!(
        e.contains("edges[0].pattern") && e.contains("\"broadcast\""),
        "{e}"
    );
    assert!(e.contains("pointwise, all-to-all"), "{e}");
    let e = err(&edit("\"persistent\"", "\"bounded\""));
    assert!(
        e.contains("edges[0].exchange") && e.contains("pipelined, blocking, persistent"),
        "{e}"
    );
    let e = err(&edit("\"individual\"", "\"partial\""));
    assert!(
        e.contains("failover") && e.contains("full, region, individual"),
        "{e}"
    );
}

#[test]
fn empty_job_is_rejected() {
    let e = err("name = \"empty\"\n");
    assert!(e.contains("no vertices"), "{e}");
    let e = err("{\"name\": \"empty\", \"vertices\": [], \"edges\": []}");
    assert!(e.contains("no vertices"), "{e}");
}

#[test]
fn missing_fields_are_named() {
    let e = err(&VALID.replace("name = \"city-orders\"\n", ""));
    assert_eq!(e, "name is missing");
    let e = err(&edit("exchange = \"persistent\"\n", ""));
    assert!(
        e.contains("edges[0].exchange") && e.contains("missing"),
        "{e}"
    );
    let e = err(&edit("command = [\"my-orders\"]\n", ""));
    assert!(e.contains("vertices[1].command"), "{e}");
    let e = err(&edit("command = [\"my-orders\"]", "command = []"));
    assert!(e.contains("vertices[1].command"), "{e}");
}

#[test]
fn vertex_ids_must_be_usable_in_task_names() {
    for bad in ["\"a#b\"", "\"\"", "\"two words\""] {
        let e = err(&edit("id = \"orders\"", &format!("id = {bad}")));
        assert!(e.contains("vertices[1].id"), "{bad}: {e}");
    }
}

#[test]
fn unknown_keys_and_wrong_types_are_syntax_errors_with_a_location() {
    let e = err(&edit("parallelism = 3", "parallelism = 3\nparalelism = 4"));
    assert!(e.contains("paralelism"), "{e}");
    let e = err(&edit("parallelism = 3", "parallelism = \"three\""));
    assert!(e.starts_with("invalid TOML job spec"), "{e}");
    let e = err(
        "{\"name\": \"x\", \"vertices\": [{\"id\": \"a\", \"parallelism\": 1.5, \"command\": [\"x\"]}]}",
    );
    assert!(
        e.starts_with("invalid JSON job spec") && e.contains("line 1"),
        "{e}"
    );
    assert!(!err("name = [").contains('\n'), "errors fit on one line");
}

#[test]
fn an_exponential_delay_that_restarts_without_end_and_without_pause_is_refused() {
    let restart = |body: &str| {
        let text = format!(
            "name = \"j\"\n[[vertices]]\nid = \"a\"\nparallelism = 1\ncommand = [\"true\"]\n[restart]\n{body}"
        );
        JobSpec::from_toml(&text).map(|s| s.restart)
    };
    let e = restart(
        "strategy = \"exponential-delay\"\ninitial-backoff = \"0ms\"\nmax-backoff = \"0ms\"\n",
    )
    .expect_err("a restart storm is refused");
    assert!(e.to_string().contains("restart.initial-backoff"), "{e}");
    assert!(e.to_string().contains("storm"), "{e}");
    // Bounded, it is a choice (e.g. a test that wants immediate retries).
    assert!(
        restart(
            "strategy = \"exponential-delay\"\ninitial-backoff = \"0ms\"\nmax-backoff = \"0ms\"\nattempts-before-reset-backoff = 3\n"
        )
        .is_ok()
    );
    assert!(restart("strategy = \"exponential-delay\"\ninitial-backoff = \"1ms\"\n").is_ok());
}

#[test]
fn empty_array_and_truncated_specs_get_messages_that_say_what_is_wrong() {
    let e = err("");
    assert!(e.contains("the spec is empty"), "{e}");
    let e = err("  \n");
    assert!(e.contains("the spec is empty"), "{e}");
    // An array is JSON, not a TOML table header.
    assert_eq!(SpecFormat::detect(None, "[1,2]"), SpecFormat::Json);
    assert_eq!(
        SpecFormat::detect(None, " [ {\"a\": 1} ]"),
        SpecFormat::Json
    );
    assert_eq!(SpecFormat::detect(None, "[restart]\n"), SpecFormat::Toml);
    assert_eq!(SpecFormat::detect(None, "[[vertices]]\n"), SpecFormat::Toml);
    let e = err("[1,2]");
    assert!(e.contains("JSON job spec is an object"), "{e}");
    // A syntax error has no field path ("?:" before).
    let e = err("{\"name\": \"a\",");
    assert!(!e.contains("?:"), "{e}");
}

#[test]
fn an_unknown_key_with_a_newline_is_named_escaped_on_one_line() {
    for text in [
        "name = \"x\"\n[restart]\n\"a\\nb\" = 1\n[[vertices]]\nid = \"v\"\nparallelism = 1\ncommand = [\"true\"]\n",
        "{\"name\": \"x\", \"restart\": {\"a\\nb\": 1}, \"vertices\": [{\"id\": \"v\", \"parallelism\": 1, \"command\": [\"true\"]}]}",
    ] {
        let message = err(text);
        assert!(!message.contains('\n'), "{message:?}");
        assert!(message.contains("a\\nb"), "the key, escaped: {message:?}");
    }
}
