//! Webhook events from herald.events into the store (issue 5).
