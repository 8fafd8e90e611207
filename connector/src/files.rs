//! Where ingested tables and `File` data live (decision 0041): this node's folders by default, or S3-compatible object
//! storage that every replica of a connector shares. Both backends are `object_store` stores, each seen through two
//! areas: `tables` (content-named `<sha-256>.table` files) and `data` (the `File` datasets, named by their path
//! under `dataplane.file_root`). The rest of the connector sees only `Files` and `std::io` errors.

use crate::config::Config;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream::BoxStream};
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectMeta, ObjectStore, ObjectStoreExt};
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// Bytes as they stream out of storage.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// Read size for local files; the object store's own local stream reads 8 KiB at a time.
const LOCAL_CHUNK: usize = 256 * 1024;

/// The connector's file storage.
pub struct Files {
    tables: Arc<dyn ObjectStore>,
    data: Arc<dyn ObjectStore>,
    file_root: PathBuf,
    /// Where it is, for logs: the two folders, or the `s3://` URL.
    pub location: String,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files").field("location", &self.location).finish_non_exhaustive()
    }
}

/// An object store's error as an I/O error (a missing object is `NotFound`).
fn io(error: object_store::Error) -> std::io::Error {
    match error {
        object_store::Error::NotFound { .. } => std::io::Error::new(std::io::ErrorKind::NotFound, error.to_string()),
        other => std::io::Error::other(other.to_string()),
    }
}

impl Files {
    /// The storage `config` names: folders under the data folder and the file root, or `storage.url`.
    pub fn open(config: &Config) -> std::io::Result<Files> {
        let storage = &config.storage;
        if storage.url.is_empty() {
            return Files::folders(&config.store.data_dir.join("tables"), &config.file_root());
        }
        let rest = storage.url.strip_prefix("s3://").unwrap_or(&storage.url);
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let mut builder = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region(storage.region.as_deref().unwrap_or("us-east-1"))
            .with_allow_http(storage.allow_http);
        if let Some(endpoint) = &storage.endpoint {
            // Path-style requests (`endpoint/bucket/key`): what S3-compatible servers answer without DNS per bucket.
            builder = builder.with_endpoint(endpoint).with_virtual_hosted_style_request(false);
        }
        if let (Some(id), Some(secret)) = (&storage.access_key_id, &storage.secret_access_key) {
            builder = builder.with_access_key_id(id).with_secret_access_key(secret);
        }
        let store: Arc<dyn ObjectStore> = Arc::new(builder.build().map_err(io)?);
        let area = |name: &str| -> std::io::Result<Arc<dyn ObjectStore>> {
            let under = [prefix.trim_matches('/'), name].iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>();
            let key = Key::parse(under.join("/")).map_err(|e| std::io::Error::other(e.to_string()))?;
            Ok(Arc::new(object_store::prefix::PrefixStore::new(store.clone(), key)))
        };
        Ok(Files {
            tables: area("tables")?,
            data: area("files")?,
            file_root: config.file_root(),
            location: storage.url.clone(),
        })
    }

    /// Two local folders, made if missing: one for tables, one for `File` data.
    pub fn folders(tables: &Path, files: &Path) -> std::io::Result<Files> {
        let folder = |path: &Path| -> std::io::Result<Arc<dyn ObjectStore>> {
            std::fs::create_dir_all(path)?;
            Ok(Arc::new(object_store::local::LocalFileSystem::new_with_prefix(path).map_err(io)?))
        };
        Ok(Files {
            tables: folder(tables)?,
            data: folder(files)?,
            file_root: files.to_owned(),
            location: format!("{} and {}", tables.display(), files.display()),
        })
    }

    /// Stores the local file `from` as table `name`, streamed (a multipart upload on object storage). Nothing is
    /// visible under `name` until the whole file is.
    pub async fn put_table(&self, name: &str, from: &Path) -> std::io::Result<()> {
        let key = table_key(name)?;
        let mut file = tokio::fs::File::open(from).await?;
        let mut writer = object_store::buffered::BufWriter::new(self.tables.clone(), key);
        let copied = async {
            tokio::io::copy(&mut file, &mut writer).await?;
            writer.shutdown().await
        }
        .await;
        if let Err(error) = copied {
            let _ = writer.abort().await;
            return Err(error);
        }
        Ok(())
    }

