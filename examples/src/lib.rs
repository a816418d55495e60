//! Examples crate: see examples/README.md.
