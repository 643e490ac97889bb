//! The admin API (issue 5).
