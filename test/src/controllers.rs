//! Harness for the controllers tests.
