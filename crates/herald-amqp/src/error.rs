//! `AmqpError`: every broker failure, classified where it happens. Lapin errors keep lapin's own
//! classification (`can_be_recovered`, io vs soft vs hard protocol errors) instead of a parallel
//! one. No variant ever holds the broker URL: it may carry a password.

use lapin::{
    ErrorKind,
    protocol::{AMQPErrorKind, AMQPSoftError},
};

/// A failure talking to RabbitMQ.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    /// The broker could not be reached (or refused us) after every attempt.
    #[error(
        "could not connect to RabbitMQ at {address} (vhost {vhost:?}) after {attempts} attempt(s); \
         is RabbitMQ running on {address}? `bash scripts/services.sh rabbitmq` starts it"
    )]
    Connect {
        /// `host:port`, never the URL (it may hold a password).
        address: String,
        /// The virtual host we asked for.
        vhost: String,
        /// How many connection attempts were made.
        attempts: u32,
        /// The last attempt's error.
        #[source]
        source: Box<lapin::Error>,
    },

    /// The broker answered but refused us: wrong credentials, missing vhost, no permission.
    #[error(
        "RabbitMQ at {address} refused the connection to vhost {vhost:?} ({detail}); check the \
         user, password and vhost in the AMQP URL (HERALD_AMQP_URL)"
    )]
    Refused {
        /// `host:port`.
        address: String,
        /// The virtual host we asked for.
        vhost: String,
        /// The broker's reason (it never contains the password).
        detail: String,
        /// Lapin's error.
        #[source]
        source: Box<lapin::Error>,
    },

    /// One connection attempt took longer than the configured timeout.
    #[error("connecting to RabbitMQ at {address} timed out after {timeout_ms} ms")]
    ConnectTimeout {
        /// `host:port`.
        address: String,
        /// The per-attempt timeout.
        timeout_ms: u64,
    },

    /// The AMQP URL does not parse; it is shown with its password masked.
    #[error("invalid AMQP URL {url}: {reason}")]
    InvalidUrl {
        /// The URL through `herald_core::redact::redact_url`.
        url: String,
        /// What is wrong with it, without echoing it.
        reason: String,
    },

    /// A name (prefix, queue, exchange) cannot be used.
    #[error("invalid AMQP name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why.
        reason: &'static str,
    },

    /// A queue exists with arguments that differ from Herald's declaration.
    #[error(
        "queue '{queue}' already exists with different settings ({detail}); it was probably \
         declared by an older Herald (work queues now carry x-delivery-limit and dead-letter to \
         <prefix>.dead). To migrate: stop its producers, let its consumers drain it, delete it \
         (`rabbitmqctl delete_queue {queue}`) and run `herald topology` again; or fix the \
         configuration so the declarations match"
    )]
    TopologyMismatch {
        /// The queue whose declaration failed.
        queue: String,
        /// The differing argument (`x-queue-type`, `durable`, ...), when the broker named it.
        argument: Option<String>,
        /// The broker's own explanation.
        detail: String,
    },

    /// An exchange exists with a type or arguments that differ from Herald's declaration.
    #[error(
        "exchange '{exchange}' already exists with different settings ({detail}); delete it (the \
         management UI, or `rabbitmqadmin delete exchange name={exchange}`) or fix the configuration"
    )]
    ExchangeMismatch {
        /// The exchange whose declaration failed.
        exchange: String,
        /// The differing argument (`type`, `durable`, ...), when the broker named it.
        argument: Option<String>,
        /// The broker's own explanation.
        detail: String,
    },

    /// A queue that must exist does not; run `herald topology`.
    #[error("queue '{queue}' does not exist; run `herald topology` to declare it")]
    QueueMissing {
        /// The missing queue.
        queue: String,
    },

    /// This broker user may not declare the topology (no configure permission), and part of it
    /// does not exist yet.
    #[error(
        "the broker has no {object} '{name}', and this broker user may not declare it (no \
         configure permission): declare the topology once with `herald topology` as a user \
         that may, e.g. herald-admin in deploy/rabbitmq/definitions.json"
    )]
    TopologyNotDeclared {
        /// `exchange` or `queue`.
        object: &'static str,
        /// The missing exchange or queue.
        name: String,
    },

    /// The broker returned a mandatory message: nothing is bound for its routing key.
    #[error(
        "message to exchange '{exchange}' with routing key '{routing_key}' was unroutable \
         ({reply_code} {reply_text}); is the topology declared?"
    )]
    Returned {
        /// Where it was published.
        exchange: String,
        /// With which routing key.
        routing_key: String,
        /// AMQP reply code (312 NO_ROUTE).
        reply_code: u16,
        /// AMQP reply text.
        reply_text: String,
    },

    /// The broker refused responsibility for the message (a publisher-confirm nack).
    #[error("broker nacked the message to exchange '{exchange}' with routing key '{routing_key}'")]
    Nacked {
        /// Where it was published.
        exchange: String,
        /// With which routing key.
        routing_key: String,
    },

    /// Messages whose confirm nobody awaited failed; reported by `Publisher::flush`.
    #[error(
        "{count} published message(s) failed while nobody awaited their confirm; first: {first}"
    )]
    Unobserved {
        /// How many failed since the last flush.
        count: usize,
        /// The first failure.
        first: Box<AmqpError>,
    },

    /// The publisher's confirm tracking is gone (its channel was closed); republish elsewhere.
    #[error("the publisher is closed; its outcome is unknown, publish again on a new publisher")]
    PublisherClosed,

    /// An ack/nack/reject could not be sent: its channel is gone (the broker will redeliver), its
    /// consumer's ack queue has stopped, or the delivery was already settled.
    #[error(
        "the delivery could not be settled: its channel is closed (the broker redelivers it) or it \
         was already acked"
    )]
    AckUnusable,

    /// Any other broker or client failure, with lapin's error as the source.
    #[error("AMQP {during} failed")]
    Amqp {
        /// What we were doing (`queue.declare`, `basic.publish`, ...).
        during: &'static str,
        /// Lapin's error (boxed: it is large); its classification decides `is_retryable`.
        #[source]
        source: Box<lapin::Error>,
    },
}

