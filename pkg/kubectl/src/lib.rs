//! rkubectl's commands: the kubectl-like client as a library.
