//! dashcdn test kit (being written).
