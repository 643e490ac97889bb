//! The only user of lapin: connection, topology, confirmed publishing, consuming.
