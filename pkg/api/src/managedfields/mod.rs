//! Field ownership for server-side apply (being written).
