//! One configuration for a client: from code, from the environment
//! (`QUORATE_NODES` and friends), or from an application's config file
//! (`Deserialize` with the `serde` feature).

use std::time::Duration;

use crate::backend::quarantine::DEFAULT_MAX_TTL;
use crate::backend::FredSettings;
use crate::client::Redlock;
use crate::connect_error::ConnectError;
use crate::error::ConfigError;
use crate::mutex::{default_options, RedlockBuilder};

/// Everything a [`Redlock`] is built from that fits in a config file or the
/// environment. Unset fields keep the library's defaults; what does not fit
/// in text (TLS certificates, own fred clients, custom nodes) goes on the
/// [`builder`](Self::builder) this returns.
///
/// From the environment ([`from_env`](Self::from_env)): `QUORATE_NODES`
/// (comma-separated URLs), `QUORATE_NAMESPACE`, `QUORATE_OWNER`,
/// `QUORATE_MAX_TTL`, `QUORATE_TTL`, `QUORATE_ACQUIRE_TIMEOUT`,
/// `QUORATE_CONNECTION_TIMEOUT` (durations as `500ms`, `30s`, `1m30s`),
/// `QUORATE_FAIR`, `QUORATE_AUTO_EXTEND`, `QUORATE_FENCING`, `QUORATE_LAZY`
/// (`true`/`false`/`1`/`0`). The same names, lower case and without the
/// prefix, are the fields of a config file with the `serde` feature:
///
/// ```
/// # #[cfg(feature = "serde")]
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use quorate_redlock::RedlockConfig;
/// // e.g. a [locks] table of the application's TOML, or JSON as here
/// let config: RedlockConfig = serde_json::from_str(r#"{
///     "nodes": ["redis://10.0.0.1:6379", "redis://10.0.0.2:6379", "redis://10.0.0.3:6379"],
///     "namespace": "billing:lock:",
///     "max_ttl": "30s",
///     "fair": true
/// }"#)?;
/// assert_eq!(config.max_ttl, Some(std::time::Duration::from_secs(30)));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct RedlockConfig {
    /// The nodes' URLs ([`RedlockBuilder::url`]). Default: none (building fails).
    pub nodes: Vec<String>,
    /// The key prefix of every primitive ([`RedlockBuilder::namespace`]). Default: none.
    pub namespace: String,
    /// This client's label ([`RedlockBuilder::owner`]). Default: none.
    pub owner: Option<String>,
    /// [`RedlockBuilder::max_ttl`]. Default: 60 s.
    #[cfg_attr(feature = "serde", serde(with = "duration_text"))]
    pub max_ttl: Option<Duration>,
    /// The default lock ttl ([`LockOptions::ttl`](crate::LockOptions::ttl)). Default: 10 s, or
    /// `max_ttl` when that is shorter.
    #[cfg_attr(feature = "serde", serde(with = "duration_text"))]
    pub ttl: Option<Duration>,
    /// How long `lock` waits ([`LockOptions::acquire_timeout`](crate::LockOptions::acquire_timeout)). Default: 10 s.
    #[cfg_attr(feature = "serde", serde(with = "duration_text"))]
    pub acquire_timeout: Option<Duration>,
    /// Strict first-come-first-served ([`LockOptions::fair`](crate::LockOptions::fair)). Default: `false`.
    pub fair: bool,
    /// Locks extend themselves ([`LockOptions::auto_extend`](crate::LockOptions::auto_extend)). Default: `false`.
    pub auto_extend: bool,
    /// Fencing tokens ([`LockOptions::fencing`](crate::LockOptions::fencing)). Default: `false`.
    pub fencing: bool,
    /// Start without waiting for the nodes ([`RedlockBuilder::lazy`]). Default: `false`.
    pub lazy: bool,
    /// [`FredSettings::connection_timeout`]. Default: 1 s.
    #[cfg_attr(feature = "serde", serde(with = "duration_text"))]
    pub connection_timeout: Option<Duration>,
}

