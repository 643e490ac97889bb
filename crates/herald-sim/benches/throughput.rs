//! Placeholder until the simulator benchmark is written.
fn main() {}
