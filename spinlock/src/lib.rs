//! quorate-spinlock (under construction).
#![deny(missing_docs)]
#![forbid(unsafe_code)]
