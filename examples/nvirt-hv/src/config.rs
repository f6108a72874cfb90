//! The hypervisor's own command-line options (`memmap=` is Linux's and is
//! applied to the memory map by `nvirt_e820`).
//!
//! | option | meaning | default |
//! |---|---|---|
//! | `guest_ram=SIZE` | the guest's RAM | 64M |
//! | `guest_nvram=SIZE` | the guest's NVRAM | 0 |
//! | `nv_type=7\|12\|90` | E820 type of the guest's NVRAM region | 7 |
//! | `guest_addr=ADDR` | where a raw guest image was preloaded (QEMU `-device loader`), when no module carries it | none |
//! | `guest_id=HEX` | the guest's stable 128-bit id in the NV pool (up to 32 hex digits) | [`DEFAULT_GUEST_ID`] |
//! | `nvpool=recover\|fresh\|format` | recover the pool the NVRAM holds, formatting it only if it holds none; the same, but the NVRAM is new and reads as zeros (a format skips zeroing the data frames); erase the NVRAM and make a new pool | recover |
//! | `guest_crashloop=OPS` | the test guest runs its crash-loop workload for OPS operations (0: until killed) instead of its checks | off |
//!
//! Sizes are decimal or `0x` hex with an optional K, M or G suffix.
//! Unknown words are ignored (Multiboot1 loaders put the kernel path first).

use core::fmt;

use nvirt_e820::Kind;

/// The guest RAM size when none is given.
pub const DEFAULT_GUEST_RAM: u64 = 64 << 20;
/// The guest's id in the NV pool when none is given ("nvirt-guest-0" in
/// ASCII, zero padded).
pub const DEFAULT_GUEST_ID: u128 = 0x6e76_6972_742d_6775_6573_742d_3000_0000;
/// The guest's name in the NV pool.
pub const GUEST_NAME: &str = "guest-0";

/// How the NV pool is opened at boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolMode {
    /// Recover the pool the NVRAM holds; format the NVRAM only if it holds
    /// none (a damaged pool stops the boot).
    Recover,
    /// As `Recover`, but the NVRAM is known to be new and read as zeros (a
    /// fresh NVDIMM backing file): a format skips zeroing the data frames.
    Fresh,
    /// Erase the NVRAM and make a new pool, whatever it holds.
    Format,
}

/// The parsed options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Guest RAM in bytes.
    pub guest_ram: u64,
    /// Guest NVRAM in bytes.
    pub guest_nvram: u64,
    /// Kind of the guest's NVRAM region.
    pub nv_kind: Kind,
    /// Physical address of a preloaded raw guest image.
    pub guest_addr: Option<u64>,
    /// The guest's stable id in the NV pool.
    pub guest_id: u128,
    /// How to open the NV pool.
    pub pool: PoolMode,
    /// Operations of the test guest's crash-loop workload (0: until
    /// killed), if it runs it.
    pub crash_loop: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            guest_ram: DEFAULT_GUEST_RAM,
            guest_nvram: 0,
            nv_kind: Kind::Pmem,
            guest_addr: None,
            guest_id: DEFAULT_GUEST_ID,
            pool: PoolMode::Recover,
            crash_loop: None,
        }
    }
}

/// An option with a value that cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The option's name.
    pub option: &'static str,
    /// Why.
    pub reason: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "option {}: {}", self.option, self.reason)
    }
}

impl core::error::Error for ConfigError {}

