//! rkube's node agent: runs a node's pods on containerd with CNI networking.