impl AmqpError {
    /// Wraps a lapin error with what we were doing.
    pub(crate) fn amqp(during: &'static str) -> impl FnOnce(lapin::Error) -> Self {
        move |source| Self::Amqp {
            during,
            source: Box::new(source),
        }
    }

    /// True when trying again later (possibly on a new connection) may succeed. Lapin errors use
    /// lapin's own `can_be_recovered`.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::ConnectTimeout { .. } => true,
            Self::Nacked { .. } | Self::PublisherClosed => true,
            Self::Unobserved { first, .. } => first.is_retryable(),
            Self::Amqp { source, .. } => source.can_be_recovered() && !is_permanent(source),
            Self::Refused { .. }
            | Self::InvalidUrl { .. }
            | Self::InvalidName { .. }
            | Self::TopologyMismatch { .. }
            | Self::ExchangeMismatch { .. }
            | Self::QueueMissing { .. }
            | Self::TopologyNotDeclared { .. }
            | Self::Returned { .. }
            | Self::AckUnusable => false,
        }
    }

    /// True when the connection itself is gone (io error, missed heartbeats, a connection-level
    /// close from the broker): the caller must reconnect, not just open a new channel.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::ConnectTimeout { .. } => true,
            Self::Unobserved { first, .. } => first.is_connection_lost(),
            Self::Amqp { source, .. } => {
                source.is_io_error()
                    || source.is_amqp_hard_error()
                    || matches!(
                        source.kind(),
                        ErrorKind::MissingHeartbeatError | ErrorKind::InvalidConnectionState(_)
                    )
            }
            Self::Refused { .. }
            | Self::InvalidUrl { .. }
            | Self::InvalidName { .. }
            | Self::TopologyMismatch { .. }
            | Self::ExchangeMismatch { .. }
            | Self::QueueMissing { .. }
            | Self::TopologyNotDeclared { .. }
            | Self::Returned { .. }
            | Self::Nacked { .. }
            | Self::PublisherClosed
            | Self::AckUnusable => false,
        }
    }

    /// Bounded metric label; never the message text.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "connect",
            Self::ConnectTimeout { .. } => "connect_timeout",
            Self::Refused { .. } => "refused",
            Self::InvalidUrl { .. } => "invalid_url",
            Self::InvalidName { .. } => "invalid_name",
            Self::TopologyMismatch { .. } => "topology_mismatch",
            Self::ExchangeMismatch { .. } => "exchange_mismatch",
            Self::QueueMissing { .. } => "queue_missing",
            Self::TopologyNotDeclared { .. } => "topology_not_declared",
            Self::Returned { .. } => "returned",
            Self::Nacked { .. } => "nacked",
            Self::Unobserved { .. } => "unobserved",
            Self::PublisherClosed => "publisher_closed",
            Self::AckUnusable => "ack_unusable",
            Self::Amqp { .. } => "amqp",
        }
    }
}

