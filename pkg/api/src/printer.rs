//! Server-side printing: the Table columns `kubectl get` shows for each kind.
