//! The end-to-end tests, one file per capability.

mod broker;
mod campaign_test;
mod deploy;
mod graph_sim;
mod producer;
mod sim_process;
mod store;
mod store_deliveries;
mod store_runs;
mod worker;
mod worker_control;
mod worker_dead;
mod worker_faults;
mod worker_fleet;
mod worker_lifecycle;
mod worker_rig;
