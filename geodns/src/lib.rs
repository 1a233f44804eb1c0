//! dashcdn geodns: authoritative DNS that sends each viewer to the nearest healthy edge.

pub mod cli;
