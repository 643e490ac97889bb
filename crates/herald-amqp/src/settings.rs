//! `AmqpSettings`: how to reach RabbitMQ (or which embedded broker to use instead) and how hard
//! to push it. Parses the URL into a
//! `BrokerAddress` that is safe to log (`host:port` and vhost, never the credentials). Layering
//! (defaults < file < env < flags) belongs to each binary's config, not here.

use std::{str::FromStr, time::Duration};

use herald_core::Secret;
use lapin::uri::AMQPUri;
use serde::Deserialize;
use url::{Host, Url};

use crate::{AmqpError, EmbeddedBroker};

/// The default broker URL (`HERALD_AMQP_URL`): local RabbitMQ, default vhost.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// How to connect to RabbitMQ, and the per-connection limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmqpSettings {
    /// `amqp://user:password@host:port/vhost`; a secret because of the password. Several
    /// comma-separated URLs name the nodes of one cluster: `connect` takes the first that
    /// answers, in the order given.
    pub url: Secret,
    /// Unacked deliveries per consumer (`basic.qos`).
    pub prefetch: u16,
    /// Published messages awaiting a broker confirm, per publisher; `publish` waits when full.
    pub confirm_window: usize,
    /// Heartbeat interval asked of the broker; 0 disables heartbeats.
    pub heartbeat_secs: u16,
    /// Shown in the RabbitMQ management UI next to the connection.
    pub connection_name: String,
    /// Connection attempts before `connect` gives up (at least 1).
    pub connect_attempts: u32,
    /// Delay before the second attempt; it doubles up to `connect_backoff_max_ms`.
    pub connect_backoff_ms: u64,
    /// Longest delay between two attempts.
    pub connect_backoff_max_ms: u64,
    /// Longest time one attempt (TCP + AMQP handshake) may take.
    pub connect_timeout_ms: u64,
    /// An in-process broker to use instead of RabbitMQ (`herald run`, `herald demo`, pipeline
    /// tests): `connect` then returns a connection to it and `url` is not used. Never read from
    /// a file or the environment.
    #[serde(skip)]
    pub embedded: Option<EmbeddedBroker>,
}

impl Default for AmqpSettings {
    fn default() -> Self {
        Self {
            url: Secret::new(DEFAULT_AMQP_URL),
            prefetch: 64,
            confirm_window: 1024,
            heartbeat_secs: 30,
            connection_name: "herald".to_owned(),
            connect_attempts: 5,
            connect_backoff_ms: 250,
            connect_backoff_max_ms: 5_000,
            connect_timeout_ms: 10_000,
            embedded: None,
        }
    }
}

impl AmqpSettings {
    /// Default settings over `broker` instead of RabbitMQ.
    pub fn embedded(broker: &EmbeddedBroker) -> Self {
        Self {
            embedded: Some(broker.clone()),
            connection_name: "herald (embedded)".to_owned(),
            ..Self::default()
        }
    }

