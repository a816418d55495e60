//! Harness for the scheduler tests.
