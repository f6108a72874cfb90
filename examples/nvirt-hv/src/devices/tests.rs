use super::serial::PASS_MARKER;
use super::*;

fn out(port: u16, width: Width, value: u32) -> PortAccess {
    PortAccess {
        port,
        width,
        out: Some(value),
    }
}

fn inp(port: u16, width: Width) -> PortAccess {
    PortAccess {
        port,
        width,
        out: None,
    }
}

#[test]
fn forwards_only_the_allow_list() {
    let mut m = DeviceModel::new();
    for port in [0x20, 0x21, 0xa0, 0xa1, 0x40, 0x43, 0x61, 0x70, 0x3f8, 0x3fd] {
        assert_eq!(
            m.port(inp(port, Width::Byte)),
            PortOutcome::Forward,
            "{port:#x}"
        );
    }
    // CMOS data: reads reach the machine, writes do not.
    assert_eq!(m.port(inp(0x71, Width::Byte)), PortOutcome::Forward);
    assert_eq!(m.port(out(0x71, Width::Byte, 5)), PortOutcome::Emulated(0));
    // The debug-exit port, COM2, Super I/O probes, the i8042's data port:
    // absent.
    for port in [0xf4, 0x2f8, 0x2e, 0x4e, 0x60, 0x64, 0x87, 0x1234] {
        assert_eq!(
            m.port(inp(port, Width::Byte)),
            PortOutcome::Emulated(0xff),
            "{port:#x}"
        );
        assert_eq!(
            m.port(inp(port, Width::Dword)),
            PortOutcome::Emulated(u32::MAX)
        );
        assert_eq!(
            m.port(out(port, Width::Byte, 0x01)),
            PortOutcome::Emulated(0)
        );
    }
    assert_eq!(
        m.port(out(0x80, Width::Byte, 0x55)),
        PortOutcome::Emulated(0)
    );
    let c = m.counts();
    assert_eq!(c.forwarded, 11);
    assert_eq!(c.absent, 24);
    assert_eq!(c.emulated, 2, "the CMOS write and the POST code");
}

#[test]
fn resets_never_reach_the_machine() {
    let mut m = DeviceModel::new();
    assert_eq!(
        m.port(out(0x64, Width::Byte, 0xfe)),
        PortOutcome::Reset(ResetSource::KeyboardController)
    );
    // Linux's CF9 reset: 0x02, then 0x06.
    assert_eq!(
        m.port(out(0xcf9, Width::Byte, 0x02)),
        PortOutcome::Emulated(0)
    );
    assert_eq!(
        m.port(out(0xcf9, Width::Byte, 0x06)),
        PortOutcome::Reset(ResetSource::ResetControl)
    );
    // Other keyboard-controller commands are absorbed.
    assert_eq!(
        m.port(out(0x64, Width::Byte, 0xad)),
        PortOutcome::Emulated(0)
    );
}