impl RedlockConfig {
    /// The configuration in the process's environment (see [`RedlockConfig`]
    /// for the variables); unset variables keep the defaults.
    ///
    /// Errors: [`ConfigError::BadSetting`] naming the variable and its value.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use quorate_redlock::{Redlock, RedlockConfig};
    /// // QUORATE_NODES=redis://10.0.0.1:6379,redis://10.0.0.2:6379,redis://10.0.0.3:6379
    /// let redlock = Redlock::from_config(&RedlockConfig::from_env()?).await?;
    /// # Ok(()) }
    /// ```
    pub fn from_env() -> Result<RedlockConfig, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// The configuration in `vars` (name, value pairs, as
    /// [`from_env`](Self::from_env) reads them from the environment);
    /// names other than the `QUORATE_` settings are ignored.
    ///
    /// ```
    /// use std::time::Duration;
    /// use quorate_redlock::RedlockConfig;
    ///
    /// let config = RedlockConfig::from_vars([
    ///     ("QUORATE_NODES", "redis://a:6379, redis://b:6379,redis://c:6379"),
    ///     ("QUORATE_MAX_TTL", "1m30s"),
    ///     ("QUORATE_FAIR", "true"),
    ///     ("HOME", "/root"),
    /// ])?;
    /// assert_eq!(config.nodes.len(), 3);
    /// assert_eq!(config.max_ttl, Some(Duration::from_secs(90)));
    /// assert!(config.fair);
    /// # Ok::<(), quorate_redlock::ConfigError>(())
    /// ```
    pub fn from_vars<I, K, V>(vars: I) -> Result<RedlockConfig, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut config = RedlockConfig::default();
        for (name, value) in vars {
            let (name, value) = (name.as_ref(), value.as_ref());
            let duration = || parse_duration(value).map_err(|reason| bad(name, value, reason));
            let flag = || parse_flag(value).map_err(|reason| bad(name, value, reason));
            match name {
                "QUORATE_NODES" => {
                    config.nodes = value
                        .split(',')
                        .map(str::trim)
                        .filter(|url| !url.is_empty())
                        .map(str::to_owned)
                        .collect();
                }
                "QUORATE_NAMESPACE" => config.namespace = value.to_owned(),
                "QUORATE_OWNER" => config.owner = Some(value.to_owned()),
                "QUORATE_MAX_TTL" => config.max_ttl = Some(duration()?),
                "QUORATE_TTL" => config.ttl = Some(duration()?),
                "QUORATE_ACQUIRE_TIMEOUT" => config.acquire_timeout = Some(duration()?),
                "QUORATE_CONNECTION_TIMEOUT" => config.connection_timeout = Some(duration()?),
                "QUORATE_FAIR" => config.fair = flag()?,
                "QUORATE_AUTO_EXTEND" => config.auto_extend = flag()?,
                "QUORATE_FENCING" => config.fencing = flag()?,
                "QUORATE_LAZY" => config.lazy = flag()?,
                _ => {}
            }
        }
        Ok(config)
    }

    /// A builder with everything in this configuration, for what does not
    /// fit in text (e.g. `FredSettings::tls` with the `tls` feature)
    /// before [`build`](RedlockBuilder::build).
    pub fn builder(&self) -> RedlockBuilder {
        let mut builder = Redlock::builder()
            .urls(&self.nodes)
            .namespace(self.namespace.clone())
            .lazy(self.lazy);
        if let Some(owner) = &self.owner {
            builder = builder.owner(owner.clone());
        }
        if let Some(max_ttl) = self.max_ttl {
            builder = builder.max_ttl(max_ttl);
        }
        if let Some(timeout) = self.connection_timeout {
            builder = builder.fred_settings(FredSettings::default().connection_timeout(timeout));
        }
        // the builder's own defaults (the ttl no longer than max_ttl), then ours
        let mut defaults = default_options(self.max_ttl.unwrap_or(DEFAULT_MAX_TTL))
            .fair(self.fair)
            .auto_extend(self.auto_extend)
            .fencing(self.fencing);
        if let Some(ttl) = self.ttl {
            defaults = defaults.ttl(ttl);
        }
        if let Some(timeout) = self.acquire_timeout {
            defaults = defaults.acquire_timeout(Some(timeout));
        }
        builder.defaults(defaults)
    }
}

