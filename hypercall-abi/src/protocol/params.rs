//! What the guest's command line tells it: the memory it was configured
//! with, so it can check its map against it.

use core::fmt;

/// The guest's configured memory, written on its command line as
/// `nvirt.ram=BYTES nvirt.nvram=BYTES nvirt.nv_type=N` (decimal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestParams {
    /// RAM bytes.
    pub ram: u64,
    /// NVRAM bytes.
    pub nvram: u64,
    /// E820 type of the NVRAM region.
    pub nv_type: u32,
}

impl fmt::Display for GuestParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "nvirt.ram={} nvirt.nvram={} nvirt.nv_type={}",
            self.ram, self.nvram, self.nv_type
        )
    }
}

impl GuestParams {
    /// Reads the three keys from `cmdline` (other words are ignored);
    /// `None` if one is missing or not a decimal number.
    #[must_use]
    pub fn parse(cmdline: &str) -> Option<Self> {
        let (mut ram, mut nvram, mut nv_type) = (None, None, None);
        for word in cmdline.split_ascii_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            match key {
                "nvirt.ram" => ram = Some(value.parse().ok()?),
                "nvirt.nvram" => nvram = Some(value.parse().ok()?),
                "nvirt.nv_type" => nv_type = Some(value.parse().ok()?),
                _ => {}
            }
        }
        Some(Self {
            ram: ram?,
            nvram: nvram?,
            nv_type: nv_type?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::CMDLINE_MAX;

    #[test]
    fn guest_params_round_trip() {
        let p = GuestParams {
            ram: 64 << 20,
            nvram: 1 << 30,
            nv_type: 12,
        };
        let text = p.to_string();
        assert_eq!(
            text,
            "nvirt.ram=67108864 nvirt.nvram=1073741824 nvirt.nv_type=12"
        );
        assert!(text.len() < CMDLINE_MAX);
        assert_eq!(GuestParams::parse(&text), Some(p));
        assert_eq!(GuestParams::parse(&format!("quiet {text} x=y")), Some(p));
        assert_eq!(GuestParams::parse("nvirt.ram=1 nvirt.nvram=2"), None);
        assert_eq!(
            GuestParams::parse("nvirt.ram=1 nvirt.nvram=x nvirt.nv_type=7"),
            None
        );
    }
}
