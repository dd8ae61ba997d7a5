//! quorate-tree (under construction).
#![deny(missing_docs)]
#![forbid(unsafe_code)]
