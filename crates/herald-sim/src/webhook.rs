//! The outgoing webhook: schedules delivery/read receipts and inbound messages, batches what is
//! due into one signed POST, and retries non-2xx answers with backoff. POSTs go one at a time,
//! as Meta waits for a 200 before sending the next; what falls due meanwhile joins the next batch.
//! Payload shapes and signatures are in `events.rs`.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{CONTENT_TYPE, USER_AGENT};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::warn;

use crate::app::App;
use crate::events::{self, Event, Item};
use crate::faults::pause;
use crate::http::unix_ms;

/// Meta gives a webhook 20 s to answer (docs/messenger-platform.md §5.5).
const POST_TIMEOUT: Duration = Duration::from_secs(20);
/// At most this many messaging events per POST: Meta batches up to 1,000 updates in one
/// (docs/messenger-platform.md §5.3). With POSTs one at a time, a smaller batch would make the
/// echoes of a fast campaign fall further and further behind the sends.
const MAX_BATCH: usize = 1_000;
type HttpClient = Client<HttpConnector, Full<Bytes>>;

struct Due {
    at: Instant,
    seq: u64,
    item: Item,
}

/// Runs until the simulator shuts down or every sender is gone.
pub(crate) async fn run(app: Arc<App>, mut events: mpsc::Receiver<Event>) {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let mut pending: BinaryHeap<Due> = BinaryHeap::new();
    let mut seq = 0u64;
    loop {
        let next = pending.peek().map(|due| due.at);
        tokio::select! {
            biased;
            () = app.cancel.cancelled() => return,
            event = events.recv() => {
                let Some(event) = event else { return };
                let live = app.live();
                let config = &live.config;
                let now = Instant::now();
                let mut push = |at: Instant, item: Item| {
                    seq += 1;
                    pending.push(Due { at, seq, item });
                };
                match event {
                    Event::Accepted { page, psid, mid, metadata, at_ms } => {
                        if config.echoes {
                            let echo = now + Duration::from_millis(config.echo_delay_ms);
                            let item = Item::Echo {
                                page: Arc::clone(&page),
                                psid: psid.clone(),
                                mid: mid.clone(),
                                metadata,
                                app_id: config.app_id.clone(),
                                at_ms,
                            };
                            push(echo, item);
                        }
                        if config.receipts {
                            let delivery = now + Duration::from_millis(config.delivery_delay_ms);
                            let read = now + Duration::from_millis(config.read_delay_ms);
                            let item = Item::Read { page: Arc::clone(&page), psid: psid.clone(), at_ms };
                            push(read, item);
                            push(delivery, Item::Delivery { page, psid, mid, at_ms });
                        }
                    }
                    Event::Now(item) => push(now, item),
                }
            }
            () = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                let now = Instant::now();
                let mut batch = Vec::new();
                while batch.len() < MAX_BATCH && pending.peek().is_some_and(|due| due.at <= now) {
                    batch.extend(pending.pop().map(|due| due.item));
                }
                post(&app, &client, &batch).await;
            }
        }
    }
}

/// POSTs one batch, retrying with doubling backoff; counts the outcome.
async fn post(app: &App, client: &HttpClient, batch: &[Item]) {
    let live = app.live();
    let config = &live.config;
    let Some(url) = config.webhook_url.as_deref() else {
        app.state().webhook.events_dropped += batch.len() as u64;
        return;
    };
    let body = Bytes::from(events::envelope(batch, unix_ms()));
    let signature = config
        .app_secret
        .as_deref()
        .map(|secret| events::signature(secret, &body));
    let mut backoff = Duration::from_millis(config.webhook_backoff_ms);
    for attempt in 0..=config.webhook_retries {
        let mut request = Request::post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, "facebookexternalua");
        if let Some(signature) = &signature {
            request = request.header("x-hub-signature-256", signature.as_str());
        }
        let status = match request.body(Full::new(body.clone())) {
            Ok(request) => send(client, request).await,
            Err(error) => {
                warn!(error = %error, "Webhook URL is unusable; dropping the batch.");
                app.state().webhook.posts_dropped += 1;
                return;
            }
        };
        if status.is_some_and(|s| s.is_success()) {
            let mut state = app.state();
            state.webhook.posts_ok += 1;
            state.webhook.events_sent += batch.len() as u64;
            return;
        }
        app.state().webhook.posts_failed += 1;
        warn!(attempt, status = ?status, "Webhook POST failed.");
        if attempt == config.webhook_retries || !pause(backoff, &app.cancel).await {
            break;
        }
        backoff = backoff.saturating_mul(2);
    }
    app.state().webhook.posts_dropped += 1;
}

/// The answer's status, or `None` on a transport error or timeout. Reads the body so the
/// connection can be reused.
async fn send(client: &HttpClient, request: Request<Full<Bytes>>) -> Option<hyper::StatusCode> {
    let response = tokio::time::timeout(POST_TIMEOUT, client.request(request))
        .await
        .ok()?
        .ok()?;
    let status = response.status();
    let _ = tokio::time::timeout(POST_TIMEOUT, response.into_body().collect()).await;
    Some(status)
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    /// Reversed, so the max-heap pops the earliest (then the first queued) item.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}
