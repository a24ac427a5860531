//! What a task process is told about itself: the JSON descriptor file (`JM_DESCRIPTOR`) and
//! the `JM_*` environment variables.

use std::path::Path;

use serde::Serialize;

/// What a task process learns from its descriptor file (`JM_DESCRIPTOR`).
#[derive(Serialize)]
pub(crate) struct Descriptor<'a> {
    pub(crate) job_id: &'a str,
    pub(crate) job_name: &'a str,
    pub(crate) vertex: &'a str,
    pub(crate) subtask: u32,
    pub(crate) parallelism: u32,
    pub(crate) attempt: u32,
    pub(crate) inputs: Vec<InputDescriptor>,
    pub(crate) outputs: Vec<OutputDescriptor>,
    pub(crate) state_dir: String,
}

#[derive(Serialize)]
pub(crate) struct InputDescriptor {
    pub(crate) producer_vertex: String,
    pub(crate) exchange: String,
    /// Local files to read (blocking and persistent inputs), one per producer subtask.
    pub(crate) files: Vec<String>,
    /// For pipelined inputs: where each producer subtask runs (executor ids).
    pub(crate) producers: Vec<String>,
}

#[derive(Serialize)]
pub(crate) struct OutputDescriptor {
    pub(crate) consumer_vertex: String,
    pub(crate) exchange: String,
    /// Files to write, one per consumer subtask (blocking and persistent outputs).
    pub(crate) files: Vec<String>,
}

impl Descriptor<'_> {
    /// The descriptor as pretty JSON.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// The task's environment: who it is, where its descriptor, inputs, outputs and state are
    /// (`descriptor` is the descriptor file, `attempt_dir` the attempt's own directory).
    pub(crate) fn env(
        &self,
        descriptor: &Path,
        executor_id: &str,
        attempt_dir: &Path,
    ) -> Vec<(String, String)> {
        let join = |files: Vec<&str>| files.join(" ");
        let input_files = join(
            self.inputs
                .iter()
                .flat_map(|i| &i.files)
                .map(String::as_str)
                .collect(),
        );
        let output_files = join(
            self.outputs
                .iter()
                .flat_map(|o| &o.files)
                .map(String::as_str)
                .collect(),
        );
        [
            ("JM_JOB_ID", self.job_id.to_owned()),
            ("JM_JOB_NAME", self.job_name.to_owned()),
            ("JM_VERTEX", self.vertex.to_owned()),
            ("JM_SUBTASK", self.subtask.to_string()),
            ("JM_PARALLELISM", self.parallelism.to_string()),
            ("JM_ATTEMPT", self.attempt.to_string()),
            ("JM_DESCRIPTOR", descriptor.display().to_string()),
            ("JM_INPUT_FILES", input_files),
            ("JM_OUTPUT_FILES", output_files),
            ("JM_STATE_DIR", self.state_dir.clone()),
            ("JM_EXECUTOR_ID", executor_id.to_owned()),
            // Tasks run in the executor's working directory, so relative paths in a job's
            // commands resolve where the cluster was started; their own files live here.
            ("JM_ATTEMPT_DIR", attempt_dir.display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_lists_every_input_and_output_file_in_order() {
        let d = Descriptor {
            job_id: "j",
            job_name: "n",
            vertex: "v",
            subtask: 1,
            parallelism: 2,
            attempt: 3,
            inputs: vec![
                InputDescriptor {
                    producer_vertex: "a".into(),
                    exchange: "blocking".into(),
                    files: vec!["/i/a0".into(), "/i/a1".into()],
                    producers: vec!["x".into(), "y".into()],
                },
                InputDescriptor {
                    producer_vertex: "b".into(),
                    exchange: "pipelined".into(),
                    files: vec![],
                    producers: vec!["x".into()],
                },
            ],
            outputs: vec![OutputDescriptor {
                consumer_vertex: "c".into(),
                exchange: "blocking".into(),
                files: vec!["/o/0".into()],
            }],
            state_dir: "/s".into(),
        };
        let env = d.env(Path::new("/d.json"), "ex", Path::new("/att"));
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("JM_INPUT_FILES"), Some("/i/a0 /i/a1"));
        assert_eq!(get("JM_OUTPUT_FILES"), Some("/o/0"));
        assert_eq!(get("JM_SUBTASK"), Some("1"));
        assert_eq!(get("JM_DESCRIPTOR"), Some("/d.json"));
        assert_eq!(get("JM_ATTEMPT_DIR"), Some("/att"));
        assert_eq!(env.len(), 12);
    }
}
