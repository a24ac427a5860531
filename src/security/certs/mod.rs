//! `jobmaster certs`: a private CA and every certificate, key and operator token a secure
//! cluster needs, written into one folder.
//!
//! The folder holds `ca.pem`/`ca-key.pem` (the CA, reused by later runs, never overwritten),
//! `jobmaster.pem`, `executor-<id>.pem` and `operator.pem` with their `-key.pem` files (each
//! leaf names its [`Identity`] as a URI subject-alternative name and may act as TLS server
//! and client), the server's token file `tokens` (SHA-256 hashes only, see [`token_line`]) and
//! the plaintext tokens `operator.token` and `viewer.token`. Keys and tokens are mode 0600,
//! certificates 0644, the folder 0700 when this creates it.

use std::fmt::Write as _;
use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Write as _};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::identity::{Identity, Role};

/// The CA certificate every party trusts.
pub const CA_CERT: &str = "ca.pem";
/// The CA's private key: only `jobmaster certs` needs it; keep it offline if you can.
pub const CA_KEY: &str = "ca-key.pem";
pub const JOBMASTER_CERT: &str = "jobmaster.pem";
pub const JOBMASTER_KEY: &str = "jobmaster-key.pem";
pub const OPERATOR_CERT: &str = "operator.pem";
pub const OPERATOR_KEY: &str = "operator-key.pem";
/// The JobMaster's token file (`--token-file`): hashes only.
pub const TOKENS: &str = "tokens";
pub const OPERATOR_TOKEN: &str = "operator.token";
pub const VIEWER_TOKEN: &str = "viewer.token";
/// The name of the viewer token `jobmaster certs` creates.
pub const VIEWER_NAME: &str = "viewer";
pub const DEFAULT_OPERATOR_NAME: &str = "admin";
/// Validity of leaf certificates unless told otherwise.
pub const DEFAULT_DAYS: u32 = 365;
/// The longest `--days` accepted (a hundred years).
pub const MAX_DAYS: u32 = 36_500;
/// Validity of a new CA.
pub const CA_DAYS: u32 = 3_650;
/// What every token starts with, so that a leaked one is easy to recognise.
pub const TOKEN_PREFIX: &str = "jm_";
/// The longest executor id or operator name accepted.
pub const MAX_NAME_BYTES: usize = 128;

/// The first lines of a new token file.
pub const TOKENS_HEADER: &str = "\
# jobmaster operator tokens, one per line: <role> <name> sha256:<hex>
#   <role> is viewer or operator, <name> who holds the token, and <hex> the SHA-256 of the
#   token's UTF-8 bytes in lowercase hex. This file holds hashes only, never a token itself.
# `jobmaster token --role viewer|operator --name NAME` makes a token and prints its line.
# Lines starting with # are comments.
";

/// The certificate file of executor `id`.
pub fn executor_cert_file(id: &str) -> String {
    format!("executor-{id}.pem")
}

