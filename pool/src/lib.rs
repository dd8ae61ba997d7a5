//! quorate-pool (under construction).
#![deny(missing_docs)]
#![forbid(unsafe_code)]
