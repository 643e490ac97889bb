//! Webhook receiver, admin API, ingest and results consumers (not built yet: see issue 5).
