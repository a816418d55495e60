//! Harness for the node tests.
