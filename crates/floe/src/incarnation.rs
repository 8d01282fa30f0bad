//! The node's incarnation: a number in its data directory, raised durably at every start and
//! every rejoin, so that a restarted or fenced node never speaks for an older self.

use std::io::Write;
use std::path::Path;

/// Read, increment and durably store the node's incarnation.
pub(crate) fn next(dir: &Path) -> std::io::Result<u64> {
    let path = dir.join("incarnation");
    let current = match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().parse::<u64>().map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    let next = current + 1;
    let tmp = dir.join("incarnation.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(f, "{next}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(next)
}
