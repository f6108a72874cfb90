//! `nvirt ept plan`: build the EPT or NPT tables the `nvirt-ept` crate would
//! build for a set of mappings, in host memory, and print what they hold:
//! exactly four lines `1G N`, `2M N`, `4K N`, `tables N` (paging-structure
//! pages, root included).

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use nvirt_ept::host::HostFrames;
use nvirt_ept::{Config, Ept, Format, GuestPhysAddr, HostPhysAddr, MemType, Npt, Perms, Tables};

use crate::size::parse_size;

/// Frames the tool's frame source can hand out (host memory, allocated as
/// tables are built): 1 GiB of tables, enough for 512 GiB of 4 KiB pages;
/// a plan beyond that is refused with the crate's out-of-frames error
/// rather than exhausting the machine.
const MAX_FRAMES: usize = 1 << 18;

#[derive(Debug, Subcommand)]
pub enum EptCommand {
    /// Build the tables for the given mappings and print the number of
    /// 1 GiB, 2 MiB and 4 KiB pages and of paging-structure pages.
    Plan(PlanArgs),
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Entry format: Intel EPT or AMD NPT.
    #[arg(long, value_enum)]
    format: FormatArg,
    /// The processor has no 1 GiB pages in these tables.
    #[arg(long)]
    no_1g: bool,
    /// A mapping GPA:HPA:LEN (hex `0x…`, decimal, or sizes like `4G`),
    /// applied in order; overlapping mappings are an error.
    #[arg(long = "map", value_name = "GPA:HPA:LEN", required = true, value_parser = parse_mapping)]
    maps: Vec<Mapping>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FormatArg {
    Ept,
    Npt,
}

#[derive(Clone, Copy, Debug)]
struct Mapping {
    gpa: u64,
    hpa: u64,
    len: u64,
}

fn parse_mapping(text: &str) -> Result<Mapping, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let [gpa, hpa, len] = parts.as_slice() else {
        return Err(format!("{text:?} is not GPA:HPA:LEN"));
    };
    Ok(Mapping {
        gpa: parse_size(gpa)?,
        hpa: parse_size(hpa)?,
        len: parse_size(len)?,
    })
}

pub(crate) fn run(cmd: EptCommand) -> Result<ExitCode, String> {
    let EptCommand::Plan(args) = cmd;
    let config = Config::new().pages_1g(!args.no_1g);
    let out = match args.format {
        FormatArg::Ept => plan(Ept::new(), config, &args.maps)?,
        FormatArg::Npt => plan(Npt::new(), config, &args.maps)?,
    };
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("writing output: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

/// Builds the tables for real and counts what they hold.
fn plan<F: Format>(format: F, config: Config, maps: &[Mapping]) -> Result<String, String> {
    let frames = HostFrames::new(HostPhysAddr::ZERO, MAX_FRAMES);
    let mut tables =
        Tables::new(format, &frames, config, &mut &frames).map_err(|e| e.to_string())?;
    for m in maps {
        let bad = |e: &dyn std::fmt::Display| {
            format!("--map {:#x}:{:#x}:{:#x}: {e}", m.gpa, m.hpa, m.len)
        };
        let gpa = GuestPhysAddr::try_from(m.gpa).map_err(|e| bad(&e))?;
        let hpa = HostPhysAddr::try_from(m.hpa).map_err(|e| bad(&e))?;
        // A plan shows the layout, so the attributes are the common ones.
        let _ = tables
            .map(&mut &frames, gpa, hpa, m.len, Perms::RWX, MemType::Wb)
            .map_err(|e| bad(&e))?;
    }
    // Merges retire tables; they are no longer part of the structure.
    tables.reclaim(&mut &frames);
    let counts = tables.page_counts();
    Ok(format!(
        "1G {}\n2M {}\n4K {}\ntables {}\n",
        counts.size_1g,
        counts.size_2m,
        counts.size_4k,
        tables.table_count()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(format: FormatArg, no_1g: bool, maps: &[&str]) -> Result<String, String> {
        let maps: Vec<Mapping> = maps
            .iter()
            .map(|m| parse_mapping(m))
            .collect::<Result<_, _>>()?;
        let config = Config::new().pages_1g(!no_1g);
        match format {
            FormatArg::Ept => plan(Ept::new(), config, &maps),
            FormatArg::Npt => plan(Npt::new(), config, &maps),
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_size("0xab"), Ok(0xab));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("0x1G"), Ok(1 << 30));
        assert!(parse_mapping("0:0").is_err());
    }

    #[test]
    fn plans() {
        // 4 GiB identity: four 1 GiB pages in one PDPT.
        assert_eq!(
            plan_of(FormatArg::Ept, false, &["0:0:4G"]).unwrap(),
            "1G 4\n2M 0\n4K 0\ntables 2\n"
        );
        assert_eq!(
            plan_of(FormatArg::Npt, true, &["0:0:4G"]).unwrap(),
            "1G 0\n2M 2048\n4K 0\ntables 6\n"
        );
        // Host only 2 MiB-aligned relative to the guest; then 4 KiB tails.
        assert_eq!(
            plan_of(FormatArg::Npt, false, &["0x40000000:0x80200000:0x40201000"]).unwrap(),
            "1G 0\n2M 513\n4K 1\ntables 5\n"
        );
        // Two halves of one 2 MiB page merge into it.
        assert_eq!(
            plan_of(FormatArg::Ept, false, &["0:0x200000:1M", "1M:0x300000:1M"]).unwrap(),
            "1G 0\n2M 1\n4K 0\ntables 3\n"
        );
        assert!(
            plan_of(FormatArg::Ept, false, &["0:0:8K", "4K:0:4K"])
                .unwrap_err()
                .contains("already mapped")
        );
        assert!(plan_of(FormatArg::Ept, false, &["0x800:0:4K"]).is_err());
    }
}
