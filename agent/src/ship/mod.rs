//! Delivery to the collector: `outbox` turns what the agent saw into wire batches, `sender`
//! sends them (oldest first, retried, spooled while the collector is away).
pub mod outbox;
pub mod sender;
