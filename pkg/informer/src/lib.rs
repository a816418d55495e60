//! Informers (being written).
