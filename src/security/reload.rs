//! Files that are reread while the daemon runs (certificates, keys, the token file): one
//! polling task per file set, which swaps in a new version only if it loads.

use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

/// Something rebuilt from files.
pub trait Reload: Send + Sync + 'static {
    type Error: Display + Send;
    /// What the log lines call it (`"tls files"`, `"token file"`).
    const WHAT: &'static str;
    /// Rereads the files; `Ok(true)` if a new version is in use. An error keeps the old one.
    fn reload(&self) -> Result<bool, Self::Error>;
    /// Where the files are, for the log line.
    fn location(&self) -> String;
}

/// Calls [`Reload::reload`] every `interval`, off the runtime's workers, until the last other
/// reference to `it` is dropped.
pub fn spawn_reloader<T: Reload>(it: &Arc<T>, interval: Duration) {
    let weak = Arc::downgrade(it);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(it) = weak.upgrade() else { return };
            let location = it.location();
            match tokio::task::spawn_blocking(move || it.reload()).await {
                Ok(Ok(true)) => {
                    info!(what = T::WHAT, %location, "files changed: new version in use")
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => warn!(
                    what = T::WHAT,
                    %location,
                    error = %e,
                    "files changed but cannot be used: keeping the previous version"
                ),
                Err(_) => return,
            }
        }
    });
}
