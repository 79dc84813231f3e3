//! Files written whole. A run, sweep or plan folder is read back by other
//! processes (`kfsim compare`, `kfsim merge`, `kfsim report`, a CI step),
//! and any writer may be killed half-way: each file goes to a temporary
//! name beside it and is renamed into place, so a reader finds the old file
//! or the new one, never the front half of one.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// Write `path` with `fill`, whole (see the module).
pub fn write_whole(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    // hidden and named by process: no reader globs it, no other writer shares it
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        fill(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::Error::new(e).context(format!("writing {}", path.display()))
    })
}

/// Remove `path` if it is there: the file of an earlier run that this one
/// writes again last, so that until then the folder does not pass for a
/// whole one.
pub fn remove_stale(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = std::env::temp_dir().join(format!("kfsim-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("summary.json");
        write_whole(&path, |w| w.write_all(b"old\n")).unwrap();
        let e = write_whole(&path, |w| {
            w.write_all(b"the front half")?;
            Err(std::io::Error::other("killed"))
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("summary.json"), "{e:#}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\n");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["summary.json"]);
        remove_stale(&path).unwrap();
        remove_stale(&path).unwrap();
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
