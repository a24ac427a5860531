//! Tests of `jobmaster certs`: chains, identities, modes, reuse of the CA, tokens.

use super::*;

/// A fresh folder under the temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        TempDir(std::env::temp_dir().join(format!(
            "jobmaster-certs-{tag}-{}-{n}-{nanos}",
            std::process::id()
        )))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn options(dir: &Path, executors: &[&str]) -> CertsOptions {
    CertsOptions {
        executors: executors.iter().map(|s| s.to_string()).collect(),
        ..CertsOptions::new(dir.join("certs"))
    }
}

fn der(path: &Path) -> Vec<u8> {
    let text = fs::read(path).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&text).unwrap();
    pem.contents
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn every_leaf_chains_to_the_ca_and_names_its_identity() {
    let dir = TempDir::new("chain");
    let opts = options(&dir.0, &["tm-1", "tm-2"]);
    let report = generate(&opts).unwrap();
    assert!(!report.ca_reused);
    let out = &opts.out;
    let ca_der = der(&out.join(CA_CERT));
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    assert!(ca.is_ca());
    assert_eq!(ca.subject().to_string(), "CN=jobmaster CA");
    ca.verify_signature(None).unwrap();
    let key_usage = ca.key_usage().unwrap().unwrap().value;
    assert!(key_usage.key_cert_sign() && key_usage.crl_sign());

    let expected = [
        (JOBMASTER_CERT, Identity::JobMaster),
        (
            OPERATOR_CERT,
            Identity::Operator {
                role: Role::Operator,
                name: "admin".into(),
            },
        ),
        ("executor-tm-1.pem", Identity::Executor("tm-1".into())),
        ("executor-tm-2.pem", Identity::Executor("tm-2".into())),
    ];
    for (file, identity) in expected {
        let leaf_der = der(&out.join(file));
        let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
        assert_eq!(leaf.issuer(), ca.subject(), "{file}");
        leaf.verify_signature(Some(ca.public_key()))
            .unwrap_or_else(|e| panic!("{file} is not signed by the CA: {e}"));
        assert!(!leaf.is_ca(), "{file}");
        assert_eq!(
            Identity::from_certificate(&leaf_der),
            Some(identity.clone())
        );
        let uris: Vec<_> = leaf
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::URI(uri) => Some(uri.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(uris, [identity.uri()], "{file}");
        let eku = leaf.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth, "{file}");
        assert!(leaf.key_usage().unwrap().unwrap().value.digital_signature());
        let validity = leaf.validity();
        let days = (validity.not_after.timestamp() - validity.not_before.timestamp()) / 86_400;
        assert_eq!(days, 365, "{file}: 365 days and the hour before now");
    }
    for file in [JOBMASTER_KEY, OPERATOR_KEY, "executor-tm-1-key.pem"] {
        assert!(report.written.contains(&out.join(file)), "{file}");
    }
}

#[test]
fn the_jobmaster_certificate_also_names_its_hosts() {
    let dir = TempDir::new("hosts");
    let opts = CertsOptions {
        hosts: vec!["jm.example.com".into(), "10.0.0.5".into(), "[::1]".into()],
        ..options(&dir.0, &["tm-1"])
    };
    generate(&opts).unwrap();
    let leaf_der = der(&opts.out.join(JOBMASTER_CERT));
    let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
    use x509_parser::extensions::GeneralName;
    let names: Vec<String> = leaf
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::URI(uri) => format!("uri {uri}"),
            GeneralName::DNSName(dns) => format!("dns {dns}"),
            GeneralName::IPAddress([a, b, c, d]) => {
                format!("ip {}", IpAddr::from([*a, *b, *c, *d]))
            }
            GeneralName::IPAddress(bytes) => match <[u8; 16]>::try_from(*bytes) {
                Ok(v6) => format!("ip {}", IpAddr::from(v6)),
                Err(_) => format!("bad ip {bytes:?}"),
            },
            other => format!("other {other}"),
        })
        .collect();
    assert_eq!(
        names,
        [
            "uri jobmaster://jobmaster",
            "dns jm.example.com",
            "ip 10.0.0.5",
            "ip ::1"
        ]
    );
}

