//! Line protocol: being written.
