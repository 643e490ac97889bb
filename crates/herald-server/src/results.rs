//! Delivery results from `<p>.results.store` into the store (issue 5).