impl Config {
    /// Parses the options of `cmdline`; later occurrences win.
    pub fn parse(cmdline: &str) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        for word in cmdline.split_ascii_whitespace() {
            let Some((name, value)) = word.split_once('=') else {
                continue;
            };
            match name {
                "guest_ram" => config.guest_ram = size("guest_ram", value)?,
                "guest_nvram" => config.guest_nvram = size("guest_nvram", value)?,
                "guest_addr" => config.guest_addr = Some(size("guest_addr", value)?),
                "guest_id" => config.guest_id = id("guest_id", value)?,
                "guest_crashloop" => config.crash_loop = Some(size("guest_crashloop", value)?),
                "nvpool" => {
                    config.pool = match value {
                        "recover" => PoolMode::Recover,
                        "fresh" => PoolMode::Fresh,
                        "format" => PoolMode::Format,
                        _ => {
                            return Err(ConfigError {
                                option: "nvpool",
                                reason: "must be recover, fresh or format",
                            });
                        }
                    }
                }
                "nv_type" => {
                    config.nv_kind = match value {
                        "7" => Kind::Pmem,
                        "12" => Kind::Pram,
                        "90" => Kind::VendorNvram,
                        _ => {
                            return Err(ConfigError {
                                option: "nv_type",
                                reason: "must be 7, 12 or 90",
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(config)
    }
}

/// Parses a 128-bit id: 1 to 32 hex digits, `0x` optional.
fn id(option: &'static str, text: &str) -> Result<u128, ConfigError> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    if digits.is_empty() || digits.len() > 32 {
        return Err(ConfigError {
            option,
            reason: "must be 1 to 32 hex digits",
        });
    }
    u128::from_str_radix(digits, 16).map_err(|_| ConfigError {
        option,
        reason: "not a hex number",
    })
}

/// Parses `4096`, `0x1000`, `64M`, `1G`.
fn size(option: &'static str, text: &str) -> Result<u64, ConfigError> {
    let bad = |reason| ConfigError { option, reason };
    let (digits, shift) = match text.as_bytes().last() {
        Some(b'k' | b'K') => (&text[..text.len() - 1], 10),
        Some(b'm' | b'M') => (&text[..text.len() - 1], 20),
        Some(b'g' | b'G') => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    let value = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => digits.parse::<u64>(),
    }
    .map_err(|_| bad("not a number"))?;
    value
        .checked_mul(1 << shift)
        .ok_or(bad("does not fit in 64 bits"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options_and_ignores_the_rest() {
        let c = Config::parse(
            "/boot/nvirt-hv guest_ram=128M guest_nvram=0x4000000 nv_type=12 \
             guest_addr=0x3000000 memmap=16M!64M console",
        )
        .unwrap();
        assert_eq!(c.guest_ram, 128 << 20);
        assert_eq!(c.guest_nvram, 64 << 20);
        assert_eq!(c.nv_kind, Kind::Pram);
        assert_eq!(c.guest_addr, Some(0x300_0000));
        assert_eq!(c.guest_id, DEFAULT_GUEST_ID);
        assert_eq!(c.pool, PoolMode::Recover);
        assert_eq!(c.crash_loop, None);
        assert_eq!(Config::parse("").unwrap(), Config::default());
        let c = Config::parse(
            "guest_id=0xABCDEF0123456789abcdef0123456789 nvpool=format guest_crashloop=0",
        )
        .unwrap();
        assert_eq!(c.guest_id, 0xabcd_ef01_2345_6789_abcd_ef01_2345_6789);
        assert_eq!(c.pool, PoolMode::Format);
        assert_eq!(c.crash_loop, Some(0));
        assert_eq!(
            Config::parse("nvpool=format nvpool=fresh").unwrap().pool,
            PoolMode::Fresh
        );
        assert_eq!(Config::parse("guest_id=5").unwrap().guest_id, 5);
        assert_eq!(
            Config::parse("nv_type=90").unwrap().nv_kind,
            Kind::VendorNvram
        );
    }

    #[test]
    fn rejects_bad_values() {
        for bad in [
            "nv_type=8",
            "guest_ram=12Q",
            "guest_ram=",
            "guest_nvram=0x",
            "guest_ram=99999999999G",
            "guest_addr=-1",
            "guest_id=",
            "guest_id=0x",
            "guest_id=123456789012345678901234567890123",
            "guest_id=xyz",
            "nvpool=wipe",
            "guest_crashloop=many",
        ] {
            assert!(Config::parse(bad).is_err(), "{bad}");
        }
    }
}
