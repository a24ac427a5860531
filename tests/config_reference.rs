//! The README's configuration reference cannot drift from `config/default.toml`: every key
//! has a row with its default and its environment override, and every row names a real key.

use std::collections::BTreeMap;

const DEFAULTS: &str = include_str!("../config/default.toml");
const README: &str = include_str!("../README.md");
const HEADING: &str = "## Configuration reference";

/// Every leaf key of the defaults, as `section.key` (`jobs.retain-ended.count`), with its
/// default as the README writes it.
fn keys() -> BTreeMap<String, String> {
    fn walk(table: &toml::Table, prefix: &str, out: &mut BTreeMap<String, String>) {
        for (key, value) in table {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                toml::Value::Table(t) => walk(t, &path, out),
                toml::Value::String(s) if s.is_empty() => {
                    out.insert(path, "\"\"".to_owned());
                }
                toml::Value::String(s) => {
                    out.insert(path, s.clone());
                }
                other => {
                    out.insert(path, other.to_string());
                }
            }
        }
    }
    let table: toml::Table = DEFAULTS.parse().expect("config/default.toml parses");
    let mut out = BTreeMap::new();
    walk(&table, "", &mut out);
    out
}

/// The README's reference section, up to the next `## ` heading.
fn reference() -> &'static str {
    let start = README
        .find(HEADING)
        .unwrap_or_else(|| panic!("README.md has no {HEADING:?} section"));
    let rest = &README[start + HEADING.len()..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

/// `scheduler.quarantine.max-task-failures` -> `JOBMASTER__SCHEDULER__QUARANTINE__MAX_TASK_FAILURES`.
fn env_form(path: &str) -> String {
    format!(
        "JOBMASTER__{}",
        path.to_ascii_uppercase()
            .replace('.', "__")
            .replace('-', "_")
    )
}

#[test]
fn every_default_key_has_a_reference_row_with_its_default_and_env_override() {
    let section = reference();
    let keys = keys();
    assert!(keys.len() > 40, "read only {} keys", keys.len());
    for (path, default) in &keys {
        let row = section
            .lines()
            .find(|l| l.starts_with(&format!("| `{path}` |")))
            .unwrap_or_else(|| panic!("no row `| `{path}` | ...` in the README's reference"));
        assert!(
            row.contains(&format!("`{default}`")),
            "the row of {path} does not show its default `{default}`: {row}"
        );
        let env = env_form(path);
        assert!(
            row.contains(&format!("`{env}`")),
            "the row of {path} does not name {env}: {row}"
        );
    }
}

#[test]
fn every_reference_row_names_a_key_of_the_defaults() {
    let keys = keys();
    let rows: Vec<&str> = reference()
        .lines()
        .filter(|l| l.starts_with("| `"))
        .collect();
    assert!(!rows.is_empty());
    for row in rows {
        let key = row
            .trim_start_matches("| `")
            .split('`')
            .next()
            .unwrap_or_default();
        assert!(
            keys.contains_key(key),
            "the README's reference lists {key:?}, which config/default.toml lacks"
        );
    }
}

#[test]
fn every_documented_env_override_reaches_its_key() {
    // The settings refuse unknown keys, so an override whose name maps to no key fails to
    // load; setting each key to its own default must load.
    for (path, default) in keys() {
        let value = if default == "\"\"" {
            String::new()
        } else {
            default
        };
        let env = env_form(&path);
        if let Err(e) = jobmaster::settings::Settings::load_from(None, [(env.clone(), value)]) {
            panic!("{env} does not override {path}: {e}");
        }
    }
    assert_eq!(
        env_form("jobs.retain-ended.count"),
        "JOBMASTER__JOBS__RETAIN_ENDED__COUNT"
    );
}
