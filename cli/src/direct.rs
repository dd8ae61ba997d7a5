//! Direct connections to each node (not through a quorum), for the
//! commands that look at the servers themselves: `nodes` and `list`.

use std::time::Duration;

use quorate_redlock::fred::clients::Client;
use quorate_redlock::fred::prelude::{ClientLike, Config, ConnectionConfig};
use quorate_redlock::FredSettings;

/// How long a node gets to connect and to answer one command.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(2);

/// A connected client of the node at `url` (with the TLS settings given,
/// for `rediss://`), or why not.
pub(crate) async fn connect(url: &str, settings: &FredSettings) -> Result<Client, String> {
    // never plaintext where TLS was asked for (fred without TLS would connect anyway)
    #[cfg(not(feature = "tls"))]
    if ["rediss", "valkeys"].iter().any(|scheme| {
        url.starts_with(&format!("{scheme}:")) || url.starts_with(&format!("{scheme}-"))
    }) {
        return Err(
            "asks for TLS, but this quorate was built without TLS: install it with \
             `cargo install quorate-cli --features tls`"
                .to_owned(),
        );
    }
    #[allow(unused_mut)] // set only with TLS
    let mut config = Config::from_url(url).map_err(|e| e.details().to_owned())?;
    #[cfg(feature = "tls")]
    if let (Some(tls), Some(_)) = (settings.get_tls(), &config.tls) {
        config.tls = Some(tls.clone());
    }
    #[cfg(not(feature = "tls"))]
    let _ = settings;
    let connection = ConnectionConfig {
        connection_timeout: TIMEOUT,
        internal_command_timeout: TIMEOUT,
        max_command_attempts: 1,
        ..ConnectionConfig::default()
    };
    let client = Client::new(config, None, Some(connection), None);
    match tokio::time::timeout(TIMEOUT, client.init()).await {
        Ok(Ok(_task)) => Ok(client),
        Ok(Err(e)) => Err(e.details().to_owned()),
        Err(_) => Err(format!("no answer within {TIMEOUT:?}")),
    }
}

/// The URL without its password.
pub(crate) fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}
