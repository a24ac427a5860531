//! The batch word count of `examples/wordcount-local.toml` for process tests: an input with
//! its exact expected counts, the job spec with absolute paths (optionally with vertices held
//! at a gate until the test opens it), and the parser of its output.

use std::collections::BTreeMap;
use std::path::Path;

use super::{example, quick_restarts};

/// Writes a word count input with mixed case and punctuation; returns it and its counts (the
/// normalisation of examples/tasks/wordcount.sh: lower case, only [a-z0-9] kept).
pub fn wordcount_input() -> (String, BTreeMap<String, u64>) {
    const WORDS: &str = "The quick brown fox jumps over the lazy dog. Region failover, restarts \
        ONLY what has to restart! blocking pipelined shuffle x1 x2 (persistent) don't -- Beijing \
        shanghai 42 e-mail a";
    let words: Vec<&str> = WORDS.split_ascii_whitespace().collect();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: usize| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 33) as usize) % n
    };
    let mut text = String::new();
    for _ in 0..600 {
        let n = next(12);
        let line: Vec<&str> = (0..n).map(|_| words[next(words.len())]).collect();
        text.push_str(&line.join(if next(3) == 0 { "\t" } else { " " }));
        text.push('\n');
    }
    let mut counts = BTreeMap::new();
    for word in text.split_ascii_whitespace() {
        let w: String = word
            .to_ascii_lowercase()
            .chars()
            .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            .collect();
        if !w.is_empty() {
            *counts.entry(w).or_insert(0) += 1;
        }
    }
    (text, counts)
}

/// The `word count` lines of the job's output; panics on a malformed line or a word twice.
pub fn parse_counts(text: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let (word, n) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("output line {line:?} is not `word count`"));
        let n: u64 = n
            .parse()
            .unwrap_or_else(|_| panic!("bad count in {line:?}"));
        assert!(
            counts.insert(word.to_owned(), n).is_none(),
            "word {word} appears twice in the output"
        );
    }
    counts
}

/// The word count job of examples/wordcount-local.toml with absolute paths, its input and
/// output (`words.txt`, `counts.txt`) in `root`, and the vertices in `gated` waiting for the
/// file `root/go-VERTEX` first. Returns the spec, the output file and the expected counts.
pub fn wordcount_job(
    root: &Path,
    gated: &[&str],
) -> (serde_json::Value, String, BTreeMap<String, u64>) {
    let (text, expected) = wordcount_input();
    let input = root.join("words.txt");
    std::fs::write(&input, text).expect("write the input");
    let output = root.join("counts.txt");
    let gate = root.join("gated.sh");
    std::fs::write(
        &gate,
        "#!/bin/sh\n# gated.sh FLAG COMMAND...: waits until FLAG exists, then runs COMMAND.\n\
         flag=$1\nshift\nwhile [ ! -e \"$flag\" ]; do sleep 0.05; done\nexec \"$@\"\n",
    )
    .expect("write gated.sh");
    let base = [
        "sh".to_owned(),
        example("tasks/wordcount.sh"),
        input.display().to_string(),
        output.display().to_string(),
    ];
    let command = |vertex: &str| -> Vec<String> {
        if gated.contains(&vertex) {
            let mut c = vec![
                "sh".to_owned(),
                gate.display().to_string(),
                root.join(format!("go-{vertex}")).display().to_string(),
            ];
            c.extend(base.iter().cloned());
            c
        } else {
            base.to_vec()
        }
    };
    let spec = serde_json::json!({
        "name": "wordcount",
        "failover": "region",
        "restart": quick_restarts("100ms"),
        "vertices": [
            { "id": "read", "parallelism": 4, "command": command("read") },
            { "id": "count", "parallelism": 3, "command": command("count") },
            { "id": "write", "parallelism": 1, "command": command("write") },
        ],
        "edges": [
            { "from": "read", "to": "count", "pattern": "all-to-all", "exchange": "blocking" },
            { "from": "count", "to": "write", "pattern": "all-to-all", "exchange": "persistent" },
        ],
    });
    (spec, output.display().to_string(), expected)
}

/// Lets the gated tasks of `vertex` (see [`wordcount_job`]) go on.
pub fn open_gate(root: &Path, vertex: &str) {
    std::fs::write(root.join(format!("go-{vertex}")), b"").expect("open the gate");
}