/// The broker's soft (channel-level) error code and text, if `error` is one.
pub(crate) fn soft_error(error: &lapin::Error) -> Option<(&AMQPSoftError, &str)> {
    match error.kind() {
        ErrorKind::ProtocolError(amqp) => match amqp.kind() {
            AMQPErrorKind::Soft(soft) => Some((soft, amqp.get_message().as_str())),
            AMQPErrorKind::Hard(_) => None,
        },
        _ => None,
    }
}

/// Channel errors that repeat until someone changes the broker or the config: a missing
/// exchange or queue (404), a permission (403), an argument mismatch (406), an oversized message
/// (311). Lapin's `can_be_recovered` only says the channel can be reopened.
fn is_permanent(error: &lapin::Error) -> bool {
    matches!(
        soft_error(error),
        Some((
            AMQPSoftError::NOTFOUND
                | AMQPSoftError::ACCESSREFUSED
                | AMQPSoftError::PRECONDITIONFAILED
                | AMQPSoftError::CONTENTTOOLARGE,
            _
        ))
    )
}

/// The argument named in a RabbitMQ "inequivalent arg 'x-queue-type' for queue ..." text.
pub(crate) fn inequivalent_argument(text: &str) -> Option<String> {
    let rest = text.split_once("inequivalent arg '")?.1;
    Some(rest.split_once('\'')?.0.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_differing_argument() {
        let check = |text: &str, expected: Option<&str>| {
            assert_eq!(inequivalent_argument(text).as_deref(), expected, "{text}");
        };
        check(
            "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'herald.send' in \
             vhost '/': received 'classic' but current is 'quorum'",
            Some("x-queue-type"),
        );
        check(
            "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'q' in vhost '/': \
             received 'false' but current is 'true'",
            Some("durable"),
        );
        check("NOT_FOUND - no queue 'q' in vhost '/'", None);
        check("inequivalent arg 'unterminated", None);
    }

    #[test]
    fn connect_error_says_where_and_what_to_do_without_credentials() {
        let error = AmqpError::Connect {
            address: "127.0.0.1:5672".into(),
            vhost: "/".into(),
            attempts: 3,
            source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into()),
        };
        let shown = error.to_string();
        assert!(shown.contains("127.0.0.1:5672"), "{shown}");
        assert!(shown.contains("scripts/services.sh rabbitmq"), "{shown}");
        assert!(error.is_retryable() && error.is_connection_lost());
    }

    #[test]
    fn lapin_errors_keep_lapins_classification() {
        let io = AmqpError::amqp("basic.publish")(
            std::io::Error::from(std::io::ErrorKind::ConnectionReset).into(),
        );
        assert!(io.is_retryable() && io.is_connection_lost());
        let shutdown = AmqpError::amqp("basic.publish")(lapin::ErrorKind::FutureCompleted.into());
        assert!(!shutdown.is_retryable() && !shutdown.is_connection_lost());
        let check = |soft: AMQPSoftError, retryable: bool| {
            let amqp = lapin::protocol::AMQPError::new(soft.clone().into(), "text".into());
            let error = AmqpError::amqp("basic.publish")(ErrorKind::ProtocolError(amqp).into());
            assert_eq!(error.is_retryable(), retryable, "{soft:?}");
            assert!(!error.is_connection_lost(), "{soft:?}");
        };
        check(AMQPSoftError::NOTFOUND, false);
        check(AMQPSoftError::PRECONDITIONFAILED, false);
        check(AMQPSoftError::RESOURCELOCKED, true);
    }
}
