//! Harness for the kubectl tests.