/// The private key file of executor `id`.
pub fn executor_key_file(id: &str) -> String {
    format!("executor-{id}-key.pem")
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertsOptions {
    /// The folder to write into (created, mode 0700, if missing).
    pub out: PathBuf,
    /// One certificate per executor id.
    pub executors: Vec<String>,
    /// DNS names and IP addresses of the JobMaster's certificate, besides its identity; empty
    /// means [`default_hosts`]. Naming hosts asks for a new JobMaster certificate.
    pub hosts: Vec<String>,
    /// The name in the operator's certificate and token.
    pub operator_name: String,
    /// Validity of the leaf certificates.
    pub days: u32,
    /// Overwrite existing leaf certificates and keys (never the CA, never a token).
    pub force: bool,
}

impl CertsOptions {
    pub fn new(out: impl Into<PathBuf>) -> Self {
        CertsOptions {
            out: out.into(),
            executors: Vec::new(),
            hosts: Vec::new(),
            operator_name: DEFAULT_OPERATOR_NAME.to_owned(),
            days: DEFAULT_DAYS,
            force: false,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertsReport {
    /// Whether an existing CA signed the new certificates.
    pub ca_reused: bool,
    /// The files written, in order.
    pub written: Vec<PathBuf>,
    /// Existing files left as they were: certificates this run was not asked to replace,
    /// tokens whose plaintext file exists.
    pub kept: Vec<PathBuf>,
    /// The hosts the JobMaster's certificate is for (when this run issued it), or would be.
    pub hosts: Vec<String>,
}

/// Why certificates could not be generated; each says what to change.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error(
        "executor id {id:?} {problem}; use 1 to {MAX_NAME_BYTES} ASCII letters, digits, '-', '_' or '.' (it becomes part of a file name)"
    )]
    BadExecutorId { id: String, problem: &'static str },
    #[error(
        "name {name:?} {problem}; use 1 to {MAX_NAME_BYTES} ASCII letters, digits, '-', '_', '.' or '@'"
    )]
    BadName { name: String, problem: &'static str },
    #[error(
        "host {host:?} is neither an IP address nor a DNS name; give names like jm.example.com and addresses like 10.0.0.5 or ::1"
    )]
    BadHost { host: String },
    #[error("--days {days} is out of range; give 1 to {MAX_DAYS}")]
    BadDays { days: u32 },
    #[error("{} already exists; pass --force to overwrite it", path.display())]
    Exists { path: PathBuf },
    #[error(
        "{} exists but {} does not; restore the missing file, or move both away to create a new CA (then every certificate must be issued again)",
        present.display(), missing.display()
    )]
    IncompleteCa { present: PathBuf, missing: PathBuf },
    #[error(
        "cannot use the CA in {}: {problem}; restore {CA_CERT} and {CA_KEY} from a backup, or move them away to create a new CA (then every certificate must be issued again)",
        dir.display()
    )]
    BadCa { dir: PathBuf, problem: String },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot create a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("the operating system gave no random bytes: {0}")]
    Random(getrandom::Error),
}

/// Checks that `id` is a usable executor id: it becomes part of file names.
pub fn check_executor_id(id: &str) -> Result<(), CertsError> {
    let problem = name_problem(id, b"-_.");
    match problem {
        None => Ok(()),
        Some(problem) => Err(CertsError::BadExecutorId {
            id: id.to_owned(),
            problem,
        }),
    }
}

/// Checks that `name` is a usable operator (or token) name: one word in the token file.
pub fn check_name(name: &str) -> Result<(), CertsError> {
    match name_problem(name, b"-_.@") {
        None => Ok(()),
        Some(problem) => Err(CertsError::BadName {
            name: name.to_owned(),
            problem,
        }),
    }
}

fn name_problem(name: &str, punctuation: &[u8]) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.len() > MAX_NAME_BYTES {
        Some("is too long")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || punctuation.contains(&b))
    {
        Some("holds other characters")
    } else if name == "." || name == ".." {
        Some("is not a name")
    } else {
        None
    }
}

/// A new operator token: `jm_` and 64 lowercase hex digits (32 random bytes).
///
/// # Panics
///
/// If the operating system has no randomness to give; [`try_new_token`] returns an error
/// instead.
pub fn new_token() -> String {
    try_new_token().expect("the operating system's random number generator failed")
}

/// A new operator token, or why the operating system gave no random bytes.
pub fn try_new_token() -> Result<String, CertsError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(CertsError::Random)?;
    Ok(format!("{TOKEN_PREFIX}{}", hex(&bytes)))
}

/// How a token is stored at rest: `sha256:` and the SHA-256 of its UTF-8 bytes in lowercase
/// hex.
pub fn hash_token(token: &str) -> String {
    format!("sha256:{}", hex(&Sha256::digest(token.as_bytes())))
}

/// A token file line, `<role> <name> sha256:<hex>`, without the newline.
pub fn token_line(role: Role, name: &str, token: &str) -> String {
    format!("{role} {name} {}", hash_token(token))
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The JobMaster certificate's hosts by default: `localhost`, `127.0.0.1`, `::1` and this
/// machine's host name when it can be read.
pub fn default_hosts() -> Vec<String> {
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).into();
    if let Some(name) = host_name() {
        if !hosts.contains(&name) {
            hosts.push(name);
        }
    }
    hosts
}