    /// Every problem at once, each naming its field; the URL itself is never echoed.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.embedded.is_none()
            && let Err(error) = self.lapin_uris()
        {
            problems.push(format!("amqp.url: {error}"));
        }
        if self.prefetch == 0 {
            problems.push("amqp.prefetch: must be at least 1 (0 means unbounded)".to_owned());
        }
        if self.confirm_window == 0 || self.confirm_window > tokio::sync::Semaphore::MAX_PERMITS {
            problems.push("amqp.confirm_window: must be at least 1".to_owned());
        }
        if self.connect_attempts == 0 {
            problems.push("amqp.connect_attempts: must be at least 1".to_owned());
        }
        if self.connect_timeout_ms == 0 {
            problems.push("amqp.connect_timeout_ms: must be at least 1".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Where the (first) URL points, safe to log.
    pub fn address(&self) -> Result<BrokerAddress, AmqpError> {
        let (address, _) = self.lapin_uris()?.swap_remove(0);
        Ok(address)
    }

    /// Every URL as lapin wants it, in the order given, with our heartbeat and the literal host
    /// (see `parse`). At least one, or an error.
    pub(crate) fn lapin_uris(&self) -> Result<Vec<(BrokerAddress, AMQPUri)>, AmqpError> {
        let uris = self
            .url
            .expose()
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(|url| {
                let (address, mut uri) = parse(url)?;
                uri.query.heartbeat = Some(self.heartbeat_secs);
                Ok((address, uri))
            })
            .collect::<Result<Vec<_>, AmqpError>>()?;
        if uris.is_empty() {
            return Err(AmqpError::InvalidUrl {
                url: String::new(),
                reason: "no URL given".to_owned(),
            });
        }
        Ok(uris)
    }

    /// The per-attempt connection timeout.
    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

/// A broker location without credentials: what logs and errors show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    /// Host name or IP address as written in the URL.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Virtual host, decoded (`/` for `%2f`).
    pub vhost: String,
}

impl BrokerAddress {
    /// `host:port`.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for BrokerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} vhost {:?}", self.host_port(), self.vhost)
    }
}

/// Parses without ever putting the URL in an error: lapin's own parser echoes the whole URL
/// (password included) in some errors. Lapin also maps an IP host to "localhost" (it only reads
/// `Url::domain`), so the literal host is put back.
fn parse(raw: &str) -> Result<(BrokerAddress, AMQPUri), AmqpError> {
    let invalid = |reason: &str| AmqpError::InvalidUrl {
        url: herald_core::redact::redact_url(raw),
        reason: reason.to_owned(),
    };
    let url = Url::parse(raw).map_err(|error| invalid(&error.to_string()))?;
    if !matches!(url.scheme(), "amqp" | "amqps") {
        return Err(invalid("the scheme must be amqp:// or amqps://"));
    }
    let host = match url.host() {
        Some(Host::Domain(domain)) => domain.to_owned(),
        Some(Host::Ipv4(ip)) => ip.to_string(),
        Some(Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(invalid("it has no host")),
    };
    let mut uri = AMQPUri::from_str(raw).map_err(|_| invalid("lapin cannot parse it"))?;
    uri.authority.host = host.clone();
    let address = BrokerAddress {
        host,
        port: uri.authority.port,
        vhost: uri.vhost.clone(),
    };
    Ok((address, uri))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> AmqpSettings {
        AmqpSettings {
            url: Secret::new(url),
            ..AmqpSettings::default()
        }
    }

    #[test]
    fn addresses_never_show_credentials() {
        let check = |url: &str, host_port: &str, vhost: &str| {
            let address = settings(url).address().unwrap();
            assert_eq!(address.host_port(), host_port, "{url}");
            assert_eq!(address.vhost, vhost, "{url}");
            assert!(!address.to_string().contains("s3cret"), "{address}");
        };
        check(DEFAULT_AMQP_URL, "127.0.0.1:5672", "/");
        check(
            "amqp://u:s3cret@rabbit.internal:5673/herald",
            "rabbit.internal:5673",
            "herald",
        );
        check("amqps://u:s3cret@[::1]/%2f", "[::1]:5671", "/");
        check("amqp://127.0.0.1", "127.0.0.1:5672", "/");
    }

    #[test]
    fn lapin_gets_the_literal_ip_host_and_our_heartbeat() {
        let (_, uri) = settings(DEFAULT_AMQP_URL).lapin_uris().unwrap().remove(0);
        assert_eq!(uri.authority.host, "127.0.0.1");
        assert_eq!(uri.query.heartbeat, Some(30));
    }

    #[test]
    fn a_list_of_urls_names_the_nodes_in_order_and_each_is_checked() {
        let nodes = settings(
            "amqp://u:s3cret@10.0.0.1:5672/%2f, amqp://u:s3cret@10.0.0.2:5672/%2f,\
             amqp://u:s3cret@rabbit-3/%2f,",
        );
        let hosts: Vec<String> = nodes
            .lapin_uris()
            .unwrap()
            .iter()
            .map(|(address, _)| address.host_port())
            .collect();
        assert_eq!(hosts, ["10.0.0.1:5672", "10.0.0.2:5672", "rabbit-3:5672"]);
        assert_eq!(nodes.address().unwrap().host_port(), "10.0.0.1:5672");
        let one_bad = settings("amqp://u:s3cret@10.0.0.1/%2f,http://u:s3cret@h/");
        let problems = one_bad.validate().unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(!problems[0].contains("s3cret"), "{problems:?}");
        assert!(settings(" , ").validate().is_err());
    }

    #[test]
    fn bad_urls_are_rejected_without_echoing_them() {
        for url in [
            "http://u:s3cret@host/",
            "amqp://u:s3cret@/",
            "not a url s3cret",
            "amqp://u:s3cret@h:99999/",
        ] {
            let error = settings(url).address().unwrap_err();
            assert!(
                matches!(error, AmqpError::InvalidUrl { .. }),
                "{url}: {error:?}"
            );
            assert!(
                !format!("{error} {error:?}").contains("s3cret"),
                "{url}: {error}"
            );
            if url.contains('@') {
                assert!(format!("{error}").contains("u:***@"), "{error}");
            }
        }
    }

    #[test]
    fn validate_lists_every_problem() {
        let bad = AmqpSettings {
            url: Secret::new("ftp://x"),
            prefetch: 0,
            confirm_window: 0,
            connect_attempts: 0,
            connect_timeout_ms: 0,
            ..AmqpSettings::default()
        };
        assert_eq!(bad.validate().unwrap_err().len(), 5);
        assert_eq!(AmqpSettings::default().validate(), Ok(()));
        assert!(!format!("{:?}", AmqpSettings::default()).contains("guest:guest"));
    }
}
