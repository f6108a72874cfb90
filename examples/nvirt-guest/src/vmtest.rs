//! The multi-VM test roles (`nvirt.vmtest=ROLE` on the guest's command
//! line, from a VM configuration's `cmdline`): what one guest among several
//! does to show they are kept apart.
//!
//! - `secret-write`: fill all its NVRAM with a secret pattern and power
//!   off; its VM is configured `on_poweroff = "destroy"`, so the pool
//!   scrubs those frames and may give them to another VM.
//! - `secret-check`: read every word of its NVRAM (thin: backed on first
//!   touch, possibly by the frames that held another VM's secret) and
//!   require zeros before writing its own pattern over it.
//! - `probe`: after its checks, announce and touch a guest-physical page
//!   outside its map; the hypervisor must stop it there.
//! - `follow`: keep its NVRAM balloon at the target nvirt's CPUID leaf
//!   says, as the target goes down (another VM waits for frames) and back
//!   up; pass once it followed both ways.
//! - `persist`: on a first boot write a mark and a pattern over its NVRAM;
//!   on every later boot require them intact at the same guest addresses
//!   (the NVRAM may have been paged out to a file and back in between).

/// A guest's role among several VMs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Writes a secret over its NVRAM, then powers off.
    SecretWrite,
    /// Requires its NVRAM to read as zeros.
    SecretCheck,
    /// Touches memory outside its map.
    Probe,
    /// Keeps data in its NVRAM from boot to boot.
    Persist,
    /// Follows its NVRAM balloon target down and up.
    Follow,
}

/// The first word of a `persist` guest's NVRAM once it has written its
/// data ("nvPERSIS").
pub const PERSIST_MARK: u64 = 0x5349_5352_4550_766e;

/// The word a `persist` guest keeps at guest-physical `gpa`.
#[must_use]
pub const fn kept(gpa: u64) -> u64 {
    crate::pattern(gpa, 0x4b45_5054_0000_0001)
}

/// The role the command line names, if any (an unknown role is `Err` with
/// the text, so a typo fails instead of running the ordinary checks).
pub fn role_of(cmdline: &str) -> Option<Result<Role, &str>> {
    let value = cmdline
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix("nvirt.vmtest="))?;
    Some(match value {
        "secret-write" => Ok(Role::SecretWrite),
        "secret-check" => Ok(Role::SecretCheck),
        "probe" => Ok(Role::Probe),
        "persist" => Ok(Role::Persist),
        "follow" => Ok(Role::Follow),
        other => Err(other),
    })
}

/// The secret word at guest-physical `gpa`: never zero, and different at
/// every address, so no scrub-by-accident (or a copy from elsewhere) can
/// pass for it.
#[must_use]
pub const fn secret(gpa: u64) -> u64 {
    crate::pattern(gpa, 0x5345_4352_4554_0001) | 1
}

/// The page a probe touches: the first 1 GiB boundary at or above the end
/// of the guest's map (`map_end`), which no region of the map reaches.
#[must_use]
pub const fn probe_target(map_end: u64) -> u64 {
    map_end.div_ceil(1 << 30).saturating_mul(1 << 30)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_role_and_refuses_unknown_ones() {
        assert_eq!(role_of("nvirt.ram=1"), None);
        assert_eq!(
            role_of("nvirt.ram=1 nvirt.vmtest=probe"),
            Some(Ok(Role::Probe))
        );
        assert_eq!(
            role_of("nvirt.vmtest=secret-write"),
            Some(Ok(Role::SecretWrite))
        );
        assert_eq!(
            role_of("nvirt.vmtest=secret-check x"),
            Some(Ok(Role::SecretCheck))
        );
        assert_eq!(role_of("nvirt.vmtest=persist"), Some(Ok(Role::Persist)));
        assert_eq!(role_of("nvirt.vmtest=follow"), Some(Ok(Role::Follow)));
        assert_eq!(role_of("nvirt.vmtest=secrets"), Some(Err("secrets")));
    }

    #[test]
    fn secrets_are_never_zero_and_probes_lie_past_the_map() {
        for gpa in [0, 8, 0x1_0000_0000, u64::MAX - 7] {
            assert_ne!(secret(gpa), 0);
        }
        assert_ne!(secret(0), secret(8));
        assert_eq!(probe_target(0x1_0080_0000), 0x1_4000_0000);
        assert_eq!(probe_target(0x4000_0000), 0x4000_0000);
        assert_eq!(probe_target(0x100), 0x4000_0000);
    }
}
