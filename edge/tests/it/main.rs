//! Integration tests of the edge: real sockets on loopback, the real origin in-process,
//! a scriptable mock upstream where a test needs to control headers or timing.

mod coalesce;
mod hostile;
mod memory;
mod purge;
mod rss;
mod semantics;
mod stale;
mod tiers;
mod util;
