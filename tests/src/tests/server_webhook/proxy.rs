//! A TCP forwarder to the test broker whose connections can be cut and which comes back on the
//! same port: a broker outage for one client, without touching the broker the other tests share.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::broker;

/// A forwarder to the test broker; `cut` it and `restart` it.
pub(crate) struct Proxy {
    addr: SocketAddr,
    target: String,
    stop: CancellationToken,
}

impl Proxy {
    /// `None` when there is no broker (and `CI` is unset).
    pub(crate) async fn start() -> Option<Self> {
        drop(broker().await?);
        let target = broker_host_port();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        tokio::spawn(forward(listener, target.clone(), stop.clone()));
        Some(Self { addr, target, stop })
    }

    /// The test broker's URL, through this proxy.
    pub(crate) fn amqp_url(&self) -> String {
        crate::amqp_addr().replacen(&self.target, &self.addr.to_string(), 1)
    }

    /// Closes every connection and stops listening.
    pub(crate) fn cut(&mut self) {
        self.stop.cancel();
    }

    /// Listens again on the same port.
    pub(crate) async fn restart(&mut self) {
        self.stop = CancellationToken::new();
        let mut listener = None;
        for _ in 0..50 {
            match TcpListener::bind(self.addr).await {
                Ok(bound) => {
                    listener = Some(bound);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let listener = listener.expect("rebind the proxy port");
        tokio::spawn(forward(listener, self.target.clone(), self.stop.clone()));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn forward(listener: TcpListener, target: String, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((mut client, _)) = accepted else {
            continue;
        };
        let (target, stop) = (target.clone(), stop.clone());
        tokio::spawn(async move {
            let Ok(mut upstream) = TcpStream::connect(&target).await else {
                return;
            };
            tokio::select! {
                () = stop.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
            }
        });
    }
}

/// `host:port` of the test broker URL.
fn broker_host_port() -> String {
    let url = crate::amqp_addr();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5672")
    }
}
