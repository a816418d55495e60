//! rkube's controllers: ReplicaSet, Deployment, node lifecycle, garbage collector.
