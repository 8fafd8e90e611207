//! The catalogue's datasets kept in a file beside a graph on disk, so that a start reads them back packed instead of
//! parsing every stored body again (decision 0053).
//!
//! The file holds every dataset of the views as [`PackedAsset`] bytes with its creation time and stored version, and
//! says up to which size of the audit log it follows the store, with the log's root there. A start that finds the
//! root unchanged reads the file and then only the datasets the log says changed since, as a graph on disk is
//! resumed (decision 0049). Policies, contract definitions and what waits for a second key are few and read from
//! the store at every start; the offers and texts are made from them.
//!
//! The packed form lives in memory and may change with any build, so a file is read only by the build that wrote
//! it (the same version, packed form and executable) and for the same file root (`File` paths are resolved against
//! it). A checksum over the whole file turns a torn or damaged file into a start that reads the store, never into
//! wrong answers.
//!
//! ```text
//! file    := MAGIC u32(header length) header(JSON) dataset{count} u32(CRC-32 of all before)
//! dataset := u32(n) i64(created at) i64(version) byte{n}(packed)      (integers little-endian)
//! ```

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use super::StoredAsset;
use super::packed::PackedAsset;

/// The file's name in the graph's folder.
pub const FILE: &str = "hanse-catalogue-datasets.bin";

/// The file's first bytes; the digit is this layout's, changed with it.
const MAGIC: &[u8; 8] = b"HANSEKD1";

/// Above this many bytes a dataset is not believed (a packed asset is a few kilobytes).
const MAX_DATASET: u32 = 64 << 20;

/// What a kept file says about itself.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    /// Every catalogue change the audit log holds below this size is in the file.
    pub size: u64,
    /// The log's root at that size: a file kept beside another database, or a log that is not the same, is not read.
    pub root: String,
    /// The build and file root it was written for ([`made_for`]).
    pub made_for: String,
    /// How many datasets follow.
    pub count: u64,
}

/// What a file must have been written for to be read: this build (version, packed form, the executable's size and
/// time) and the file root. `None` when the executable cannot be looked at: then nothing is kept.
pub fn made_for(file_root: &Path) -> Option<String> {
    let executable = std::env::current_exe().and_then(std::fs::metadata).ok()?;
    let modified = executable.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
    let described = [
        env!("CARGO_PKG_VERSION"),
        &PackedAsset::form(),
        &executable.len().to_string(),
        &modified.as_nanos().to_string(),
        &file_root.to_string_lossy(),
    ]
    .join("\n");
    Some(hanse_core::encode::sha256_hex(described.as_bytes()))
}

