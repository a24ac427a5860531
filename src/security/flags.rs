//! The TLS flags every binary shares (`--tls-ca`, `--tls-cert`, `--tls-key`); they override
//! `[tls]` of the configuration.

use std::path::PathBuf;

use super::tls::{TlsError, TlsFiles};
use crate::settings::TlsSettings;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// The cluster's CA certificate (PEM) [default: tls.ca; empty: plain text].
    #[arg(long, global = true, value_name = "FILE", env = "JOBMASTER_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// This party's certificate (PEM), made by `jobmaster certs` [default: tls.cert].
    #[arg(long, global = true, value_name = "FILE", env = "JOBMASTER_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM) [default: tls.key].
    #[arg(long, global = true, value_name = "FILE", env = "JOBMASTER_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// The files the flags alone name (for jmctl, which reads no configuration file).
    pub fn files(&self) -> Result<Option<TlsFiles>, TlsError> {
        let text = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        TlsFiles::from_parts(
            &text(&self.tls_ca),
            &text(&self.tls_cert),
            &text(&self.tls_key),
        )
    }

    /// Writes the given flags over `settings`.
    pub fn apply(&self, settings: &mut TlsSettings) {
        let text = |p: &PathBuf| p.to_string_lossy().into_owned();
        if let Some(p) = &self.tls_ca {
            settings.ca = text(p);
        }
        if let Some(p) = &self.tls_cert {
            settings.cert = text(p);
        }
        if let Some(p) = &self.tls_key {
            settings.key = text(p);
        }
    }
}