#[test]
fn keys_and_tokens_are_private_and_certificates_readable() {
    let dir = TempDir::new("modes");
    let opts = options(&dir.0, &["tm-1"]);
    generate(&opts).unwrap();
    let out = &opts.out;
    assert_eq!(mode(out), 0o700);
    for file in [
        CA_KEY,
        JOBMASTER_KEY,
        OPERATOR_KEY,
        "executor-tm-1-key.pem",
        TOKENS,
        OPERATOR_TOKEN,
        VIEWER_TOKEN,
    ] {
        assert_eq!(mode(&out.join(file)), 0o600, "{file}");
    }
    for file in [CA_CERT, JOBMASTER_CERT, OPERATOR_CERT, "executor-tm-1.pem"] {
        assert_eq!(mode(&out.join(file)), 0o644, "{file}");
    }
}

#[test]
fn the_token_file_holds_the_hashes_of_the_tokens_written() {
    let dir = TempDir::new("tokens");
    let opts = options(&dir.0, &["tm-1"]);
    generate(&opts).unwrap();
    let out = &opts.out;
    let tokens = fs::read_to_string(out.join(TOKENS)).unwrap();
    assert!(tokens.starts_with('#'));
    let operator = fs::read_to_string(out.join(OPERATOR_TOKEN)).unwrap();
    let viewer = fs::read_to_string(out.join(VIEWER_TOKEN)).unwrap();
    for token in [&operator, &viewer] {
        let token = token.strip_suffix('\n').unwrap();
        assert_eq!(token.len(), 3 + 64);
        assert!(
            !tokens.contains(token),
            "the token file holds a plaintext token"
        );
    }
    let lines: Vec<&str> = tokens.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines,
        [
            token_line(Role::Operator, "admin", operator.trim_end()),
            token_line(Role::Viewer, "viewer", viewer.trim_end()),
        ]
    );

    // Again, with one token file gone: one new line, the other token untouched.
    fs::remove_file(out.join(VIEWER_TOKEN)).unwrap();
    let again = CertsOptions {
        executors: vec!["tm-2".into()],
        ..opts.clone()
    };
    let report = generate(&again).unwrap();
    assert!(report.kept.contains(&out.join(OPERATOR_TOKEN)));
    assert_eq!(
        fs::read_to_string(out.join(OPERATOR_TOKEN)).unwrap(),
        operator
    );
    let new_viewer = fs::read_to_string(out.join(VIEWER_TOKEN)).unwrap();
    assert_ne!(new_viewer, viewer);
    let after = fs::read_to_string(out.join(TOKENS)).unwrap();
    assert!(
        after.starts_with(&tokens),
        "the token file was rewritten, not appended to"
    );
    assert_eq!(
        &after[tokens.len()..],
        format!(
            "{}\n",
            token_line(Role::Viewer, "viewer", new_viewer.trim_end())
        )
    );
}

