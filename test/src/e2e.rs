//! Harness for the whole-cluster end-to-end tests (being written).
