//! The keys, their types and their checks: from settings to a [`VmConfig`].

use nvirt_e820::{GuestLayout, Kind};

use crate::error::{ErrorKind, ParseError};
use crate::id::{Uuid, id_from_name};
use crate::lexer::{Settings, Value};

/// One MiB: the unit of `memory`, `nvram` and `nvram_target`.
pub const MIB: u64 = 1 << 20;
/// The largest `memory` or `nvram`, in MiB: 1 TiB.
pub const MAX_MIB: u64 = 1 << 20;
/// The longest `name` (the NV pool's limit on domain names).
pub const MAX_NAME: usize = 32;
/// Sizes are multiples of this many MiB: the hypervisor maps and balloons
/// guest memory in 2 MiB blocks.
pub const GRANULE_MIB: u64 = 2;

/// When the hypervisor backs a VM's NVRAM region with pool frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Populate {
    /// All of it when the VM starts (`nvram_populate = "eager"`).
    #[default]
    Eager,
    /// Block by block on the guest's first touch (`"touch"`): thin
    /// provisioning, so the VMs' NVRAM may add up to more than the pool.
    Touch,
}

impl Populate {
    /// The value as written in a file.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Eager => "eager",
            Self::Touch => "touch",
        }
    }
}

impl core::fmt::Display for Populate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to a VM's domain in the NV pool when the VM powers off
/// (`on_poweroff`, a key of `xl.cfg`; the default differs from xl's
/// "destroy", because a domain's NVRAM is what outlives the VM).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OnPoweroff {
    /// Keep the domain and its NVRAM, marked shut down (`"preserve"`): the
    /// next start finds its data (paged out first if `nvram_file` is set).
    #[default]
    Preserve,
    /// Destroy the domain (`"destroy"`): its NVRAM is scrubbed and goes back
    /// to the pool.
    Destroy,
}

impl OnPoweroff {
    /// The value as written in a file.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Preserve => "preserve",
            Self::Destroy => "destroy",
        }
    }
}

/// One VM's configuration. Strings borrow from the parsed text; sizes are
/// in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmConfig<'a> {
    /// `name`: 1 to [`MAX_NAME`] characters of `A-Z a-z 0-9 _ . -`.
    pub name: &'a str,
    /// `uuid`, if given; [`VmConfig::domain_id`] is the id to use.
    pub uuid: Option<u128>,
    /// `memory`: RAM in bytes.
    pub memory: u64,
    /// `nvram`: NVRAM in bytes (0: none).
    pub nvram: u64,
    /// `nvram_type`: the E820 type of the guest's NVRAM region.
    pub nvram_kind: Kind,
    /// `nvram_file`: where the NVRAM goes while the VM is powered off.
    pub nvram_file: Option<&'a str>,
    /// `nvram_target`: the NVRAM balloon target in bytes the guest reads.
    pub nvram_target: u64,
    /// `nvram_populate`: back the NVRAM at start or on first touch.
    pub nvram_populate: Populate,
    /// `kernel`: the guest image (`None`: the nvirt test guest).
    pub kernel: Option<&'a str>,
    /// `ramdisk`: the guest's initial ramdisk.
    pub ramdisk: Option<&'a str>,
    /// `cmdline`: the guest kernel's command line (for the test guest:
    /// words added to the command line the hypervisor gives it).
    pub cmdline: Option<&'a str>,
    /// `on_poweroff`: keep or destroy the domain when the VM powers off.
    pub on_poweroff: OnPoweroff,
}

impl VmConfig<'_> {
    /// The VM's stable domain id in the NV pool: `uuid`, or
    /// [`id_from_name`] of the name.
    #[must_use]
    pub fn domain_id(&self) -> u128 {
        self.uuid.unwrap_or_else(|| id_from_name(self.name))
    }

    /// The NVRAM the pool must hold for the VM when it starts: all of it
    /// for [`Populate::Eager`], none for [`Populate::Touch`].
    #[must_use]
    pub const fn eager_nvram(&self) -> u64 {
        match self.nvram_populate {
            Populate::Eager => self.nvram,
            Populate::Touch => 0,
        }
    }
}