#[test]
fn a_second_run_reuses_the_ca_and_refuses_to_overwrite_without_force() {
    let dir = TempDir::new("rerun");
    let first = options(&dir.0, &["tm-1"]);
    generate(&first).unwrap();
    let out = &first.out;
    let ca = fs::read(out.join(CA_CERT)).unwrap();
    let ca_key = fs::read(out.join(CA_KEY)).unwrap();
    let jobmaster = fs::read(out.join(JOBMASTER_CERT)).unwrap();
    let tm1 = fs::read(out.join("executor-tm-1.pem")).unwrap();

    // New executors: signed by the same CA; the JobMaster's and operator's pairs kept.
    let second = options(&dir.0, &["tm-2", "tm-3"]);
    let report = generate(&second).unwrap();
    assert!(report.ca_reused);
    assert_eq!(fs::read(out.join(CA_CERT)).unwrap(), ca);
    assert_eq!(fs::read(out.join(CA_KEY)).unwrap(), ca_key);
    assert_eq!(fs::read(out.join(JOBMASTER_CERT)).unwrap(), jobmaster);
    assert!(report.kept.contains(&out.join(JOBMASTER_CERT)));
    assert!(!report.written.contains(&out.join(CA_CERT)));
    let ca_der = der(&out.join(CA_CERT));
    let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
    let tm3_der = der(&out.join("executor-tm-3.pem"));
    let (_, tm3) = X509Certificate::from_der(&tm3_der).unwrap();
    tm3.verify_signature(Some(ca_cert.public_key())).unwrap();
    assert_eq!(tm3.issuer(), ca_cert.subject());

    // An executor again: refused, nothing written.
    let err = generate(&options(&dir.0, &["tm-4", "tm-1"])).unwrap_err();
    assert!(matches!(&err, CertsError::Exists { path } if path.ends_with("executor-tm-1.pem")));
    assert!(err.to_string().contains("--force"), "{err}");
    assert!(!out.join("executor-tm-4.pem").exists());
    assert_eq!(fs::read(out.join("executor-tm-1.pem")).unwrap(), tm1);

    // Naming hosts asks for a new JobMaster certificate: refused too.
    let hosts = CertsOptions {
        hosts: vec!["jm.example.com".into()],
        ..options(&dir.0, &[])
    };
    assert!(
        matches!(generate(&hosts), Err(CertsError::Exists { path }) if path.ends_with(JOBMASTER_CERT))
    );

    // Another operator name asks for a new operator certificate: refused too.
    let renamed = CertsOptions {
        operator_name: "alice".into(),
        ..options(&dir.0, &[])
    };
    assert!(
        matches!(generate(&renamed), Err(CertsError::Exists { path }) if path.ends_with(OPERATOR_CERT))
    );

    // With --force: reissued, by the same CA, still private.
    let forced = CertsOptions {
        force: true,
        ..options(&dir.0, &["tm-1"])
    };
    generate(&forced).unwrap();
    assert_ne!(fs::read(out.join("executor-tm-1.pem")).unwrap(), tm1);
    assert_eq!(fs::read(out.join(CA_CERT)).unwrap(), ca);
    assert_eq!(mode(&out.join("executor-tm-1-key.pem")), 0o600);
    let leftovers: Vec<_> = fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_ca_with_a_missing_or_foreign_key_is_refused() {
    let dir = TempDir::new("badca");
    let opts = options(&dir.0, &["tm-1"]);
    generate(&opts).unwrap();
    let out = &opts.out;
    let other = TempDir::new("otherca");
    let other_opts = options(&other.0, &[]);
    generate(&other_opts).unwrap();
    fs::copy(other_opts.out.join(CA_KEY), out.join(CA_KEY)).unwrap();
    let again = options(&dir.0, &["tm-2"]);
    let err = generate(&again).unwrap_err();
    assert!(matches!(err, CertsError::BadCa { .. }), "{err}");
    assert!(err.to_string().contains("is not the key of"), "{err}");
    fs::remove_file(out.join(CA_KEY)).unwrap();
    let err = generate(&again).unwrap_err();
    assert!(matches!(err, CertsError::IncompleteCa { .. }), "{err}");
    assert!(!out.join("executor-tm-2.pem").exists());
}

#[test]
fn bad_ids_names_hosts_and_days_are_refused_before_anything_is_written() {
    let dir = TempDir::new("bad");
    for id in ["", "a/b", "../x", "..", "tm 1", "é", &"x".repeat(129)] {
        let err = generate(&options(&dir.0, &[id])).unwrap_err();
        assert!(
            matches!(err, CertsError::BadExecutorId { .. }),
            "{id:?}: {err}"
        );
    }
    check_executor_id(&"x".repeat(128)).unwrap();
    check_executor_id("worker-1.zone_a").unwrap();
    let bad_name = CertsOptions {
        operator_name: "al ice".into(),
        ..options(&dir.0, &["tm-1"])
    };
    assert!(matches!(
        generate(&bad_name),
        Err(CertsError::BadName { .. })
    ));
    for host in ["", "bad host", "-x.com", "a..b"] {
        let bad_host = CertsOptions {
            hosts: vec![host.into()],
            ..options(&dir.0, &["tm-1"])
        };
        assert!(
            matches!(generate(&bad_host), Err(CertsError::BadHost { .. })),
            "{host:?}"
        );
    }
    for days in [0, MAX_DAYS + 1] {
        let bad_days = CertsOptions {
            days,
            ..options(&dir.0, &["tm-1"])
        };
        assert!(matches!(
            generate(&bad_days),
            Err(CertsError::BadDays { .. })
        ));
    }
    assert!(!dir.0.exists(), "a refused run wrote something");
}

#[test]
fn tokens_are_random_and_their_hash_is_stable() {
    let token = new_token();
    assert!(token.starts_with(TOKEN_PREFIX));
    let hex_part = &token[TOKEN_PREFIX.len()..];
    assert_eq!(hex_part.len(), 64);
    assert!(
        hex_part
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_ne!(new_token(), token);

    assert_eq!(hash_token(&token), hash_token(&token));
    // SHA-256("abc"), the FIPS 180-2 test vector.
    assert_eq!(
        hash_token("abc"),
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );

    let line = token_line(Role::Viewer, "alice", &token);
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields.len(), 3, "{line}");
    assert_eq!(fields[0].parse::<Role>(), Ok(Role::Viewer));
    assert_eq!(fields[1], "alice");
    let digest = fields[2].strip_prefix("sha256:").unwrap();
    assert_eq!(digest.len(), 64);
    assert!(
        digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_eq!(fields[2], hash_token(&token));
}
