//! Runs a jmctl command at the leader among the JobMasters of `--endpoint URL[,URL…]`: the
//! endpoints are tried in order; one that cannot be reached (connection refused, timeout) or a
//! standby that knows no leader sends the command to the next; a standby that names the
//! leader (`jobmaster-leader`) has the command repeated once there, in or out of the list;
//! when that named leader cannot be reached from here (say, its advertised address is a host
//! name of a container network, and jmctl runs on the host through published ports), the next
//! endpoints of the list are tried, one of which may be the leader under another address.
//! Only a command's first call is followed: a streaming command (`watch`, `logs`) picks its
//! JobMaster when it starts, and a command that already did something at one is not repeated.

use super::{Client, Connection, CtlError, Setup};
use crate::api::leader::{Hint, endpoints};

/// What one endpoint said, for the error when none leads.
struct Tried {
    endpoint: String,
    said: String,
}

/// Runs `command` at the leader among `c.endpoint`'s JobMasters (see the module's comment).
/// Input errors (a bad URL, TLS files or a token that do not fit an endpoint) are found before
/// any connection is made.
pub async fn call<T>(
    c: &Connection<'_>,
    mut command: impl AsyncFnMut(&mut Client) -> Result<T, CtlError>,
) -> Result<T, CtlError> {
    let list = endpoints(c.endpoint).map_err(|e| CtlError::input(format!("--endpoint: {e}")))?;
    let setup = Setup::new(c)?;
    for endpoint in &list {
        setup.check(endpoint)?;
    }
    let mut tried: Vec<Tried> = Vec::new();
    for (i, endpoint) in list.iter().enumerate() {
        let last = i + 1 == list.len();
        let mut client = match setup.connect(endpoint).await {
            Ok(client) => client,
            Err(unreached) if list.len() == 1 => {
                // As without HA: one endpoint, one plain message.
                return Err(CtlError::new(
                    1,
                    format!(
                        "cannot connect to the jobmaster at {endpoint}: {}",
                        unreached.why
                    ),
                ));
            }
            Err(unreached) => {
                tried.push(Tried {
                    endpoint: endpoint.clone(),
                    said: if unreached.refused {
                        "refused the connection".to_owned()
                    } else {
                        format!("cannot be reached ({})", unreached.why)
                    },
                });
                continue;
            }
        };
        let error = match command(&mut client).await {
            Ok(done) => return Ok(done),
            Err(error) => error,
        };
        match error.standby {
            None => return Err(error),
            Some(Hint::Leader(leader)) => {
                match at_leader(&setup, endpoint, &leader, &mut command).await {
                    // Nothing ran at the named leader: the rest of the list may hold it.
                    Err(AtLeader::Unreached(_)) if !last => tried.push(Tried {
                        endpoint: endpoint.clone(),
                        said: format!(
                            "is a standby naming {leader}, which cannot be reached from here"
                        ),
                    }),
                    Err(AtLeader::Unreached(error) | AtLeader::Failed(error)) => return Err(error),
                    Ok(done) => return Ok(done),
                }
            }
            Some(Hint::NoLeader) => tried.push(Tried {
                endpoint: endpoint.clone(),
                said: "is a standby and no leader is elected".to_owned(),
            }),
            Some(Hint::Unusable(value)) => tried.push(Tried {
                endpoint: endpoint.clone(),
                said: format!("is a standby naming a leader that is no URL ({value:?})"),
            }),
        }
    }
    Err(none_leads(&list, &tried))
}

/// Why [`at_leader`] failed.
enum AtLeader {
    /// The named leader could not be connected to: the command did not run there.
    Unreached(CtlError),
    /// Anything else (the command's own error included).
    Failed(CtlError),
}

/// Repeats `command` once at `leader`, which the standby at `standby` named.
async fn at_leader<T>(
    setup: &Setup,
    standby: &str,
    leader: &str,
    command: &mut impl AsyncFnMut(&mut Client) -> Result<T, CtlError>,
) -> Result<T, AtLeader> {
    let named = format!("{standby} is a standby and names {leader} as the leader");
    if let Err(e) = setup.check(leader) {
        return Err(AtLeader::Failed(CtlError::new(
            1,
            format!("{named}, which jmctl cannot use: {}", e.message),
        )));
    }
    let mut client = setup.connect(leader).await.map_err(|e| {
        AtLeader::Unreached(CtlError::new(
            1,
            format!(
                "{named}, but it cannot be reached: {} (the lead may be changing hands: retry, \
                 or check that its address is reachable from here)",
                e.why
            ),
        ))
    })?;
    command(&mut client).await.map_err(|e| {
        AtLeader::Failed(match e.standby {
            Some(_) => CtlError::new(
                1,
                format!(
                    "{named}, but it answers as a standby too (the lead is changing hands): retry \
                 in a moment"
                ),
            ),
            None => e,
        })
    })
}

/// The error when no endpoint of `list` leads: what each said, and what to do.
fn none_leads(list: &[String], tried: &[Tried]) -> CtlError {
    let said: Vec<String> = tried
        .iter()
        .map(|t| format!("{} {}", t.endpoint, t.said))
        .collect();
    let all_standbys = !tried.is_empty() && tried.iter().all(|t| t.said.starts_with("is a"));
    let fix = if all_standbys {
        "wait for an election, or check the jobmasters' connection to etcd"
    } else {
        "start a jobmaster, or give the right addresses with --endpoint or JOBMASTER_ENDPOINT"
    };
    CtlError::new(
        1,
        format!(
            "no jobmaster of {} answers as leader: {}; {fix}",
            list.join(", "),
            said.join("; ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_when_none_leads_lists_what_each_endpoint_said_and_what_to_fix() {
        let list = vec!["http://a:1".to_owned(), "http://b:2".to_owned()];
        let e = none_leads(
            &list,
            &[
                Tried {
                    endpoint: "http://a:1".into(),
                    said: "refused the connection".into(),
                },
                Tried {
                    endpoint: "http://b:2".into(),
                    said: "is a standby and no leader is elected".into(),
                },
            ],
        );
        assert_eq!(e.code, 1);
        assert_eq!(
            e.message,
            "no jobmaster of http://a:1, http://b:2 answers as leader: http://a:1 refused the \
             connection; http://b:2 is a standby and no leader is elected; start a jobmaster, or \
             give the right addresses with --endpoint or JOBMASTER_ENDPOINT"
        );
        let e = none_leads(
            &list[1..],
            &[Tried {
                endpoint: "http://b:2".into(),
                said: "is a standby and no leader is elected".into(),
            }],
        );
        assert!(
            e.message
                .ends_with("wait for an election, or check the jobmasters' connection to etcd"),
            "{}",
            e.message
        );
    }

    #[tokio::test]
    async fn a_bad_list_is_a_usage_error_before_any_connection() {
        for endpoint in ["", "http://127.0.0.1:1,,http://127.0.0.1:2", "127.0.0.1:1"] {
            let c = Connection {
                endpoint,
                tls: None,
                token: None,
            };
            let Err(e) = call(&c, async |_: &mut Client| Ok(())).await else {
                panic!("{endpoint:?} must be refused");
            };
            assert_eq!(e.code, 2, "{endpoint:?}: {}", e.message);
            assert!(e.message.starts_with("--endpoint: "), "{}", e.message);
        }
    }
}
