//! `nvirt pool export` and `import`: a domain's NVRAM paged out to a file
//! (format in `pool_file.rs`) and freed in the pool, and brought back at the
//! same guest frames in new machine frames. Both are crash-safe: export
//! syncs its file (and directory) before the pool frees the domain; import
//! creates the domain marked incomplete, populates it, copies and syncs the
//! data, and only then marks it complete, so an interrupted import leaves an
//! incomplete domain that running the import again replaces.

use std::fs::File;
use std::io::BufWriter;

use nvirt_nvpool::{DomainState, NvPool};

use crate::pool_cmd::resolve;
use crate::pool_file::{self, Exported, FilePmem};

pub(crate) fn export(
    pool: &mut NvPool<'_, FilePmem>,
    domain: &str,
    file: &str,
    force: bool,
) -> Result<(), String> {
    let dom = resolve(pool, domain)?;
    let info = pool.domain(dom).ok_or("domain vanished")?;
    match info.state {
        DomainState::ShutDown => {}
        DomainState::CrashedWhileRunning if force => {}
        state => {
            return Err(format!(
                "domain {domain} is {state}: only a shut-down domain is exported (--force for a crashed one)"
            ));
        }
    }
    let exported = Exported {
        id: info.id,
        name: info.name.to_owned(),
        quota: info.quota,
        extents: pool_file::listed(pool.extents(dom)),
    };
    // Never over an existing file: it may be an earlier export whose
    // domain is gone from the pool, or the image itself.
    let f = File::options()
        .write(true)
        .create_new(true)
        .open(file)
        .map_err(|e| format!("{file}: {e}"))?;
    let written = write_export(pool, dom, &exported, f, file);
    if written.is_err() {
        // Nothing was freed; a partial file would only block the retry.
        let _ = std::fs::remove_file(file);
    }
    written?;
    pool.destroy(dom).map_err(|e| e.to_string())?;
    println!(
        "exported domain id={} name={} frames={} extents={} to {file}; freed in the pool",
        exported.id,
        exported.name,
        exported.frames(),
        exported.extents.len()
    );
    Ok(())
}

/// Writes the export of `dom` to the new file `f` and makes it durable.
fn write_export(
    pool: &NvPool<'_, FilePmem>,
    dom: nvirt_nvpool::Dom,
    exported: &Exported,
    f: File,
    file: &str,
) -> Result<(), String> {
    let mut w = BufWriter::new(f);
    let mut crc = 0;
    pool_file::start_export(&mut w, exported, &mut crc)?;
    let mut frame = vec![0u8; 4096];
    for &(gpfn, order) in &exported.extents {
        for i in 0..1u64 << order {
            let g = gpfn.checked_add(i).ok_or("guest frame out of range")?;
            pool.read_guest(dom, g, 0, &mut frame)
                .map_err(|e| e.to_string())?;
            pool_file::put(&mut w, &frame, &mut crc)?;
        }
    }
    // A frame that could not be read from the image came back as zeros.
    pool.region()
        .check_io()
        .map_err(|e| format!("reading the pool: {e}"))?;
    pool_file::finish_export(&mut w, crc)?;
    let f = w.into_inner().map_err(|e| format!("{file}: {e}"))?;
    // The file must be durable before the pool forgets the data.
    f.sync_all().map_err(|e| format!("{file}: {e}"))?;
    if let Some(dir) = std::path::Path::new(file).parent() {
        let dir = if dir.as_os_str().is_empty() {
            std::path::Path::new(".")
        } else {
            dir
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    Ok(())
}

pub(crate) fn import(
    pool: &mut NvPool<'_, FilePmem>,
    domain: &Exported,
    data: &[u8],
) -> Result<(), String> {
    if let Some(old) = pool.find(domain.id) {
        let state = pool.domain(old).map(|d| d.state);
        if state != Some(DomainState::Incomplete) {
            return Err(format!("domain {} is already in the pool", domain.id));
        }
        // An import a crash interrupted: start over.
        pool.destroy(old).map_err(|e| e.to_string())?;
    }
    let dom = pool
        .create_incomplete(domain.id, &domain.name, domain.quota)
        .map_err(|e| e.to_string())?;
    for &(gpfn, order) in &domain.extents {
        pool.populate(dom, gpfn, 1 << order)
            .map_err(|e| e.to_string())?;
    }
    let mut frames = data.chunks_exact(4096);
    for &(gpfn, order) in &domain.extents {
        for i in 0..1u64 << order {
            let g = gpfn.checked_add(i).ok_or("guest frame out of range")?;
            let frame = frames.next().ok_or("export data ends early")?;
            pool.write_guest(dom, g, 0, frame)
                .map_err(|e| e.to_string())?;
        }
    }
    // The data must be durable before the domain is complete.
    pool.persist();
    pool.region()
        .check_io()
        .map_err(|e| format!("writing the pool: {e}"))?;
    pool.mark_complete(dom).map_err(|e| e.to_string())?;
    println!(
        "imported domain id={} name={} frames={} extents-in-file={} slot={}",
        domain.id,
        domain.name,
        domain.frames(),
        domain.extents.len(),
        dom.slot()
    );
    Ok(())
}
