//! Telling the fleet: a control message published to `<p>.control` and confirmed (a page halted
//! here on a dead token, a page resumed after its token was replaced). The state this worker
//! keeps is `control.rs`; what it reads from the stream, too.

use herald_amqp::{Publisher, Topology};
use herald_core::{ControlAction, ControlMessage};
use tracing::{error, info, warn};

use crate::context::{Link, Shared};

/// Halts the page here and, the first time, tells the fleet through the control exchange.
pub(crate) async fn halt_page(shared: &Shared, link: &Link, page_id: &str, summary: &str) {
    if !shared.control.halt(page_id, summary) {
        return;
    }
    error!(
        page_id,
        reason = summary,
        "Page halted: Graph refuses this page's token or the page is blocked. Replace the token \
         and send SIGHUP, or run `herald campaign resume --page {page_id}`."
    );
    let message = ControlMessage::for_page(ControlAction::HaltPage, page_id, Some(summary.into()));
    announce(link.publisher(), &shared.settings.topology, &message).await;
}

/// Publishes a control message and waits for its confirm; a failure is logged, the local state
/// stands either way.
pub(crate) async fn announce(publisher: &Publisher, topology: &Topology, message: &ControlMessage) {
    let exchange = topology.control_exchange();
    let published = match publisher
        .publish(
            &exchange,
            "",
            &message.to_vec(),
            herald_amqp::Headers::new(),
        )
        .await
    {
        Ok(confirm) => confirm.await,
        Err(error) => Err(error),
    };
    match published {
        Ok(()) => info!(
            action = message.action.as_str(),
            page_id = message.page_id.as_deref(),
            "Control command announced to the fleet."
        ),
        Err(error) => warn!(error = %error, action = message.action.as_str(),
            "Could not announce a control command; only this worker acts on it."),
    }
}
