//! Safe defaults: a server on a non-loopback address must not be open to the network. It
//! needs TLS (with which every caller authenticates), or the operator's explicit
//! `--insecure`, which is then logged loudly.

use std::net::SocketAddr;

use tracing::warn;

/// A listen address the network could reach, without protection.
#[derive(Debug, thiserror::Error)]
#[error(
    "refusing to listen on {address} ({keys}) in plain text: anyone who reaches it could run \
     commands on every executor. Configure TLS (tls.ca, tls.cert, tls.key or --tls-ca, \
     --tls-cert, --tls-key; `jobmaster certs` creates them), listen on a loopback address, or \
     pass --insecure if the network is trusted"
)]
pub struct Exposed {
    pub address: SocketAddr,
    pub keys: &'static str,
}

/// Checks the addresses a server listens on; `keys` names the settings they come from.
pub fn check(
    addresses: &[SocketAddr],
    tls: bool,
    insecure: bool,
    keys: &'static str,
) -> Result<(), Exposed> {
    if tls {
        return Ok(());
    }
    let Some(exposed) = addresses.iter().find(|a| !a.ip().is_loopback()) else {
        return Ok(());
    };
    if insecure {
        warn!(
            address = %exposed,
            "INSECURE: listening on a non-loopback address without TLS or authentication; \
             anyone who reaches it can run commands on every executor"
        );
        return Ok(());
    }
    Err(Exposed {
        address: *exposed,
        keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_or_tls_or_insecure_may_listen() {
        let lo: SocketAddr = "127.0.0.1:6123".parse().expect("addr");
        let v6: SocketAddr = "[::1]:6123".parse().expect("addr");
        let any: SocketAddr = "0.0.0.0:6123".parse().expect("addr");
        assert!(check(&[lo, v6], false, false, "k").is_ok());
        let refused = check(&[lo, any], false, false, "server.listen").expect_err("exposed");
        assert_eq!(refused.address, any);
        assert!(refused.to_string().contains("--insecure"));
        assert!(check(&[any], true, false, "k").is_ok());
        assert!(check(&[any], false, true, "k").is_ok());
    }
}