/// The keys, in the order a rendered file lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Key {
    Name,
    Uuid,
    Memory,
    Nvram,
    NvramType,
    NvramTarget,
    NvramPopulate,
    NvramFile,
    Kernel,
    Ramdisk,
    Cmdline,
    OnPoweroff,
}

impl Key {
    const ALL: [Self; 12] = [
        Self::Name,
        Self::Uuid,
        Self::Memory,
        Self::Nvram,
        Self::NvramType,
        Self::NvramTarget,
        Self::NvramPopulate,
        Self::NvramFile,
        Self::Kernel,
        Self::Ramdisk,
        Self::Cmdline,
        Self::OnPoweroff,
    ];

    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Uuid => "uuid",
            Self::Memory => "memory",
            Self::Nvram => "nvram",
            Self::NvramType => "nvram_type",
            Self::NvramTarget => "nvram_target",
            Self::NvramPopulate => "nvram_populate",
            Self::NvramFile => "nvram_file",
            Self::Kernel => "kernel",
            Self::Ramdisk => "ramdisk",
            Self::Cmdline => "cmdline",
            Self::OnPoweroff => "on_poweroff",
        }
    }

    fn find(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == key)
    }
}

/// Each key's value and line, as found.
#[derive(Default)]
struct Found<'a> {
    values: [Option<(usize, Value<'a>)>; Key::ALL.len()],
}

impl<'a> Found<'a> {
    fn get(&self, key: Key) -> Option<(usize, Value<'a>)> {
        self.values.get(key as usize).copied().flatten()
    }

    fn string(&self, key: Key) -> Result<Option<(usize, &'a str)>, ParseError<'a>> {
        match self.get(key) {
            None => Ok(None),
            Some((line, Value::Str(s))) => Ok(Some((line, s))),
            Some((line, Value::Num(_))) => Err(ParseError::at(
                line,
                ErrorKind::NotAString { key: key.name() },
            )),
        }
    }

    fn path(&self, key: Key) -> Result<Option<&'a str>, ParseError<'a>> {
        match self.string(key)? {
            Some((line, "")) => Err(ParseError::at(
                line,
                ErrorKind::EmptyPath { key: key.name() },
            )),
            other => Ok(other.map(|(_, s)| s)),
        }
    }

    /// A number, quoted or not, as xl reads one.
    fn number(&self, key: Key) -> Result<Option<(usize, u64)>, ParseError<'a>> {
        let Some((line, value)) = self.get(key) else {
            return Ok(None);
        };
        let text = match value {
            Value::Str(s) | Value::Num(s) => s,
        };
        parse_number(text)
            .map(|n| Some((line, n)))
            .ok_or(ParseError::at(
                line,
                ErrorKind::BadNumber {
                    key: key.name(),
                    text,
                },
            ))
    }

    /// A size in MiB, checked against the granule and the limit; bytes.
    fn size(&self, key: Key) -> Result<Option<(usize, u64)>, ParseError<'a>> {
        let Some((line, mib)) = self.number(key)? else {
            return Ok(None);
        };
        let key = key.name();
        if mib > MAX_MIB {
            return Err(ParseError::at(line, ErrorKind::TooLarge { key, mib }));
        }
        if mib % GRANULE_MIB != 0 {
            return Err(ParseError::at(line, ErrorKind::Unaligned { key, mib }));
        }
        Ok(Some((line, mib * MIB)))
    }
}

