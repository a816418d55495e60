//! Strategic merge patch, as `kubectl apply` sends it.
