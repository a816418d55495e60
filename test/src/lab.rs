//! Harness for the multi-node lab tests (being written).
