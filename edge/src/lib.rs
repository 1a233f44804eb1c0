//! dashcdn edge: the caching reverse proxy that serves segments close to viewers.

pub mod cli;