/// A writer that sums what passes through it.
struct Summed<W> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for Summed<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.crc.update(&bytes[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes `datasets` (in id order) under `header` into `dir/FILE`: aside first, synced, then renamed over the file
/// before, so that a crash leaves the old file or the new one whole.
pub fn write(dir: &Path, header: &Header, datasets: &[StoredAsset]) -> std::io::Result<()> {
    let partial = dir.join(format!("{FILE}.partial"));
    let file = std::fs::File::create(&partial)?;
    let mut out = Summed { inner: BufWriter::with_capacity(1 << 20, file), crc: crc32fast::Hasher::new() };
    let header = serde_json::to_vec(header).map_err(std::io::Error::other)?;
    out.write_all(MAGIC)?;
    out.write_all(&u32::try_from(header.len()).map_err(std::io::Error::other)?.to_le_bytes())?;
    out.write_all(&header)?;
    for dataset in datasets {
        let bytes = dataset.packed.bytes();
        out.write_all(&u32::try_from(bytes.len()).map_err(std::io::Error::other)?.to_le_bytes())?;
        out.write_all(&dataset.created_at.to_le_bytes())?;
        out.write_all(&dataset.version.to_le_bytes())?;
        out.write_all(bytes)?;
    }
    let Summed { mut inner, crc } = out;
    inner.write_all(&crc.finalize().to_le_bytes())?;
    let file = inner.into_inner().map_err(std::io::IntoInnerError::into_error)?;
    file.sync_all()?;
    std::fs::rename(&partial, dir.join(FILE))?;
    // The rename itself survives a power loss once the folder is synced.
    std::fs::File::open(dir)?.sync_all()
}

/// Removes `dir/FILE` (gone already is fine).
pub fn forget(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(dir.join(FILE)) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Why a kept file was not read.
#[derive(Debug, thiserror::Error)]
pub enum Unread {
    #[error("there is none")]
    Missing,
    #[error("it was written by another build or for another file root")]
    OtherBuild,
    #[error("it is damaged: {0}")]
    Damaged(String),
}

/// A reader that sums what it reads.
struct Summing<R> {
    inner: R,
    crc: crc32fast::Hasher,
}

impl<R: Read> Summing<R> {
    fn exact(&mut self, buffer: &mut [u8]) -> Result<(), Unread> {
        self.inner.read_exact(buffer)?;
        self.crc.update(buffer);
        Ok(())
    }

    fn u32(&mut self) -> Result<u32, Unread> {
        let mut bytes = [0; 4];
        self.exact(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn i64(&mut self) -> Result<i64, Unread> {
        let mut bytes = [0; 8];
        self.exact(&mut bytes)?;
        Ok(i64::from_le_bytes(bytes))
    }
}

/// Reads `dir/FILE` if it was written for `made_for`: its header and datasets, in the order written.
pub fn read(dir: &Path, made_for: &str) -> Result<(Header, Vec<StoredAsset>), Unread> {
    let file = match std::fs::File::open(dir.join(FILE)) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Err(Unread::Missing),
        Err(error) => return Err(error.into()),
    };
    let length = file.metadata()?.len();
    let mut input = Summing { inner: BufReader::with_capacity(1 << 20, file), crc: crc32fast::Hasher::new() };
    let mut magic = [0; 8];
    input.exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(Unread::OtherBuild);
    }
    let header_length = input.u32()?;
    if u64::from(header_length) > length {
        return Err(Unread::Damaged("its header is longer than the file".into()));
    }
    let mut header = vec![0; header_length as usize];
    input.exact(&mut header)?;
    let header: Header =
        serde_json::from_slice(&header).map_err(|error| Unread::Damaged(format!("its header: {error}")))?;
    if header.made_for != made_for {
        return Err(Unread::OtherBuild);
    }
    // Each dataset takes at least its 20 bytes of lengths and numbers: a count beyond that is not believed.
    if header.count > length / 20 {
        return Err(Unread::Damaged(format!("{} datasets do not fit in {length} bytes", header.count)));
    }
    let mut datasets = Vec::with_capacity(header.count as usize);
    for _ in 0..header.count {
        let size = input.u32()?;
        if size > MAX_DATASET {
            return Err(Unread::Damaged(format!("a dataset of {size} bytes")));
        }
        let created_at = input.i64()?;
        let version = input.i64()?;
        let mut bytes = vec![0; size as usize];
        input.exact(&mut bytes)?;
        datasets.push((bytes, created_at, version));
    }
    let computed = input.crc.clone().finalize();
    let mut sum = [0; 4];
    input.inner.read_exact(&mut sum)?;
    if u32::from_le_bytes(sum) != computed {
        return Err(Unread::Damaged("its checksum does not match".into()));
    }
    if input.inner.read(&mut [0])? != 0 {
        return Err(Unread::Damaged("bytes follow its checksum".into()));
    }
    // Only now, with the sum right, are the bytes what this build packed.
    let datasets = datasets
        .into_iter()
        .map(|(bytes, created_at, version)| StoredAsset { packed: PackedAsset::kept(bytes), created_at, version })
        .collect();
    Ok((header, datasets))
}

impl From<std::io::Error> for Unread {
    fn from(error: std::io::Error) -> Self {
        Unread::Damaged(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::model::Asset;

    fn datasets(n: usize) -> Vec<StoredAsset> {
        (0..n)
            .map(|i| {
                let body = serde_json::json!({
                    "@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"},
                    "@id": format!("dataset-{i:03}"),
                    "properties": {"title": format!("Cohort {i}"), "keyword": ["diabetes", "registry"]},
                    "dataAddress": {"type": "HttpData", "baseUrl": format!("https://h.example/{i}")}
                });
                let asset = Asset::from_body(&body, Path::new("/files")).unwrap();
                StoredAsset { packed: PackedAsset::pack(&asset), created_at: 1_700_000_000_000 + i as i64, version: 3 }
            })
            .collect()
    }

    fn header(count: usize) -> Header {
        Header { size: 42, root: "ab12".into(), made_for: "this build".into(), count: count as u64 }
    }

    #[test]
    fn datasets_kept_are_read_back_as_they_were_by_the_build_that_wrote_them_only() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(read(dir.path(), "this build"), Err(Unread::Missing)));
        let kept = datasets(50);
        write(dir.path(), &header(50), &kept).unwrap();
        let (read_header, read_back) = read(dir.path(), "this build").unwrap();
        assert_eq!(read_header, header(50));
        assert_eq!(read_back.len(), 50);
        for (read, kept) in read_back.iter().zip(&kept) {
            assert_eq!(read.packed, kept.packed);
            assert_eq!((read.created_at, read.version), (kept.created_at, kept.version));
            assert_eq!(read.packed.unpack().properties, kept.packed.unpack().properties);
        }
        assert!(matches!(read(dir.path(), "another build"), Err(Unread::OtherBuild)));
        assert!(!dir.path().join(format!("{FILE}.partial")).exists());
        forget(dir.path()).unwrap();
        forget(dir.path()).unwrap();
        assert!(matches!(read(dir.path(), "this build"), Err(Unread::Missing)));
    }

    #[test]
    fn a_damaged_or_cut_file_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &header(20), &datasets(20)).unwrap();
        let path = dir.path().join(FILE);
        let whole = std::fs::read(&path).unwrap();
        // Every single flipped byte after the magic, and every cut, is found out.
        for at in (8..whole.len()).step_by(7) {
            let mut damaged = whole.clone();
            damaged[at] ^= 0x5a;
            std::fs::write(&path, &damaged).unwrap();
            assert!(read(dir.path(), "this build").is_err(), "a byte flipped at {at}");
        }
        for length in [0, 5, 12, whole.len() / 2, whole.len() - 1] {
            std::fs::write(&path, &whole[..length]).unwrap();
            assert!(read(dir.path(), "this build").is_err(), "cut at {length}");
        }
        let mut longer = whole.clone();
        longer.push(0);
        std::fs::write(&path, &longer).unwrap();
        assert!(read(dir.path(), "this build").is_err(), "a byte after the sum");
        // A header that claims more datasets than the file can hold is refused before anything is allocated.
        let mut claims = header(20);
        claims.count = u64::MAX;
        write(dir.path(), &claims, &datasets(20)).unwrap();
        assert!(matches!(read(dir.path(), "this build"), Err(Unread::Damaged(_))));
        std::fs::write(&path, &whole).unwrap();
        assert_eq!(read(dir.path(), "this build").unwrap().1.len(), 20);
    }

    #[test]
    fn the_file_is_made_for_this_build_and_its_file_root() {
        let here = made_for(Path::new("/files")).unwrap();
        assert_eq!(made_for(Path::new("/files")).unwrap(), here);
        assert_ne!(made_for(Path::new("/other")).unwrap(), here);
    }
}