    /// Table `name`'s bytes.
    pub async fn read_table(&self, name: &str) -> std::io::Result<Bytes> {
        self.tables.get(&table_key(name)?).await.map_err(io)?.bytes().await.map_err(io)
    }

    /// Removes table `name`; a table already gone is not an error.
    pub async fn delete_table(&self, name: &str) -> std::io::Result<()> {
        match self.tables.delete(&table_key(name)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(io(error)),
        }
    }

    /// The name in the data area of a `File` data address's path (which lies under the file root).
    fn data_key(&self, path: &Path) -> std::io::Result<Key> {
        let relative = path.strip_prefix(&self.file_root).unwrap_or(path);
        let mut parts = Vec::new();
        for component in relative.components() {
            match component {
                Component::Normal(part) => parts.push(part.to_str().ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, "a file name that is not UTF-8")
                })?),
                Component::CurDir => {}
                _ => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("{} is not under the file root", path.display()),
                    ));
                }
            }
        }
        Key::parse(parts.join("/")).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))
    }

    /// What storage knows of a `File` dataset: its size, modification time and version tag.
    pub async fn data_meta(&self, path: &Path) -> std::io::Result<ObjectMeta> {
        self.data.head(&self.data_key(path)?).await.map_err(io)
    }

    /// A `File` dataset's bytes, or those in `range`.
    pub async fn read_data(&self, path: &Path, range: Option<Range<u64>>) -> std::io::Result<ByteStream> {
        let options = GetOptions { range: range.map(GetRange::Bounded), ..GetOptions::default() };
        let got = self.data.get_opts(&self.data_key(path)?, options).await.map_err(io)?;
        let sent = got.range.clone();
        Ok(match got.payload {
            GetResultPayload::File(file, _) => {
                let mut file = tokio::fs::File::from_std(file);
                file.seek(std::io::SeekFrom::Start(sent.start)).await?;
                let reader = file.take(sent.end - sent.start);
                tokio_util::io::ReaderStream::with_capacity(reader, LOCAL_CHUNK).boxed()
            }
            GetResultPayload::Stream(stream) => stream.map_err(io).boxed(),
        })
    }
}

/// A table's name as a key: only what `hanse_compute::table::is_table_file` accepts.
fn table_key(name: &str) -> std::io::Result<Key> {
    if !hanse_compute::table::is_table_file(name) {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("`{name}` is not a table file")));
    }
    Ok(Key::from(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn folders_keep_tables_and_data_where_they_were() {
        let dir = tempfile::tempdir().unwrap();
        let (tables, data) = (dir.path().join("tables"), dir.path().join("files"));
        let files = Files::folders(&tables, &data).unwrap();
        let name = format!("{}.table", "ab".repeat(32));
        let source = dir.path().join("source");
        std::fs::write(&source, b"the table").unwrap();
        files.put_table(&name, &source).await.unwrap();
        assert_eq!(std::fs::read(tables.join(&name)).unwrap(), b"the table", "the folder layout is unchanged");
        assert_eq!(&files.read_table(&name).await.unwrap()[..], b"the table");
        files.delete_table(&name).await.unwrap();
        files.delete_table(&name).await.unwrap();
        assert_eq!(files.read_table(&name).await.unwrap_err().kind(), std::io::ErrorKind::NotFound);
        assert_eq!(files.read_table("../hanse.db").await.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);

        std::fs::create_dir_all(data.join("cohort one")).unwrap();
        std::fs::write(data.join("cohort one/visits.csv"), b"0123456789").unwrap();
        let path = data.join("cohort one/visits.csv");
        assert_eq!(files.data_meta(&path).await.unwrap().size, 10);
        let bytes: Vec<Bytes> = files.read_data(&path, Some(2..5)).await.unwrap().try_collect().await.unwrap();
        assert_eq!(bytes.concat(), b"234".to_vec());
        let missing = files.data_meta(&data.join("absent.csv")).await.unwrap_err();
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
    }
}
