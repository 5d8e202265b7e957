//! Indices of the probes' own counters (per-CPU `PROBE_STATS`), read and summed by the agent.

/// Connection events that did not fit into the ring buffer.
pub const EVENTS_LOST: u32 = 0;
/// Connections whose tracking was lost: a full set of `SOCKETS` gave up its oldest.
pub const TRACK_FAILED: u32 = 1;
/// Connects to watched ports seen (CLOSE → SYN_SENT).
pub const CONNECTS_SEEN: u32 = 2;
/// Owner exit events that did not fit into their ring buffer.
pub const EXITS_LOST: u32 = 3;
pub const COUNT: u32 = 4;
