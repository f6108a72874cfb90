//! The nvirt reference hypervisor's pure logic.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
