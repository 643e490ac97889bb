//! The end-to-end tests, one file per capability.

mod broker;
mod graph_sim;
mod producer;
