//! Component base (being written).