/// This machine's host name (what gethostname(2) answers, else `/etc/hostname`).
fn host_name() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|file| {
            let name = fs::read_to_string(file).ok()?.trim().to_ascii_lowercase();
            is_dns_name(&name).then_some(name)
        })
}

fn is_dns_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A host as a subject-alternative name: an IP address (`[::1]` too) or a DNS name.
fn host_san(host: &str) -> Result<SanType, CertsError> {
    let bad = || CertsError::BadHost {
        host: host.to_owned(),
    };
    let trimmed = host.trim();
    let bare = trimmed
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(trimmed);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    if !is_dns_name(trimmed) {
        return Err(bad());
    }
    let name = trimmed.to_ascii_lowercase().try_into().map_err(|_| bad())?;
    Ok(SanType::DnsName(name))
}

/// One leaf certificate to issue.
struct Leaf {
    identity: Identity,
    common_name: String,
    cert: PathBuf,
    key: PathBuf,
    hosts: Vec<SanType>,
}

/// Writes the CA (unless there is one), the JobMaster's, the executors' and the operator's
/// certificates and keys, and the operator and viewer tokens into `options.out`.
///
/// Everything is checked before anything is written: a refused run leaves the folder as it
/// was. A complete JobMaster or operator pair already in the folder is kept (reported in
/// [`CertsReport::kept`]) unless `force`, or, for the JobMaster, unless hosts are named; an
/// executor named again is refused unless `force`.
pub fn generate(options: &CertsOptions) -> Result<CertsReport, CertsError> {
    if options.days == 0 || options.days > MAX_DAYS {
        return Err(CertsError::BadDays { days: options.days });
    }
    let mut executors: Vec<&str> = Vec::new();
    for id in &options.executors {
        check_executor_id(id)?;
        if !executors.contains(&id.as_str()) {
            executors.push(id);
        }
    }
    check_name(&options.operator_name)?;
    let hosts = if options.hosts.is_empty() {
        default_hosts()
    } else {
        options.hosts.iter().map(|h| h.trim().to_owned()).collect()
    };
    let host_sans = hosts
        .iter()
        .map(|h| host_san(h))
        .collect::<Result<Vec<_>, _>>()?;

    let out = &options.out;
    let at = |name: &str| out.join(name);
    let mut report = CertsReport {
        hosts,
        ..CertsReport::default()
    };

    // The CA: both files, or neither.
    let (ca_cert, ca_key) = (at(CA_CERT), at(CA_KEY));
    let ca_exists = match (exists(&ca_cert)?, exists(&ca_key)?) {
        (true, true) => true,
        (false, false) => false,
        (true, false) => {
            return Err(CertsError::IncompleteCa {
                present: ca_cert,
                missing: ca_key,
            });
        }
        (false, true) => {
            return Err(CertsError::IncompleteCa {
                present: ca_key,
                missing: ca_cert,
            });
        }
    };

    // Which leaves to issue. A pair kept must come from this CA, so a new CA keeps none.
    let operator = Identity::Operator {
        role: Role::Operator,
        name: options.operator_name.clone(),
    };
    let mut leaves = Vec::new();
    let jobmaster = Leaf {
        identity: Identity::JobMaster,
        common_name: "jobmaster".to_owned(),
        cert: at(JOBMASTER_CERT),
        key: at(JOBMASTER_KEY),
        hosts: host_sans,
    };
    let keep_jobmaster = ca_exists && options.hosts.is_empty();
    plan_leaf(
        jobmaster,
        keep_jobmaster,
        None,
        options.force,
        &mut leaves,
        &mut report,
    )?;
    let operator_leaf = Leaf {
        identity: operator.clone(),
        common_name: format!("operator {}", options.operator_name),
        cert: at(OPERATOR_CERT),
        key: at(OPERATOR_KEY),
        hosts: Vec::new(),
    };
    plan_leaf(
        operator_leaf,
        ca_exists,
        Some(&operator),
        options.force,
        &mut leaves,
        &mut report,
    )?;
    for id in &executors {
        let leaf = Leaf {
            identity: Identity::Executor((*id).to_owned()),
            common_name: format!("executor {id}"),
            cert: at(&executor_cert_file(id)),
            key: at(&executor_key_file(id)),
            hosts: Vec::new(),
        };
        plan_leaf(leaf, false, None, options.force, &mut leaves, &mut report)?;
    }

    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(out)
        .map_err(|source| CertsError::Io {
            action: "create the folder",
            path: out.clone(),
            source,
        })?;

    let issuer = if ca_exists {
        report.ca_reused = true;
        load_ca(out, &ca_cert, &ca_key)?
    } else {
        let (issuer, cert_pem, key_pem) = new_ca()?;
        write_new(&ca_key, key_pem.as_bytes(), 0o600)?;
        report.written.push(ca_key);
        write_new(&ca_cert, cert_pem.as_bytes(), 0o644)?;
        report.written.push(ca_cert);
        issuer
    };

    for leaf in &leaves {
        let (cert_pem, key_pem) = issue(leaf, &issuer, options.days)?;
        write_replacing(&leaf.key, key_pem.as_bytes(), 0o600)?;
        report.written.push(leaf.key.clone());
        write_replacing(&leaf.cert, cert_pem.as_bytes(), 0o644)?;
        report.written.push(leaf.cert.clone());
    }

    for (role, name, file) in [
        (
            Role::Operator,
            options.operator_name.as_str(),
            OPERATOR_TOKEN,
        ),
        (Role::Viewer, VIEWER_NAME, VIEWER_TOKEN),
    ] {
        let plaintext = at(file);
        if exists(&plaintext)? {
            report.kept.push(plaintext);
            continue;
        }
        let token = try_new_token()?;
        // The hash first: a crash in between leaves a line nobody can use, never a token the
        // JobMaster does not know (which a later run would keep).
        append_token_line(&at(TOKENS), &token_line(role, name, &token), &mut report)?;
        write_new(&plaintext, format!("{token}\n").as_bytes(), 0o600)?;
        report.written.push(plaintext);
    }
    Ok(report)
}

