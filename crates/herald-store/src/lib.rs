//! Profiles, PSIDs, campaign runs and delivery records (not built yet: see issue 5).
