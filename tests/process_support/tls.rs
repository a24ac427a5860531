//! The opt-in TLS mode of a [`super::Cluster`]: a private CA and every certificate in
//! `root/certs` (`jobmaster certs`' library), the jobmaster with TLS and a token file, each
//! executor with its own certificate (issued when it first starts, by the same CA), and the
//! test's client authenticated by the operator certificate (mTLS, no token).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jobmaster::security::certs::{self, CertsOptions};
use jobmaster::security::connector::{self, Expect};
use jobmaster::security::tls::{ClientAuth, Tls, TlsFiles};
use tonic::transport::{Channel, Endpoint};

/// A cluster's certificate folder.
pub struct Certs {
    dir: PathBuf,
    /// The operator's client TLS (loaded once).
    operator: Arc<Tls>,
}

impl Certs {
    /// Creates the CA, the jobmaster's and the operator's certificates and the tokens in
    /// `dir`.
    pub fn create(dir: PathBuf) -> Certs {
        certs::generate(&CertsOptions::new(&dir)).expect("generate the cluster's certificates");
        let operator = Tls::load(
            TlsFiles {
                ca: dir.join(certs::CA_CERT),
                cert: Some((
                    dir.join(certs::OPERATOR_CERT),
                    dir.join(certs::OPERATOR_KEY),
                )),
            },
            ClientAuth::Optional,
            None,
        )
        .expect("load the operator's certificate");
        Certs { dir, operator }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn tls_args(&self, cert: &str, key: &str) -> Vec<OsString> {
        vec![
            "--tls-ca".into(),
            self.dir.join(certs::CA_CERT).into(),
            "--tls-cert".into(),
            self.dir.join(cert).into(),
            "--tls-key".into(),
            self.dir.join(key).into(),
        ]
    }

    /// The jobmaster's TLS flags and its token file.
    pub fn jobmaster_args(&self) -> Vec<OsString> {
        let mut args = self.tls_args(certs::JOBMASTER_CERT, certs::JOBMASTER_KEY);
        args.push("--token-file".into());
        args.push(self.dir.join(certs::TOKENS).into());
        args
    }

    /// Executor `id`'s TLS flags; issues its certificate (same CA) if it has none yet.
    pub fn executor_args(&self, id: &str) -> Vec<OsString> {
        let (cert, key) = (certs::executor_cert_file(id), certs::executor_key_file(id));
        if !self.dir.join(&cert).exists() {
            let mut options = CertsOptions::new(&self.dir);
            options.executors = vec![id.to_owned()];
            certs::generate(&options)
                .unwrap_or_else(|e| panic!("issue executor {id}'s certificate: {e}"));
        }
        self.tls_args(&cert, &key)
    }

    /// A channel to the jobmaster at `url` (https), authenticated by the operator
    /// certificate, connected now.
    pub async fn operator_channel(&self, url: &str) -> Result<Channel, String> {
        let endpoint = Endpoint::from_shared(url.to_owned()).map_err(|e| e.to_string())?;
        connector::connect(endpoint, Some(self.operator.clone()), Expect::JobMaster)
            .await
            .map_err(|e| connector::describe(&e))
    }
}