/// Reads a number as xl does (C's `strtoul` with base 0): `0x` hex, a
/// leading `0` octal, else decimal; an optional `+`; nothing else.
fn parse_number(text: &str) -> Option<u64> {
    let text = text.strip_prefix('+').unwrap_or(text);
    let (digits, radix) =
        if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            (hex, 16)
        } else if text.len() > 1 && text.starts_with('0') {
            (&text[1..], 8)
        } else {
            (text, 10)
        };
    // from_str_radix takes a sign of its own; one was already taken.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl<'a> VmConfig<'a> {
    /// Parses one VM's configuration file. See the crate documentation for
    /// the syntax and the keys; the first error found is returned.
    pub fn parse(text: &'a str) -> Result<Self, ParseError<'a>> {
        let mut found = Found::default();
        for setting in Settings::new(text) {
            let setting = setting?;
            let Some(key) = Key::find(setting.key) else {
                return Err(ParseError::at(
                    setting.line,
                    ErrorKind::UnknownKey { key: setting.key },
                ));
            };
            let Some(slot) = found.values.get_mut(key as usize) else {
                continue;
            };
            if let Some((first, _)) = *slot {
                return Err(ParseError::at(
                    setting.line,
                    ErrorKind::Duplicate {
                        key: key.name(),
                        first,
                    },
                ));
            }
            *slot = Some((setting.line, setting.value));
        }
        Self::from_found(&found)
    }

    fn from_found(found: &Found<'a>) -> Result<Self, ParseError<'a>> {
        let missing = |key: Key| ParseError {
            line: None,
            kind: ErrorKind::Missing { key: key.name() },
        };
        let (name_line, name) = found.string(Key::Name)?.ok_or(missing(Key::Name))?;
        if !valid_name(name) {
            return Err(ParseError::at(name_line, ErrorKind::BadName { name }));
        }
        let uuid = match found.string(Key::Uuid)? {
            None => None,
            Some((line, text)) => Some(
                Uuid::parse(text)
                    .ok_or(ParseError::at(line, ErrorKind::BadUuid { text }))?
                    .0,
            ),
        };
        let (memory_line, memory) = found.size(Key::Memory)?.ok_or(missing(Key::Memory))?;
        if memory == 0 {
            return Err(ParseError::at(memory_line, ErrorKind::ZeroMemory));
        }
        let nvram = found.size(Key::Nvram)?;
        let nvram_bytes = nvram.map_or(0, |(_, n)| n);
        let nvram_kind = match found.number(Key::NvramType)? {
            None => Kind::Pmem,
            Some((_, 7)) => Kind::Pmem,
            Some((_, 12)) => Kind::Pram,
            Some((_, 90)) => Kind::VendorNvram,
            Some((line, value)) => {
                return Err(ParseError::at(line, ErrorKind::BadNvramType { value }));
            }
        };
        let nvram_target = match found.size(Key::NvramTarget)? {
            None => nvram_bytes,
            Some((line, target)) if target > nvram_bytes => {
                return Err(ParseError::at(
                    line,
                    ErrorKind::TargetAboveNvram {
                        target_mib: target / MIB,
                        nvram_mib: nvram_bytes / MIB,
                    },
                ));
            }
            Some((_, target)) => target,
        };
        let nvram_populate = match found.string(Key::NvramPopulate)? {
            None | Some((_, "eager")) => Populate::Eager,
            Some((_, "touch")) => Populate::Touch,
            Some((line, text)) => {
                return Err(ParseError::at(line, ErrorKind::BadPopulate { text }));
            }
        };
        let nvram_file = found.path(Key::NvramFile)?;
        if let (Some(_), 0) = (nvram_file, nvram_bytes) {
            let line = found.get(Key::NvramFile).map_or(0, |(l, _)| l);
            return Err(ParseError::at(line, ErrorKind::FileWithoutNvram));
        }
        let kernel = found.path(Key::Kernel)?;
        let ramdisk = found.path(Key::Ramdisk)?;
        let cmdline = found.string(Key::Cmdline)?.map(|(_, s)| s);
        if kernel.is_none() {
            if let Some((line, _)) = found.get(Key::Ramdisk) {
                return Err(ParseError::at(
                    line,
                    ErrorKind::NeedsKernel {
                        key: Key::Ramdisk.name(),
                    },
                ));
            }
        }
        let on_poweroff = match found.string(Key::OnPoweroff)? {
            None | Some((_, "preserve")) => OnPoweroff::Preserve,
            Some((_, "destroy")) => OnPoweroff::Destroy,
            Some((line, text)) => {
                return Err(ParseError::at(line, ErrorKind::BadOnPoweroff { text }));
            }
        };
        // The hypervisor lays every guest out with this; a layout it could
        // not build is a configuration error here, not a boot failure there.
        GuestLayout::new(memory)
            .nvram(nvram_bytes, nvram_kind)
            .build::<8>()
            .map_err(|e| ParseError::at(memory_line, ErrorKind::Layout(e)))?;
        Ok(Self {
            name,
            uuid,
            memory,
            nvram: nvram_bytes,
            nvram_kind,
            nvram_file,
            nvram_target,
            nvram_populate,
            kernel,
            ramdisk,
            cmdline,
            on_poweroff,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "\
# a small VM
name = \"a\"
memory = 32
nvram = 16; nvram_type = 12
nvram_target = 8
nvram_populate = \"touch\"
nvram_file = 'a.nvram'
";

    fn err(text: &str) -> ParseError<'_> {
        VmConfig::parse(text).unwrap_err()
    }

    #[test]
    fn a_full_config() {
        let c = VmConfig::parse(A).unwrap();
        assert_eq!(
            c,
            VmConfig {
                name: "a",
                uuid: None,
                memory: 32 * MIB,
                nvram: 16 * MIB,
                nvram_kind: Kind::Pram,
                nvram_file: Some("a.nvram"),
                nvram_target: 8 * MIB,
                nvram_populate: Populate::Touch,
                kernel: None,
                ramdisk: None,
                cmdline: None,
                on_poweroff: OnPoweroff::Preserve,
            }
        );
        assert_eq!(c.domain_id(), id_from_name("a"));
        assert_eq!(c.eager_nvram(), 0);
    }

    #[test]
    fn defaults_and_xl_numbers() {
        let c = VmConfig::parse("name='b'\nmemory=\"0x20\"\n").unwrap();
        assert_eq!((c.memory, c.nvram, c.nvram_target), (32 * MIB, 0, 0));
        assert_eq!(
            (c.nvram_kind, c.nvram_populate),
            (Kind::Pmem, Populate::Eager)
        );
        let c = VmConfig::parse("name='b'\nmemory=040\nnvram=+8\n").unwrap();
        assert_eq!(
            (c.memory, c.nvram, c.nvram_target),
            (32 * MIB, 8 * MIB, 8 * MIB)
        );
        assert_eq!(c.eager_nvram(), 8 * MIB);
        let c = VmConfig::parse(
            "name = \"linux-1.x_y\"\nuuid = \"01234567-89ab-cdef-0011-223344556677\"\nmemory = 256\n\
             kernel = \"/boot/bzImage\"\nramdisk = \"initrd.cpio\"\ncmdline = \"console=ttyS0 quiet\"\n",
        )
        .unwrap();
        assert_eq!(c.domain_id(), 0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(c.kernel, Some("/boot/bzImage"));
        assert_eq!(c.ramdisk, Some("initrd.cpio"));
        assert_eq!(c.cmdline, Some("console=ttyS0 quiet"));
    }

    #[test]
    fn every_error_names_its_line() {
        let cases: &[(&str, Option<usize>, ErrorKind<'_>)] = &[
            (
                "name='a'\nmemory=8\nvcpu = 2",
                Some(3),
                ErrorKind::UnknownKey { key: "vcpu" },
            ),
            (
                "name='a'\nmemory=8\n\nmemory=16",
                Some(4),
                ErrorKind::Duplicate {
                    key: "memory",
                    first: 2,
                },
            ),
            ("memory=8", None, ErrorKind::Missing { key: "name" }),
            ("name='a'", None, ErrorKind::Missing { key: "memory" }),
            (
                "name=7\nmemory=8",
                Some(1),
                ErrorKind::NotAString { key: "name" },
            ),
            (
                "name=''\nmemory=8",
                Some(1),
                ErrorKind::BadName { name: "" },
            ),
            (
                "name='a b'\nmemory=8",
                Some(1),
                ErrorKind::BadName { name: "a b" },
            ),
            (
                "name='aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'\nmemory=8",
                Some(1),
                ErrorKind::BadName {
                    name: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                },
            ),
            (
                "name='a'\nuuid='x'\nmemory=8",
                Some(2),
                ErrorKind::BadUuid { text: "x" },
            ),
            ("name='a'\nmemory=0", Some(2), ErrorKind::ZeroMemory),
            (
                "name='a'\nmemory=7",
                Some(2),
                ErrorKind::Unaligned {
                    key: "memory",
                    mib: 7,
                },
            ),
            (
                "name='a'\nmemory=09",
                Some(2),
                ErrorKind::BadNumber {
                    key: "memory",
                    text: "09",
                },
            ),
            (
                "name='a'\nmemory=-8",
                Some(2),
                ErrorKind::BadNumber {
                    key: "memory",
                    text: "-8",
                },
            ),
            (
                "name='a'\nmemory=+-8",
                Some(2),
                ErrorKind::BadNumber {
                    key: "memory",
                    text: "+-8",
                },
            ),
            (
                "name='a'\nmemory='8M'",
                Some(2),
                ErrorKind::BadNumber {
                    key: "memory",
                    text: "8M",
                },
            ),
            (
                "name='a'\nmemory=99999999999999999999",
                Some(2),
                ErrorKind::BadNumber {
                    key: "memory",
                    text: "99999999999999999999",
                },
            ),
            (
                "name='a'\nmemory=1048578",
                Some(2),
                ErrorKind::TooLarge {
                    key: "memory",
                    mib: 1_048_578,
                },
            ),
            (
                "name='a'\nmemory=8\nnvram=3",
                Some(3),
                ErrorKind::Unaligned {
                    key: "nvram",
                    mib: 3,
                },
            ),
            (
                "name='a'\nmemory=8\nnvram_type=8",
                Some(3),
                ErrorKind::BadNvramType { value: 8 },
            ),
            (
                "name='a'\nmemory=8\nnvram=4\nnvram_target=6",
                Some(4),
                ErrorKind::TargetAboveNvram {
                    target_mib: 6,
                    nvram_mib: 4,
                },
            ),
            (
                "name='a'\nmemory=8\nnvram_populate='lazy'",
                Some(3),
                ErrorKind::BadPopulate { text: "lazy" },
            ),
            (
                "name='a'\nmemory=8\nnvram_file='x'",
                Some(3),
                ErrorKind::FileWithoutNvram,
            ),
            (
                "name='a'\nmemory=8\nnvram=4\nnvram_file=''",
                Some(4),
                ErrorKind::EmptyPath { key: "nvram_file" },
            ),
            (
                "name='a'\nmemory=8\nramdisk='r'",
                Some(3),
                ErrorKind::NeedsKernel { key: "ramdisk" },
            ),
            (
                "name='a'\nmemory=8\non_poweroff='restart'",
                Some(3),
                ErrorKind::BadOnPoweroff { text: "restart" },
            ),
            (
                "name='a'\nmemory=8\nkernel=''",
                Some(3),
                ErrorKind::EmptyPath { key: "kernel" },
            ),
            (
                "name='a'\nmemory=8\nkernel=5",
                Some(3),
                ErrorKind::NotAString { key: "kernel" },
            ),
            (
                "name='a'\nmemory=[8]",
                Some(2),
                ErrorKind::List { key: "memory" },
            ),
        ];
        for (text, line, kind) in cases {
            assert_eq!(
                err(text),
                ParseError {
                    line: *line,
                    kind: *kind
                },
                "{text:?}"
            );
        }
    }

    #[test]
    fn the_largest_sizes_lay_out() {
        let c =
            VmConfig::parse("name='big'\nmemory=1048576\nnvram=1048576\nnvram_type=90").unwrap();
        assert_eq!((c.memory, c.nvram), (1 << 40, 1 << 40));
        assert_eq!(c.nvram_kind, Kind::VendorNvram);
    }

    #[test]
    fn numbers_as_strtoul_reads_them() {
        assert_eq!(parse_number("0"), Some(0));
        assert_eq!(parse_number("00"), Some(0));
        assert_eq!(parse_number("010"), Some(8));
        assert_eq!(parse_number("0x1F"), Some(31));
        assert_eq!(parse_number("+12"), Some(12));
        for bad in [
            "", "+", "0x", "08", "1_0", "1.5", "0x+1", "++1", "1e3", "0b1",
        ] {
            assert_eq!(parse_number(bad), None, "{bad}");
        }
    }
}