#[test]
fn pci_shows_one_host_bridge() {
    let mut m = DeviceModel::new();
    let mut config = |bus: u32, dev: u32, func: u32, reg: u32, port: u16, width| {
        let addr = 1 << 31 | bus << 16 | dev << 11 | func << 8 | reg;
        assert_eq!(
            m.port(out(0xcf8, Width::Dword, addr)),
            PortOutcome::Emulated(0)
        );
        match m.port(inp(port, width)) {
            PortOutcome::Emulated(v) => v,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(config(0, 0, 0, 0, 0xcfc, Width::Dword), 0x1237_8086);
    assert_eq!(config(0, 0, 0, 0, 0xcfe, Width::Word), 0x1237);
    // Class code, as Linux's sanity check reads it (word at 0x0a).
    assert_eq!(config(0, 0, 0, 8, 0xcfe, Width::Word), 0x0600);
    assert_eq!(config(0, 0, 0, 8, 0xcfd, Width::Byte), 0x00);
    assert_eq!(config(0, 0, 0, 0x10, 0xcfc, Width::Dword), 0, "no BAR");
    assert_eq!(config(0, 1, 0, 0, 0xcfc, Width::Dword), u32::MAX);
    assert_eq!(config(1, 0, 0, 0, 0xcfc, Width::Word), 0xffff);
    assert_eq!(config(0, 0, 1, 0, 0xcfc, Width::Dword), u32::MAX);
    // Linux's mechanism-1 probe: a byte to 0xcfb, then the latch reads back.
    let mut m = DeviceModel::new();
    assert_eq!(m.port(out(0xcfb, Width::Byte, 1)), PortOutcome::Emulated(0));
    m.port(out(0xcf8, Width::Dword, 0x8000_0000));
    assert_eq!(
        m.port(inp(0xcf8, Width::Dword)),
        PortOutcome::Emulated(0x8000_0000)
    );
    // Writes to configuration space change nothing.
    m.port(out(0xcf8, Width::Dword, 0x8000_0000));
    m.port(out(0xcfc, Width::Dword, 0xdead_beef));
    assert_eq!(
        m.port(inp(0xcfc, Width::Dword)),
        PortOutcome::Emulated(0x1237_8086)
    );
    // Disabled: all ones.
    m.port(out(0xcf8, Width::Dword, 0));
    assert_eq!(
        m.port(inp(0xcfc, Width::Dword)),
        PortOutcome::Emulated(u32::MAX)
    );
}

#[test]
fn the_serial_tap_reads_markers_line_by_line() {
    let mut m = DeviceModel::new();
    let send = |m: &mut DeviceModel, text: &str| {
        let mut markers = Vec::new();
        for b in text.bytes() {
            assert_eq!(
                m.port(out(0x3f8, Width::Byte, u32::from(b))),
                PortOutcome::Forward
            );
            if let Some(line) = m.serial().take_marker() {
                markers.push(line.to_owned());
            }
        }
        markers
    };
    assert!(send(&mut m, "[    1.0] pmem0: detected\r\n").is_empty());
    assert_eq!(
        send(&mut m, "nvirt-linux: pmem0 bytes=64\r\n"),
        ["nvirt-linux: pmem0 bytes=64"]
    );
    assert!(!m.serial().passed());
    // Baud divisor writes (DLAB set) are not text.
    m.port(out(0x3fb, Width::Byte, 0x80));
    send(&mut m, "xx\n");
    m.port(out(0x3fb, Width::Byte, 0x03));
    assert_eq!(send(&mut m, &format!("{PASS_MARKER}\n")), [PASS_MARKER]);
    assert!(m.serial().passed());
    assert_eq!(m.serial().lines(), 3);
    // A PASS inside another line is no marker.
    let mut m = DeviceModel::new();
    send(&mut m, "echo nvirt-linux: PASS later\n");
    assert!(!m.serial().passed());
}

#[test]
fn msr_policy_and_log() {
    use msrs::{MsrAction, MsrLog, action};
    assert_eq!(action(msrs::EFER), MsrAction::Field);
    assert_eq!(action(msrs::PAT), MsrAction::Field);
    assert_eq!(action(msrs::TSC), MsrAction::Tsc);
    assert_eq!(action(0x1b), MsrAction::Zero, "APIC base: no local APIC");
    assert!(!msrs::PASS_THROUGH.contains(&msrs::EFER));
    let mut log = MsrLog::default();
    for i in 0..(msrs::LOG_MAX as u32 + 2) {
        log.record(i, false);
    }
    log.record(0, true);
    log.record(0, true);
    assert_eq!(log.iter().count(), msrs::LOG_MAX);
    assert_eq!(log.unrecorded, 2);
    assert_eq!(log.iter().next(), Some((0, 1, 2)));
}

#[test]
fn direct_ports_are_forwarded_ones() {
    let mut m = DeviceModel::new();
    for port in DIRECT_PORTS.into_iter().filter(|&p| p != 0x80) {
        for width in [Width::Byte, Width::Word, Width::Dword] {
            assert_eq!(m.port(inp(port, width)), PortOutcome::Forward, "{port:#x}");
        }
    }
    for never in [0x3f8, 0x71, 0xcf8, 0xcf9, 0x64, 0xf4, 0x70] {
        assert!(!DIRECT_PORTS.contains(&never), "{never:#x} must exit");
    }
}
