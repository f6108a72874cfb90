//! PCI configuration mechanism 1 (ports 0xcf8 address, 0xcfc–0xcff data)
//! showing the guest one device: a host bridge at bus 0, device 0,
//! function 0, with the identity of the i440FX's PMC (8086:1237, class
//! 06 00 00). Linux needs a working mechanism with a host bridge on bus 0
//! to believe the machine has PCI; only then does its PCI resource survey
//! run, and with it the late E820 pass that turns type-12 ranges into the
//! "Persistent Memory (legacy)" resources `nd_e820` binds. Every other
//! device reads as absent (all ones) and configuration writes are
//! dropped: the guest sees none of the machine's devices and cannot move
//! any BAR.

use super::Width;

const ADDRESS: u16 = 0xcf8;
const DATA: u16 = 0xcfc;
/// Address bit 31: configuration access enabled.
const ENABLE: u32 = 1 << 31;
/// The address bits kept: enable, bus, device, function, dword register.
const ADDRESS_MASK: u32 = ENABLE | 0x00ff_fffc;

/// The host bridge's configuration dwords 0x00–0x0c.
const HOST_BRIDGE: [u32; 4] = [
    0x1237_8086, // device, vendor
    0x0000_0006, // status, command (memory and bus master on)
    0x0600_0002, // class 06 00 00, revision 2
    0x0000_0000, // BIST, header type 0, latency, cache line
];

/// The configuration address latch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PciConfig {
    address: u32,
}

impl PciConfig {
    /// An access to ports 0xcf8–0xcff: the IN value, or 0 after an OUT.
    pub fn access(&mut self, port: u16, width: Width, out: Option<u32>) -> u32 {
        match (port, width, out) {
            (ADDRESS, Width::Dword, Some(v)) => {
                self.address = v & ADDRESS_MASK;
                0
            }
            (ADDRESS, Width::Dword, None) => self.address,
            (DATA..=0xcff, _, None) => self.read(u32::from(port - DATA), width),
            // Partial writes to the address latch (Linux's mechanism probe
            // writes 0xcfb) and every data write are dropped.
            (_, _, Some(_)) => 0,
            (_, _, None) => width.mask(),
        }
    }

    fn read(&self, byte: u32, width: Width) -> u32 {
        let dword = if self.address & ENABLE == 0 {
            u32::MAX
        } else {
            config_dword(self.address & !ENABLE)
        };
        // An access straddling 0xcff reads ones beyond it.
        let value = (u64::from(dword) | 0xffff_ffff << 32) >> (8 * byte);
        value as u32 & width.mask()
    }
}

/// The dword at `address` (bus, device, function, register; enable clear).
fn config_dword(address: u32) -> u32 {
    let function = address >> 8;
    let register = (address & 0xfc) as usize / 4;
    if function != 0 {
        return u32::MAX;
    }
    HOST_BRIDGE.get(register).copied().unwrap_or(0)
}
