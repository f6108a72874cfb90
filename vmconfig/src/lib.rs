//! VM configuration files for nvirt hypervisors, in the style of Xen's
//! `xl.cfg`: a `no_std` parser that needs no allocator, borrows its strings
//! from the text, and answers bad input with a typed error naming the line.
//!
//! ```
//! use nvirt_vmconfig::{check_set, Kind, Populate, VmConfig, MIB};
//!
//! let text = r#"
//! ## A VM with 32 MiB of RAM and 16 MiB of type-12 NVRAM, backed on first touch.
//! name = "db-1"
//! memory = 32
//! nvram = 16; nvram_type = 12
//! nvram_populate = "touch"
//! nvram_file = "db-1.nvram"   # where its NVRAM goes while it is off
//! "#;
//! let vm = VmConfig::parse(text)?;
//! assert_eq!((vm.name, vm.memory, vm.nvram), ("db-1", 32 * MIB, 16 * MIB));
//! assert_eq!((vm.nvram_kind, vm.nvram_populate), (Kind::Pram, Populate::Touch));
//! assert_eq!(vm.nvram_target, vm.nvram, "the balloon target defaults to all of it");
//! let rendered = vm.to_string();
//! assert_eq!(VmConfig::parse(&rendered), Ok(vm), "Display writes a file back");
//!
//! let bad = "name = \"a\"\nmemory = 32\nvcpu = 2\n";
//! let err = VmConfig::parse(bad).unwrap_err();
//! assert_eq!(err.in_file("a.cfg").to_string(), "a.cfg:3: unknown key \"vcpu\"");
//!
//! let other = VmConfig::parse("name = \"db-1\"\nmemory = 16")?;
//! let clash = check_set(&[vm, other]).unwrap_err();
//! assert_eq!(clash.in_files("a.cfg", "b.cfg").to_string(), "b.cfg: name \"db-1\" is also the name of a.cfg");
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```
//!
//! # The accepted subset of xl.cfg
//!
//! - A file is a series of `KEY = VALUE` settings, separated by line ends
//!   or `;`. Blanks around `=` and between settings are ignored; a key, its
//!   `=` and its value are on one line.
//! - `#` starts a comment that runs to the end of the line (not inside a
//!   string). Blank lines are ignored; `\r\n` line ends are accepted.
//! - A value is a string in double or single quotes, on one line, without
//!   backslashes (xl's escapes are not supported, so a string can borrow
//!   from the file), or a number as xl reads one: decimal, `0x` hex, or
//!   octal with a leading `0` (`memory = 010` is 8 MiB, as in xl), an
//!   optional `+`. Keys that take a number also take it quoted
//!   (`memory = "32"`), as xl does. Lists (`[ … ]`) are refused: no
//!   accepted key takes one.
//! - Keys are case-sensitive. An unknown key, a key set twice, a missing
//!   required key and a size the hypervisor cannot give are errors.
//!
//! | key | value | default |
//! |---|---|---|
//! | `name` | string, required: 1 to 32 of `A-Z a-z 0-9 _ . -` | |
//! | `uuid` | string `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (hex): the VM's stable domain id in the NV pool | [`id_from_name`] of the name |
//! | `memory` | number, required: RAM in MiB, a multiple of 2, 2 to 1 048 576 (1 TiB) | |
//! | `nvram` | number: NVRAM in MiB, a multiple of 2, up to 1 TiB | 0 |
//! | `nvram_type` | number: the E820 type of the NVRAM region, 7, 12 or 90 | 7 |
//! | `nvram_target` | number: the NVRAM balloon target in MiB the guest reads, a multiple of 2, at most `nvram` | `nvram` |
//! | `nvram_populate` | `"eager"` (back all NVRAM when the VM starts) or `"touch"` (on first touch: thin provisioning) | `"eager"` |
//! | `nvram_file` | string: where a powered-off VM's NVRAM is paged out (needs `nvram`) | none |
//! | `kernel` | string: the guest image | the nvirt test guest |
//! | `ramdisk` | string: the guest's initial ramdisk (needs `kernel`) | none |
//! | `cmdline` | string: the guest kernel's command line; for the test guest, words added to its own | none |
//! | `on_poweroff` | `"preserve"` (keep the domain and its NVRAM, marked shut down) or `"destroy"` (scrub its NVRAM back into the pool); xl's default is `"destroy"`, ours keeps the NVRAM | `"preserve"` |
//!
//! The sizes must also give a guest memory map
//! ([`nvirt_e820::GuestLayout`], whose error is passed on as
//! [`ErrorKind::Layout`]). Paths are returned as written; the caller
//! decides what they are relative to (the nvirt tools: the config file's
//! directory). [`check_set`] checks several VMs that are to run together.

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod error;
mod id;
mod lexer;
mod render;
mod set;

pub use config::{GRANULE_MIB, MAX_MIB, MAX_NAME, MIB, OnPoweroff, Populate, VmConfig};
pub use error::{ErrorKind, InFile, InFiles, ParseError, SetError};
pub use id::{Uuid, id_from_name};
pub use nvirt_e820::{Kind, SynthError};
pub use set::check_set;
