//! Files written whole. A run, sweep or plan folder is read back by other
//! processes (`kfsim compare`, `kfsim merge`, `kfsim report`, a CI step),
//! and any writer may be killed half-way: each file goes to a temporary
//! name beside it and is renamed into place, so a reader finds the old file
//! or the new one, never the front half of one.

use std::io::{Read, Write};
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

/// The largest file kfsim reads back (a summary of a million agents is
/// about 220 MB): past it, the file is not one kfsim wrote.
pub const MAX_READ_BYTES: u64 = 1 << 30;

/// The text of a JSON object file kfsim wrote (a summary, its series, its
/// histograms, a comparison), read whole but never past
/// [`MAX_READ_BYTES`]: a path naming a device or an endless pipe
/// (`/dev/zero`) took all memory. A file that does not begin as an object
/// is refused at its first bytes. A byte-order mark before it is dropped.
pub fn read_json_text(path: &Path) -> anyhow::Result<String> {
    let reading = || format!("reading {}", path.display());
    let mut file = std::fs::File::open(path).with_context(reading)?.take(MAX_READ_BYTES + 1);
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    // A byte-order mark, which editors on Windows put first, is not part
    // of the text: with it a summary was "not valid JSON" (found by probing).
    const BOM: &[u8] = b"\xef\xbb\xbf";
    let mut mark = 0;
    // the first bytes alone say whether it can be JSON
    loop {
        let from = bytes.len();
        let n = file.read(&mut chunk).with_context(reading)?;
        bytes.extend_from_slice(&chunk[..n]);
        if from < BOM.len() {
            if n > 0 && bytes.len() < BOM.len() && BOM.starts_with(&bytes) {
                continue; // a mark not read whole yet
            }
            mark = if bytes.starts_with(BOM) { BOM.len() } else { 0 };
        }
        match bytes[from.max(mark)..].iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => break,
            Some(_) => {
                anyhow::bail!("{} is not valid JSON: a kfsim file is a JSON object, `{{…}}`", path.display())
            }
            None if n == 0 => break, // empty or blank: the parser says so
            None => {}
        }
    }
    file.read_to_end(&mut bytes).with_context(reading)?;
    bytes.drain(..mark);
    anyhow::ensure!(
        bytes.len() as u64 <= MAX_READ_BYTES,
        "{} is larger than {} GiB: not a file kfsim wrote",
        path.display(),
        MAX_READ_BYTES >> 30
    );
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{} is not valid JSON: not UTF-8 at byte {}",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

/// `text` parsed as JSON, refusing an object with a key twice: serde_json
/// keeps the last, so a summary edited or concatenated by hand (two
/// `service_level`s) was compared by whichever came last, silently (found
/// by probing). Line and column are the duplicate's.
pub fn parse_unique_keys(text: &str) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::from_str::<Unique>(text).map(|u| u.0)
}

/// A JSON value whose objects have each key once (see [`parse_unique_keys`]).
struct Unique(serde_json::Value);

impl<'de> serde::Deserialize<'de> for Unique {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut v = Vec::new();
        while let Some(Unique(x)) = seq.next_element()? {
            v.push(x);
        }
        Ok(v.into())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut m = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if m.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!("the key `{key}` appears twice")));
            }
            let Unique(value) = map.next_value()?;
            m.insert(key, value);
        }
        Ok(m.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_with_a_key_twice_is_refused_where_it_repeats() {
        let v = parse_unique_keys(r#"{"a": [1, -2, 2.5, "x", null, true], "b": {"c": {}}}"#).unwrap();
        assert_eq!(v, serde_json::json!({"a": [1, -2, 2.5, "x", null, true], "b": {"c": {}}}));
        let e = parse_unique_keys("{\n \"a\": 1,\n \"b\": {\"c\": 1,\n \"c\": 2}}").unwrap_err();
        assert_eq!((e.line(), e.classify()), (4, serde_json::error::Category::Data), "{e}");
        assert!(e.to_string().contains("the key `c` appears twice"), "{e}");
        // the same key in two objects is not a repeat
        assert!(parse_unique_keys(r#"[{"a": 1}, {"a": 2}]"#).is_ok());
        assert_eq!(parse_unique_keys("{").unwrap_err().classify(), serde_json::error::Category::Eof);
    }

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

    #[test]
    fn a_file_read_back_is_refused_early_when_it_cannot_be_json() {
        // /dev/zero was read until memory ran out
        let e = read_json_text(Path::new("/dev/zero")).unwrap_err();
        assert!(format!("{e:#}").contains("is not valid JSON"), "{e:#}");
        let dir = std::env::temp_dir().join(format!("kfsim-files-json-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("summary.json");
        std::fs::write(&path, " \n {\"a\": 1}").unwrap();
        assert_eq!(read_json_text(&path).unwrap(), " \n {\"a\": 1}");
        std::fs::write(&path, "").unwrap();
        assert_eq!(read_json_text(&path).unwrap(), "");
        std::fs::write(&path, "[1]").unwrap();
        assert!(read_json_text(&path).is_err());
        // an editor's byte-order mark is not part of the text (it was
        // "not valid JSON"); one elsewhere is still refused
        std::fs::write(&path, "\u{feff}{\"a\": 1}").unwrap();
        assert_eq!(read_json_text(&path).unwrap(), "{\"a\": 1}");
        std::fs::write(&path, "\u{feff}\n[1]").unwrap();
        assert!(read_json_text(&path).is_err());
        std::fs::write(&path, " \u{feff}{}").unwrap();
        assert!(read_json_text(&path).is_err());
        let missing = read_json_text(&dir.join("none.json")).unwrap_err();
        assert!(format!("{missing:#}").starts_with("reading "), "{missing:#}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
