//! The end-to-end tests, one file per capability.

mod broker;
mod campaign_test;
mod demo;
mod deploy;
mod embedded;
mod graph_sim;
mod producer;
mod producer_store;
mod prometheus;
mod server_api;
mod server_ingest;
mod server_webhook;
mod sim_process;
mod store;
mod store_deliveries;
mod store_runs;
mod story;
mod worker;
mod worker_control;
mod worker_dead;
mod worker_faults;
mod worker_fleet;
mod worker_lifecycle;
mod worker_rig;
