//! rkube's scheduler: places pending pods on nodes (filter, score, bind).
