//! dashcdn player: a DASH client with ABR algorithms, QoE metrics and a trace-driven ABR lab.

pub mod cli;
