//! The control plane as one worker sees it: `Control` folds the `herald.control.log` stream into
//! "which runs are paused or cancelled, which pages are halted" (the latest command wins, a cancel
//! is final), and `follow` replays that stream from its first offset and then keeps reading it
//! live. A worker publishes a marker and replays until it reads it back, so commands issued before
//! it started are in force before it takes its first job. Publishing operator commands is the CLI's.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use herald_amqp::{AmqpError, Consumer, Headers, Publisher};
use herald_core::{ControlAction, ControlMessage, ControlTarget};
use herald_telemetry::Metrics;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Whether a run's jobs may be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunGate {
    Open,
    Paused,
    Cancelled,
}

/// The control state of this worker.
pub(crate) struct Control {
    state: Mutex<State>,
    metrics: Metrics,
}

#[derive(Default)]
struct State {
    runs: HashMap<String, RunGate>,
    /// Halted by a command on the stream (this worker's own announcements included).
    halted: HashMap<String, String>,
    /// Halted in this worker only: it has no token for the page.
    no_token: HashSet<String>,
}

impl Control {
    pub(crate) fn new(metrics: Metrics) -> Self {
        Self {
            state: Mutex::new(State::default()),
            metrics,
        }
    }

    /// Applies one command from the stream.
    pub(crate) fn apply(&self, message: &ControlMessage) {
        let Ok(target) = message.target() else {
            return;
        };
        let mut state = self.lock();
        match (message.action, target) {
            (ControlAction::PauseRun | ControlAction::ResumeRun, ControlTarget::Run(run)) => {
                if state.runs.get(run) == Some(&RunGate::Cancelled) {
                    info!(
                        run_id = run,
                        action = message.action.as_str(),
                        "Ignoring a command for a cancelled run; a cancel is final."
                    );
                    return;
                }
                let gate = if message.action == ControlAction::PauseRun {
                    RunGate::Paused
                } else {
                    RunGate::Open
                };
                state.runs.insert(run.to_owned(), gate);
            }
            (ControlAction::CancelRun, ControlTarget::Run(run)) => {
                state.runs.insert(run.to_owned(), RunGate::Cancelled);
            }
            (ControlAction::HaltPage, ControlTarget::Page(page)) => {
                let reason = message.reason.clone().unwrap_or_default();
                state.halted.insert(page.to_owned(), reason);
            }
            (ControlAction::ResumePage, ControlTarget::Page(page)) => {
                state.halted.remove(page);
            }
            _ => return,
        }
        self.metrics
            .control_commands
            .with_label_values(&[message.action.as_str()])
            .inc();
        if let ControlTarget::Page(page) = target {
            self.show(&state, page);
        }
    }

    pub(crate) fn run_gate(&self, run_id: &str) -> RunGate {
        self.lock()
            .runs
            .get(run_id)
            .copied()
            .unwrap_or(RunGate::Open)
    }

    /// Halted fleet-wide, or missing its token here.
    pub(crate) fn is_halted(&self, page_id: &str) -> bool {
        let state = self.lock();
        state.halted.contains_key(page_id) || state.no_token.contains(page_id)
    }

    /// Halts the page in this worker; true when it was not halted yet, so the caller announces it.
    pub(crate) fn halt(&self, page_id: &str, reason: &str) -> bool {
        let mut state = self.lock();
        let fresh = state
            .halted
            .insert(page_id.to_owned(), reason.to_owned())
            .is_none();
        self.show(&state, page_id);
        fresh
    }

    /// Lifts a halt in this worker (the caller announces it).
    pub(crate) fn resume(&self, page_id: &str) {
        let mut state = self.lock();
        state.halted.remove(page_id);
        self.show(&state, page_id);
    }

    pub(crate) fn halted_pages(&self) -> Vec<String> {
        self.lock().halted.keys().cloned().collect()
    }

    /// Records that this worker has no token for the page; true the first time (log it then).
    pub(crate) fn missing_token(&self, page_id: &str) -> bool {
        let mut state = self.lock();
        let fresh = state.no_token.insert(page_id.to_owned());
        self.show(&state, page_id);
        fresh
    }

