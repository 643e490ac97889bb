//! Operations shared by the CLI and the admin API (issue 5).
