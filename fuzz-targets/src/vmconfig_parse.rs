//! VM configuration files (`nvirt-vmconfig`): any text gives a
//! configuration or an error on one of its lines, never a panic; what
//! parses is written back (`Display`) to text that parses to the same
//! configuration; the error messages format. Inputs holding NUL bytes are
//! split there into several files, which also go through `check_set`.

use nvirt_vmconfig::{VmConfig, check_set};

/// Runs one input.
pub fn fuzz(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut vms = Vec::new();
    for file in text.split('\0').take(8) {
        match VmConfig::parse(file) {
            Ok(vm) => {
                let rendered = vm.to_string();
                assert_eq!(VmConfig::parse(&rendered), Ok(vm), "{rendered}");
                vms.push(vm);
            }
            Err(e) => {
                if let Some(line) = e.line {
                    assert!(line >= 1 && line <= file.split('\n').count(), "{e}");
                }
                assert!(!e.in_file("f.cfg").to_string().is_empty());
            }
        }
    }
    if let Err(e) = check_set(&vms) {
        let (first, second) = e.indices();
        assert!(first < second && second < vms.len());
        let _ = e.in_files("a.cfg", "b.cfg").to_string();
    }
}
