//! `nvirt e820 …`: sanitize Linux-printed maps, synthesize guest maps, read
//! NFIT tables.

use std::fs;
use std::io::{self, Read, Write};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use nvirt_e820::nfit::Nfit;
use nvirt_e820::{Entry, GuestLayout, Kind, MemoryMap, text};

use crate::size::parse_size;

/// Entries the tool's map holds: Linux distribution kernels' E820 table size
/// (`E820_MAX_ENTRIES` with 1024 NUMA nodes).
pub(crate) const MAX_ENTRIES: usize = 3200;

type ToolMap = MemoryMap<MAX_ENTRIES>;

#[derive(Debug, Subcommand)]
pub enum E820Command {
    /// Read `[mem 0xS-0xE] kind` lines (any prefix) or `START END TYPE`
    /// triples, print the map sanitized with Linux's rules.
    Sanitize {
        /// Input file; `-` or nothing for standard input.
        file: Option<String>,
    },
    /// Print the memory map a guest with this much RAM and NVRAM sees.
    Synth(SynthArgs),
    /// Print the persistent-memory ranges of a raw ACPI NFIT table (e.g.
    /// `/sys/firmware/acpi/tables/NFIT`).
    Nfit {
        /// The table.
        file: String,
        /// List every SPA range with its type, index and attributes.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Guest RAM, e.g. 512M or 4G.
    #[arg(long, value_parser = parse_size)]
    ram: u64,
    /// Guest NVRAM, e.g. 256M (0 for none).
    #[arg(long, value_parser = parse_size)]
    nvram: u64,
    /// E820 type of the NVRAM region.
    #[arg(long, default_value = "7", value_parser = parse_nv_type)]
    nv_type: u32,
    /// Start of the PCI hole below 4 GiB (default 3G).
    #[arg(long, value_parser = parse_size)]
    pci_hole: Option<u64>,
}

fn parse_nv_type(text: &str) -> Result<u32, String> {
    match text {
        "7" => Ok(7),
        "12" => Ok(12),
        "90" => Ok(90),
        _ => Err(format!("{text:?} is not an NVRAM type (7, 12 or 90)")),
    }
}

pub(crate) fn run(cmd: E820Command) -> Result<ExitCode, String> {
    let out = match cmd {
        E820Command::Sanitize { file } => sanitize(file.as_deref())?,
        E820Command::Synth(args) => synth(&args)?,
        E820Command::Nfit { file, all } => nfit(&file, all)?,
    };
    // Everything is checked before the first byte reaches stdout.
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("writing output: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

fn read_input(file: Option<&str>) -> Result<Vec<u8>, String> {
    match file {
        None | Some("-") => {
            let mut buf = Vec::new();
            io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| format!("reading standard input: {e}"))?;
            Ok(buf)
        }
        Some(path) => fs::read(path).map_err(|e| format!("{path}: {e}")),
    }
}

fn sanitize(file: Option<&str>) -> Result<String, String> {
    let name = file.filter(|f| *f != "-").unwrap_or("<stdin>");
    let bytes = read_input(file)?;
    let input = String::from_utf8(bytes).map_err(|e| format!("{name}: not UTF-8 text: {e}"))?;
    sanitize_text(name, &input)
}

/// What `nvirt e820 sanitize` prints for `input` (errors name `name` and
/// the line).
pub fn sanitize_text(name: &str, input: &str) -> Result<String, String> {
    let mut entries: Vec<Entry> = Vec::new();
    for (n, line) in input.lines().enumerate() {
        match text::parse_line(line) {
            Ok(Some(entry)) => entries.push(entry),
            Ok(None) => {}
            Err(e) => return Err(format!("{name}:{}: {e}: {:?}", n + 1, line.trim())),
        }
        if entries.len() > MAX_ENTRIES {
            return Err(format!(
                "{name}:{}: more than {MAX_ENTRIES} entries (the E820 table size of Linux distribution kernels)",
                n + 1
            ));
        }
    }
    let map = ToolMap::from_entries(entries).map_err(|e| format!("{name}: {e}"))?;
    Ok(map.to_string())
}

fn synth(args: &SynthArgs) -> Result<String, String> {
    let mut layout = GuestLayout::new(args.ram).nvram(args.nvram, Kind::from_raw(args.nv_type));
    if let Some(start) = args.pci_hole {
        layout = layout.pci_hole_start(start);
    }
    let guest = layout.build::<64>().map_err(|e| e.to_string())?;
    Ok(guest.map.to_string())
}

fn nfit(file: &str, all: bool) -> Result<String, String> {
    let bytes = fs::read(file).map_err(|e| format!("{file}: {e}"))?;
    let nfit = Nfit::parse(&bytes).map_err(|e| format!("{file}: {e}"))?;
    let mut out = String::new();
    for range in nfit.spa_ranges() {
        if !all && !range.range_type.is_persistent_memory() {
            continue;
        }
        let kind = if range.range_type.is_persistent_memory() {
            Kind::Pmem
        } else {
            Kind::Reserved
        };
        let entry = range
            .to_entry(kind)
            .map_err(|e| format!("{file}: SPA range {}: {e}", range.index))?;
        if all {
            let proximity = range
                .proximity_domain
                .map_or_else(|| "-".to_owned(), |p| p.to_string());
            out.push_str(&format!(
                "[mem {:#018x}-{:#018x}] {:?} index={} flags={:#x} proximity={proximity} attributes={:#x}\n",
                entry.start(),
                entry.end().wrapping_sub(1),
                range.range_type,
                range.index,
                range.flags.bits(),
                range.mapping_attributes,
            ));
        } else {
            out.push_str(&format!("{entry}\n"));
        }
    }
    Ok(out)
}