/// Queues `leaf` for issuing, keeps its existing pair, or refuses to overwrite it.
fn plan_leaf(
    leaf: Leaf,
    may_keep: bool,
    same_identity: Option<&Identity>,
    force: bool,
    leaves: &mut Vec<Leaf>,
    report: &mut CertsReport,
) -> Result<(), CertsError> {
    let (cert, key) = (exists(&leaf.cert)?, exists(&leaf.key)?);
    if force || (!cert && !key) {
        leaves.push(leaf);
        return Ok(());
    }
    let identity_matches = match same_identity {
        None => true,
        Some(identity) => certificate_identity(&leaf.cert).as_ref() == Some(identity),
    };
    if may_keep && cert && key && identity_matches {
        report.kept.push(leaf.cert);
        report.kept.push(leaf.key);
        return Ok(());
    }
    Err(CertsError::Exists {
        path: if cert { leaf.cert } else { leaf.key },
    })
}

/// The identity in a PEM certificate file, if it can be read.
fn certificate_identity(path: &Path) -> Option<Identity> {
    let pem = fs::read(path).ok()?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).ok()?;
    Identity::from_certificate(&pem.contents)
}

fn exists(path: &Path) -> Result<bool, CertsError> {
    path.try_exists().map_err(|source| CertsError::Io {
        action: "look at",
        path: path.to_owned(),
        source,
    })
}

/// Validity from an hour ago (clocks differ) for `days` days.
fn set_validity(params: &mut CertificateParams, days: u32) {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;
    params.not_before = now - Duration::from_secs(3600);
    params.not_after = now + Duration::from_secs(u64::from(days) * 86_400);
}

