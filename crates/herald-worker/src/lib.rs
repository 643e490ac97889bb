//! Consume, rate-limit, send, classify, result, ack (not built yet: see issue 4).
