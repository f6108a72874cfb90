//! The device model: what a guest reaches through port I/O and MSRs.
//! Every port and every MSR the guest touches exits to the hypervisor
//! (both backends trap them all); this allow-list decides, one port at a
//! time, what happens:
//!
//! | ports | device | here |
//! |---|---|---|
//! | 0x20–0x21, 0xa0–0xa1 | 8259 PICs | forwarded: the guest owns the interrupt controllers (the hypervisor runs with interrupts off) |
//! | 0x40–0x43, 0x61 | 8254 PIT, speaker/gate port | forwarded: the guest's timer |
//! | 0x70, 0x71 | CMOS / RTC | index forwarded, data read forwarded, data writes dropped (the guest cannot change the host's clock or CMOS) |
//! | 0x3f8–0x3ff | COM1 | forwarded; bytes written to the transmit register are also read here, line by line, for the guest's markers |
//! | 0xcf8–0xcff | PCI configuration mechanism 1 | emulated: one host bridge at 00:00.0, nothing else |
//! | 0x64 (0xfe), 0xcf9 (bit 2) | keyboard-controller and chipset reset | emulated: a reset request ends the guest; never reaches the machine |
//! | 0x60, 0x64 | i8042 | absent (no controller) |
//! | 0x80 | POST code / I/O delay | reached without exit; absorbed if trapped |
//! | 0xf4 | the emulator's debug-exit port | absent: never reaches the host |
//! | anything else | — | absent: reads as all ones, writes are dropped |
//!
//! The interrupt controllers, the timer, its gate port and the I/O-delay
//! port belong to the guest outright ([`DIRECT_PORTS`]): both backends let the guest reach
//! them without an exit (Linux reads the PIT and port 0x61 in tight loops
//! while it calibrates its clocks, which under an emulated CPU costs more
//! in exits than the whole rest of its boot). Every other port exits and
//! is decided here.
//!
//! MSRs: see [`msrs`].

pub mod msrs;
pub mod pci;
pub mod serial;

#[cfg(test)]
mod tests;

use pci::PciConfig;
use serial::SerialTap;

/// Ports the guest reaches without an exit: the 8259 PICs, the 8254 PIT,
/// port 0x61 (PIT gate, speaker) and 0x80 (the POST-code port every x86
/// kernel writes as an I/O delay; no device answers it). They are decided
/// here too, should a backend trap them.
pub const DIRECT_PORTS: [u16; 10] = [0x20, 0x21, 0xa0, 0xa1, 0x40, 0x41, 0x42, 0x43, 0x61, 0x80];

/// Width of a port access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// `in al` / `out al`.
    Byte,
    /// 16 bits.
    Word,
    /// 32 bits.
    Dword,
}

impl Width {
    /// From a byte count (1, 2 or 4).
    #[must_use]
    pub const fn from_bytes(bytes: u8) -> Option<Self> {
        match bytes {
            1 => Some(Self::Byte),
            2 => Some(Self::Word),
            4 => Some(Self::Dword),
            _ => None,
        }
    }

    /// Bytes of the access.
    #[must_use]
    pub const fn bytes(self) -> u32 {
        match self {
            Self::Byte => 1,
            Self::Word => 2,
            Self::Dword => 4,
        }
    }

    /// The access's bits of a 32-bit value.
    #[must_use]
    pub const fn mask(self) -> u32 {
        match self {
            Self::Byte => 0xff,
            Self::Word => 0xffff,
            Self::Dword => u32::MAX,
        }
    }
}

/// One port access by the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortAccess {
    /// The port.
    pub port: u16,
    /// Its width.
    pub width: Width,
    /// `Some(value)` for OUT, `None` for IN.
    pub out: Option<u32>,
}

/// What the hypervisor does with a port access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortOutcome {
    /// Perform it on the machine (IN: the machine's value goes to the guest).
    Forward,
    /// IN: give the guest this value. OUT: done (absorbed or emulated).
    Emulated(u32),
    /// The guest asked for a machine reset (the guest ends).
    Reset(ResetSource),
}

/// Which port asked for a reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetSource {
    /// Command 0xfe to the keyboard controller (port 0x64).
    KeyboardController,
    /// The chipset's reset control register (port 0xcf9).
    ResetControl,
}

/// Counts of what the guest did, for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortCounts {
    /// Accesses forwarded to the machine.
    pub forwarded: u64,
    /// Accesses emulated or absorbed here.
    pub emulated: u64,
    /// Accesses to absent ports.
    pub absent: u64,
}

/// The state of the emulated devices and the serial tap.
#[derive(Clone, Debug, Default)]
pub struct DeviceModel {
    pci: PciConfig,
    serial: SerialTap,
    counts: PortCounts,
}

const COM1: u16 = 0x3f8;
const CMOS_DATA: u16 = 0x71;
const KBC_COMMAND: u16 = 0x64;
const KBC_RESET: u32 = 0xfe;
const RESET_CONTROL: u16 = 0xcf9;
/// 0xcf9 bit 2: perform the reset the other bits select.
const RESET_CONTROL_RESET: u32 = 1 << 2;

impl DeviceModel {
    /// A machine just out of reset.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Decides `access`.
    pub fn port(&mut self, access: PortAccess) -> PortOutcome {
        let PortAccess { port, width, out } = access;
        #[derive(Clone, Copy)]
        enum Count {
            Forwarded,
            Emulated,
            Absent,
        }
        let (outcome, count) = match port {
            0x20 | 0x21 | 0xa0 | 0xa1 | 0x40..=0x43 | 0x61 | 0x70 => {
                (PortOutcome::Forward, Count::Forwarded)
            }
            CMOS_DATA => match out {
                None => (PortOutcome::Forward, Count::Forwarded),
                Some(_) => (PortOutcome::Emulated(0), Count::Emulated),
            },
            COM1..=0x3ff => {
                if let Some(value) = out {
                    self.serial.out(port - COM1, value as u8);
                }
                (PortOutcome::Forward, Count::Forwarded)
            }
            // Byte accesses at 0xcf9 are the reset control register;
            // wider ones at 0xcf8 the PCI address latch.
            RESET_CONTROL if width == Width::Byte => match out {
                Some(v) if v & RESET_CONTROL_RESET != 0 => (
                    PortOutcome::Reset(ResetSource::ResetControl),
                    Count::Emulated,
                ),
                _ => (PortOutcome::Emulated(0), Count::Emulated),
            },
            0xcf8..=0xcff => (
                PortOutcome::Emulated(self.pci.access(port, width, out)),
                Count::Emulated,
            ),
            KBC_COMMAND if out == Some(KBC_RESET) => (
                PortOutcome::Reset(ResetSource::KeyboardController),
                Count::Emulated,
            ),
            0x80 => (PortOutcome::Emulated(0), Count::Emulated),
            _ => (
                PortOutcome::Emulated(match out {
                    None => width.mask(),
                    Some(_) => 0,
                }),
                Count::Absent,
            ),
        };
        let counter = match count {
            Count::Forwarded => &mut self.counts.forwarded,
            Count::Emulated => &mut self.counts.emulated,
            Count::Absent => &mut self.counts.absent,
        };
        *counter += 1;
        outcome
    }

    /// The serial tap (the guest's console lines and markers).
    pub fn serial(&mut self) -> &mut SerialTap {
        &mut self.serial
    }

    /// What the guest did so far.
    #[must_use]
    pub const fn counts(&self) -> PortCounts {
        self.counts
    }
}