/// A new self-signed CA: its issuer, certificate and key in PEM.
fn new_ca() -> Result<(Issuer<'static, KeyPair>, String, String), CertsError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "jobmaster CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut params, CA_DAYS);
    let cert = params.self_signed(&key)?;
    let key_pem = key.serialize_pem();
    Ok((Issuer::new(params, key), cert.pem(), key_pem))
}

/// The CA already in the folder, checked to be a CA whose key is `ca-key.pem`.
fn load_ca(dir: &Path, cert: &Path, key: &Path) -> Result<Issuer<'static, KeyPair>, CertsError> {
    let bad = |problem: String| CertsError::BadCa {
        dir: dir.to_owned(),
        problem,
    };
    let cert_pem = read_text(cert)?;
    let key_pem = read_text(key)?;
    let key_pair = KeyPair::from_pem(&key_pem)
        .map_err(|e| bad(format!("{CA_KEY} is no private key ({e})")))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|_| bad(format!("{CA_CERT} is no PEM certificate")))?;
    let (_, parsed) = X509Certificate::from_der(&pem.contents)
        .map_err(|e| bad(format!("{CA_CERT} is no certificate ({e})")))?;
    if !parsed.is_ca() {
        return Err(bad(format!("{CA_CERT} is not a CA certificate")));
    }
    if parsed.public_key().subject_public_key.data.as_ref() != key_pair.public_key_raw() {
        return Err(bad(format!("{CA_KEY} is not the key of {CA_CERT}")));
    }
    Issuer::from_ca_cert_pem(&cert_pem, key_pair)
        .map_err(|e| bad(format!("{CA_CERT} cannot sign ({e})")))
}

fn read_text(path: &Path) -> Result<String, CertsError> {
    fs::read_to_string(path).map_err(|source| CertsError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })
}

/// A leaf certificate for `leaf`, signed by `issuer`: its certificate and key in PEM.
fn issue(
    leaf: &Leaf,
    issuer: &Issuer<'_, KeyPair>,
    days: u32,
) -> Result<(String, String), CertsError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, leaf.common_name.as_str());
    params.subject_alt_names = vec![SanType::URI(leaf.identity.uri().try_into()?)];
    params.subject_alt_names.extend(leaf.hosts.iter().cloned());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, days);
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Creates `path` with `mode`; fails if it exists.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertsError> {
    let io_error = |source| CertsError::Io {
        action: "write",
        path: path.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source: io::Error| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                CertsError::Exists {
                    path: path.to_owned(),
                }
            } else {
                io_error(source)
            }
        })?;
    // The mode exactly, whatever the umask.
    file.set_permissions(Permissions::from_mode(mode))
        .and_then(|()| file.write_all(contents))
        .and_then(|()| file.sync_all())
        .map_err(io_error)
}

/// Writes `path` with `mode` through a temporary file renamed over it, so that a process
/// reloading the file never reads half of it.
fn write_replacing(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertsError> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&temporary);
    let written = write_new(&temporary, contents, mode).and_then(|()| {
        fs::rename(&temporary, path).map_err(|source| CertsError::Io {
            action: "replace",
            path: path.to_owned(),
            source,
        })
    });
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written
}

/// Appends `line` to the token file, creating it (mode 0600, with [`TOKENS_HEADER`]) if
/// missing.
fn append_token_line(path: &Path, line: &str, report: &mut CertsReport) -> Result<(), CertsError> {
    let io_error = |source| CertsError::Io {
        action: "append to",
        path: path.to_owned(),
        source,
    };
    let mut text = String::new();
    if exists(path)? {
        let existing = read_text(path)?;
        if !existing.is_empty() && !existing.ends_with('\n') {
            text.push('\n');
        }
    } else {
        write_new(path, TOKENS_HEADER.as_bytes(), 0o600)?;
    }
    if !report.written.iter().any(|p| p == path) {
        report.written.push(path.to_owned());
    }
    text.push_str(line);
    text.push('\n');
    let mut file = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_error)?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_error)
}

#[cfg(test)]
mod tests;