impl Redlock {
    /// Connects as `config` says ([`RedlockConfig::builder`], then
    /// [`build`](RedlockBuilder::build)).
    ///
    /// # Cancel safety
    /// Cancel safe, as [`RedlockBuilder::build`].
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), quorate_redlock::ConnectError> {
    /// use quorate_redlock::{Redlock, RedlockConfig};
    /// let redlock = Redlock::from_config(&RedlockConfig::from_env()?).await?;
    /// # Ok(()) }
    /// ```
    pub async fn from_config(config: &RedlockConfig) -> Result<Redlock, ConnectError> {
        config.builder().build().await
    }
}

fn bad(name: &str, value: &str, reason: String) -> ConfigError {
    ConfigError::BadSetting {
        name: name.to_owned(),
        value: value.to_owned(),
        reason,
    }
}

/// `500ms`, `30s`, `1m30s`, `2h` (humantime's syntax).
fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("not a duration ({e}; e.g. 500ms, 30s, 1m30s)"))
}

fn parse_flag(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err("not a flag (true or false)".to_owned()),
    }
}

/// Durations in config files as text: `"30s"`, `"1m30s"`.
#[cfg(feature = "serde")]
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D>(deserializer: D) -> Result<Option<Duration>, D::Error>
    where
        D: Deserializer<'de>,
    {
        let text = Option::<String>::deserialize(deserializer)?;
        text.map(|text| super::parse_duration(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_name_the_variable_and_value() {
        let err = RedlockConfig::from_vars([("QUORATE_TTL", "soon")]).expect_err("bad ttl");
        assert!(
            matches!(&err, ConfigError::BadSetting { name, value, .. }
                if name == "QUORATE_TTL" && value == "soon"),
            "{err}"
        );
        let err = RedlockConfig::from_vars([("QUORATE_FAIR", "maybe")]).expect_err("bad flag");
        assert!(err.to_string().contains("QUORATE_FAIR"), "{err}");
    }

    #[test]
    fn every_variable_reaches_its_field() {
        let config = RedlockConfig::from_vars([
            ("QUORATE_NODES", "redis://a:1,,redis://b:2 "),
            ("QUORATE_NAMESPACE", "app:"),
            ("QUORATE_OWNER", "worker-3"),
            ("QUORATE_MAX_TTL", "2m"),
            ("QUORATE_TTL", "20s"),
            ("QUORATE_ACQUIRE_TIMEOUT", "500ms"),
            ("QUORATE_CONNECTION_TIMEOUT", "2s"),
            ("QUORATE_FAIR", "1"),
            ("QUORATE_AUTO_EXTEND", "yes"),
            ("QUORATE_FENCING", "true"),
            ("QUORATE_LAZY", "on"),
        ])
        .expect("valid");
        let mut want = RedlockConfig {
            nodes: vec!["redis://a:1".into(), "redis://b:2".into()],
            namespace: "app:".into(),
            owner: Some("worker-3".into()),
            ..RedlockConfig::default()
        };
        want.max_ttl = Some(Duration::from_secs(120));
        want.ttl = Some(Duration::from_secs(20));
        want.acquire_timeout = Some(Duration::from_millis(500));
        want.connection_timeout = Some(Duration::from_secs(2));
        (want.fair, want.auto_extend, want.fencing, want.lazy) = (true, true, true, true);
        assert_eq!(config, want);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn a_config_file_reads_durations_as_text_and_refuses_unknown_fields() {
        let config: RedlockConfig =
            serde_json::from_str(r#"{"nodes": ["redis://a:1"], "ttl": "1m30s"}"#).expect("json");
        assert_eq!(config.ttl, Some(Duration::from_secs(90)));
        assert_eq!(config.max_ttl, None);
        let typo = serde_json::from_str::<RedlockConfig>(r#"{"node": ["redis://a:1"]}"#);
        assert!(typo
            .expect_err("typo")
            .to_string()
            .contains("unknown field `node`"));
        let bad = serde_json::from_str::<RedlockConfig>(r#"{"ttl": "soon"}"#);
        assert!(bad.expect_err("bad").to_string().contains("not a duration"));
    }
}