    /// Forgets missing tokens after the tokens were replaced; the next job finds out again.
    pub(crate) fn tokens_replaced(&self) {
        let mut state = self.lock();
        let pages: Vec<String> = state.no_token.drain().collect();
        for page in pages {
            self.show(&state, &page);
        }
    }

    fn show(&self, state: &State, page_id: &str) {
        let halted = state.halted.contains_key(page_id) || state.no_token.contains(page_id);
        self.metrics
            .page_halted
            .with_label_values(&[page_id])
            .set(i64::from(halted));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reads the control stream (a consumer started at offset `first`) until `stop`, or until it
/// ends or fails: publishes a marker, applies every command, and signals `caught_up` on reading
/// the marker back.
pub(crate) async fn follow(
    mut stream: Consumer,
    control: Arc<Control>,
    publisher: Arc<Publisher>,
    exchange: String,
    marker_id: String,
    caught_up: oneshot::Sender<()>,
    stop: CancellationToken,
) -> Result<(), AmqpError> {
    let marker = ControlMessage::marker(&marker_id);
    publisher
        .publish(&exchange, "", &marker.to_vec(), Headers::new())
        .await?
        .await?;
    let mut caught_up = Some(caught_up);
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            () = stop.cancelled() => break,
        };
        let Some(delivery) = next else {
            return Ok(());
        };
        let delivery = delivery?;
        match ControlMessage::from_slice(delivery.body()) {
            Ok(message) if message.action == ControlAction::Marker => {
                if message.reason.as_deref() == Some(marker_id.as_str())
                    && let Some(signal) = caught_up.take()
                {
                    let _ = signal.send(());
                }
            }
            Ok(message) => {
                if caught_up.is_none() {
                    info!(
                        action = message.action.as_str(),
                        run_id = message.run_id.as_deref(),
                        page_id = message.page_id.as_deref(),
                        "Control command received."
                    );
                }
                control.apply(&message);
            }
            Err(error) => warn!(error = %error, "Ignoring an unreadable control message."),
        }
        // Streams need acks for flow control; nothing is removed from the log.
        delivery.ack().await?;
    }
    // Closed here rather than dropped, so the channel is gone before the connection closes.
    stream.close().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(action: ControlAction, id: &str) -> ControlMessage {
        ControlMessage::for_run(action, id)
    }

    #[test]
    fn the_latest_command_wins_and_a_cancel_is_final() {
        use ControlAction::*;
        let control = Control::new(Metrics::new());
        let check =
            |id: &str, expected: RunGate| assert_eq!(control.run_gate(id), expected, "{id}");
        check("r1", RunGate::Open);
        control.apply(&run(PauseRun, "r1"));
        check("r1", RunGate::Paused);
        control.apply(&run(ResumeRun, "r1"));
        check("r1", RunGate::Open);
        control.apply(&run(CancelRun, "r2"));
        control.apply(&run(ResumeRun, "r2"));
        check("r2", RunGate::Cancelled);
        // A run command naming a page is ignored.
        let mut wrong = ControlMessage::for_page(PauseRun, "9", None);
        wrong.run_id = None;
        control.apply(&wrong);
        check("9", RunGate::Open);

        control.apply(&ControlMessage::for_page(HaltPage, "7", Some("190".into())));
        assert!(control.is_halted("7"));
        assert!(
            !control.halt("7", "again"),
            "already halted: nothing to announce"
        );
        control.apply(&ControlMessage::for_page(ResumePage, "7", None));
        assert!(!control.is_halted("7"));
        assert!(control.halt("7", "190"));
        assert_eq!(control.halted_pages(), ["7"]);

        assert!(control.missing_token("8"));
        assert!(!control.missing_token("8"));
        assert!(control.is_halted("8"));
        control.tokens_replaced();
        assert!(!control.is_halted("8"));
        let text = control.metrics.encode();
        assert!(
            text.contains("herald_page_halted{page_id=\"7\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("herald_page_halted{page_id=\"8\"} 0"),
            "{text}"
        );
    }
}
