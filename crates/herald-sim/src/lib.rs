//! A faithful Graph API simulator for tests, demos and benchmarks; shares no code with herald-graph.
