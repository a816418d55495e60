//! Work queue of keys for controllers (being written).
