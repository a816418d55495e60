//! Structural schemas of custom resources (being written).
