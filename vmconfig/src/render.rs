//! Writing a configuration back as a file, every key spelled out.

use core::fmt;

use crate::config::{Key, MIB, VmConfig};
use crate::id::Uuid;

/// Writes the configuration as a file that [`VmConfig::parse`] reads back
/// to an equal value: one `key = value` line per key, defaults included,
/// sizes in MiB, optional keys only when set. A string is put in double
/// quotes, or in single quotes when it holds a double quote.
///
/// A configuration made by hand rather than parsed can hold what no file
/// can say (a string with both quote characters, a backslash or a line
/// end, a size that is not a whole MiB); it is written as is and will not
/// parse.
impl fmt::Display for VmConfig<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        string(f, Key::Name, self.name)?;
        if let Some(id) = self.uuid {
            writeln!(f, "{} = \"{}\"", Key::Uuid.name(), Uuid(id))?;
        }
        writeln!(f, "{} = {}", Key::Memory.name(), self.memory / MIB)?;
        writeln!(f, "{} = {}", Key::Nvram.name(), self.nvram / MIB)?;
        writeln!(f, "{} = {}", Key::NvramType.name(), self.nvram_kind.raw())?;
        writeln!(
            f,
            "{} = {}",
            Key::NvramTarget.name(),
            self.nvram_target / MIB
        )?;
        string(f, Key::NvramPopulate, self.nvram_populate.as_str())?;
        string(f, Key::OnPoweroff, self.on_poweroff.as_str())?;
        for (key, value) in [
            (Key::NvramFile, self.nvram_file),
            (Key::Kernel, self.kernel),
            (Key::Ramdisk, self.ramdisk),
            (Key::Cmdline, self.cmdline),
        ] {
            if let Some(value) = value {
                string(f, key, value)?;
            }
        }
        Ok(())
    }
}

fn string(f: &mut fmt::Formatter<'_>, key: Key, value: &str) -> fmt::Result {
    let quote = if value.contains('"') { '\'' } else { '"' };
    writeln!(f, "{} = {quote}{value}{quote}", key.name())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::ToString;

    use super::*;

    #[test]
    fn renders_every_key_and_reads_back() {
        let text = "name='x'\nuuid='01234567-89ab-cdef-0011-223344556677'\nmemory=64\nnvram=32\n\
                    nvram_type=90\nnvram_target=16\nnvram_populate='touch'\nnvram_file='say \"x\".img'\n\
                    kernel='k'\nramdisk='r'\ncmdline='console=ttyS0'\non_poweroff='destroy'\n";
        let c = VmConfig::parse(text).unwrap();
        let rendered = c.to_string();
        assert_eq!(
            rendered,
            "name = \"x\"\nuuid = \"01234567-89ab-cdef-0011-223344556677\"\nmemory = 64\nnvram = 32\n\
             nvram_type = 90\nnvram_target = 16\nnvram_populate = \"touch\"\non_poweroff = \"destroy\"\n\
             nvram_file = 'say \"x\".img'\nkernel = \"k\"\nramdisk = \"r\"\ncmdline = \"console=ttyS0\"\n"
        );
        assert_eq!(VmConfig::parse(&rendered), Ok(c));
    }
}
