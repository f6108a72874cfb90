//! The scheduling timer: the PC's interval timer (8254 PIT, channel 0)
//! behind the 8259 interrupt controllers, owned by the hypervisor when it
//! runs several guests.
//!
//! Its interrupt never reaches an IDT. Both backends turn a pending
//! physical interrupt into a VM exit (SVM's INTR intercept with
//! V_INTR_MASKING, VMX's external-interrupt exiting without
//! acknowledgement), and the hypervisor then takes the interrupt from the
//! controller by polling it (OCW3 poll command), which acknowledges it as
//! an interrupt cycle would. VMX has a timer of its own, the VMX-preemption
//! timer, which counts TSC ticks: the PIT measures the slice in those, so a
//! time slice is the same length on AMD and Intel.

use super::io::{inb, outb, rdtsc};

/// The PIT's input clock, in Hz.
const PIT_HZ: u64 = 1_193_182;
/// The master and slave controllers' command and data ports.
const MASTER: (u16, u16) = (0x20, 0x21);
const SLAVE: (u16, u16) = (0xa0, 0xa1);
/// Vectors the controllers would use (never delivered: no IDT entries).
const MASTER_VECTOR: u8 = 0x20;
const SLAVE_VECTOR: u8 = 0x28;

/// The time slice the PIT was set to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SliceLength {
    /// In microseconds (what the divisor gives).
    pub(crate) us: u64,
    /// In TSC ticks, measured against the PIT (`None` if the PIT's count
    /// could not be seen to wrap).
    pub(crate) tsc: Option<u64>,
}

/// Programs the controllers (only IRQ 0 unmasked) and the PIT's channel 0
/// as a rate generator of one interrupt every `slice_us` microseconds, and
/// measures the slice in TSC ticks (VMX's preemption timer counts those).
pub(crate) fn start(slice_us: u64) -> SliceLength {
    let divisor = (PIT_HZ * slice_us / 1_000_000).clamp(2, 0xffff);
    let init = [
        // ICW1: edge triggered, cascade, ICW4 follows.
        (MASTER.0, 0x11),
        (SLAVE.0, 0x11),
        // ICW2: vector bases; ICW3: the slave on IRQ 2; ICW4: 8086 mode.
        (MASTER.1, MASTER_VECTOR),
        (SLAVE.1, SLAVE_VECTOR),
        (MASTER.1, 0x04),
        (SLAVE.1, 0x02),
        (MASTER.1, 0x01),
        (SLAVE.1, 0x01),
        // OCW1: everything masked but the timer.
        (MASTER.1, 0xfe),
        (SLAVE.1, 0xff),
        // PIT: channel 0, low then high byte, mode 2 (rate generator).
        (0x43, 0x34),
        (0x40, divisor as u8),
        (0x40, (divisor >> 8) as u8),
    ];
    for (port, value) in init {
        // SAFETY: the interrupt controllers and the PIT, programmed in
        // their documented order; with several guests no guest reaches
        // these ports (the device model drops their accesses).
        unsafe { outb(port, value) };
    }
    SliceLength {
        us: divisor * 1_000_000 / PIT_HZ,
        tsc: tsc_per_period(),
    }
}

/// Most counter reads while waiting for the PIT to reload: far more than
/// one period takes anywhere, so a PIT that does not count cannot hang the
/// boot.
const READS_MAX: u32 = 50_000_000;

/// TSC ticks between two reloads of channel 0's count.
fn tsc_per_period() -> Option<u64> {
    wait_for_reload()?;
    let start = rdtsc();
    wait_for_reload()?;
    Some(rdtsc().wrapping_sub(start))
}

/// Waits until the rate generator reloads its count (the count read goes up).
fn wait_for_reload() -> Option<()> {
    let mut last = count();
    for _ in 0..READS_MAX {
        let now = count();
        if now > last {
            return Some(());
        }
        last = now;
    }
    None
}

/// Channel 0's current count.
fn count() -> u16 {
    // SAFETY: the counter-latch command for channel 0; nothing else uses
    // the PIT while the hypervisor owns it.
    unsafe { outb(0x43, 0x00) };
    // SAFETY: the latched count's low byte, then its high byte.
    let low = unsafe { inb(0x40) };
    // SAFETY: as above.
    let high = unsafe { inb(0x40) };
    u16::from_le_bytes([low, high])
}

/// Takes a pending interrupt from the master controller (poll, then
/// end of interrupt); the IRQ it was, if any.
pub(crate) fn acknowledge() -> Option<u8> {
    // SAFETY: OCW3 with the poll bit; the next read of the command port
    // returns and acknowledges the highest pending request.
    unsafe { outb(MASTER.0, 0x0c) };
    // SAFETY: as above.
    let polled = unsafe { inb(MASTER.0) };
    // SAFETY: a non-specific end of interrupt, so the next tick can be
    // raised.
    unsafe { outb(MASTER.0, 0x20) };
    (polled & 0x80 != 0).then_some(polled & 7)
}

/// Stops the timer: IRQ 0 masked again.
pub(crate) fn stop() {
    // SAFETY: OCW1 on the master controller: every line masked.
    unsafe { outb(MASTER.1, 0xff) };
    let _ = acknowledge();
}
