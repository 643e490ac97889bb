//! Segment to SendJobs, published with confirms (not built yet: see issue 3).
