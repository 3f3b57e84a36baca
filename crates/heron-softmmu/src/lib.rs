//! Heron's softMMU: guest-physical RAM, the TLB and the page walk.
pub mod ram;
pub use ram::{GuestRam, RamError};
