//! The daemon's Prometheus metrics (`GET /metrics` on its HTTP port), read between measured
//! intervals: store commits (`jobmaster_store_commit_seconds`), restarts, adoptions,
//! reconciliation. A scrape is served by the coordinator, so scenarios never scrape inside a
//! timed window.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One scrape of `/metrics`.
pub(crate) struct Scrape(String);

/// GETs `/metrics` over HTTP/1.1.
pub(crate) async fn scrape(http: SocketAddr) -> Result<Scrape> {
    let read = async {
        let mut s = TcpStream::connect(http).await?;
        s.write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(crate::RPC_TIMEOUT, read)
        .await
        .context("GET /metrics timed out")??;
    let text = String::from_utf8(buf).context("GET /metrics: not UTF-8")?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("GET /metrics: an answer without headers")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("GET /metrics: {}", head.lines().next().unwrap_or_default());
    }
    Ok(Scrape(body.to_owned()))
}

impl Scrape {
    /// The sum of every sample named `name` (any labels); 0 if there is none.
    pub(crate) fn sum(&self, name: &str) -> f64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (key, value) = l.rsplit_once(' ')?;
                let base = key.split('{').next()?;
                (base == name).then(|| value.parse::<f64>().ok())?
            })
            .sum()
    }

    /// Store commits so far and their total time in seconds.
    pub(crate) fn commits(&self) -> Commits {
        let buckets = self
            .0
            .lines()
            .filter(|l| l.starts_with("jobmaster_store_commit_seconds_bucket{"))
            .filter_map(|l| {
                let le = l.split("le=\"").nth(1)?.split('"').next()?.to_owned();
                let (_, value) = l.rsplit_once(' ')?;
                Some((le, value.parse().ok()?))
            })
            .collect();
        Commits {
            count: self.sum("jobmaster_store_commit_seconds_count"),
            seconds: self.sum("jobmaster_store_commit_seconds_sum"),
            buckets,
        }
    }
}

/// The commit histogram at one scrape.
#[derive(Clone, Default)]
pub(crate) struct Commits {
    pub(crate) count: f64,
    pub(crate) seconds: f64,
    /// Cumulative counts by upper bound (`le`).
    pub(crate) buckets: Vec<(String, f64)>,
}

impl Commits {
    /// Commits and their time between `before` and `self`.
    pub(crate) fn since(&self, before: &Commits) -> Commits {
        Commits {
            count: self.count - before.count,
            seconds: self.seconds - before.seconds,
            buckets: self
                .buckets
                .iter()
                .map(|(le, n)| {
                    let was = before
                        .buckets
                        .iter()
                        .find(|(l, _)| l == le)
                        .map_or(0.0, |(_, v)| *v);
                    (le.clone(), n - was)
                })
                .collect(),
        }
    }

    /// The histogram as "≤1ms: n, ≤5ms: n, ..." (counts per bucket, not cumulative), empty
    /// buckets left out.
    pub(crate) fn distribution(&self) -> String {
        let mut out = Vec::new();
        let mut below = 0.0;
        for (le, cumulative) in &self.buckets {
            let n = cumulative - below;
            below = *cumulative;
            if n > 0.0 {
                let bound = match le.parse::<f64>() {
                    Ok(s) => format!("≤{}ms", s * 1000.0),
                    Err(_) => format!("≤{le}"),
                };
                out.push(format!("{bound}: {n}"));
            }
        }
        out.join(", ")
    }
}
