//! The backup directory: a local directory or a prefix in an S3 bucket, behind one interface.
//!
//! Backup files are written from streams and read back as streams (never whole), small files
//! (manifest, metadata, restore state) are read and written whole. A local small file is
//! replaced atomically (write to a temporary name, then rename), so a crash never leaves half a
//! state file. Errors name the path and the OS reason, which is what an operator needs for a
//! full disk ("No space left on device").

use std::path::{Path, PathBuf};
use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::seeding::s3::{self, MultipartWriter, S3Error};

/// Read buffer for local files.
const READ_CHUNK: usize = 256 * 1024;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(transparent)]
    S3(#[from] S3Error),
    #[error("the backup directory {0} already exists; choose another --dir-name or remove it")]
    Exists(String),
    #[error("the backup directory {0} does not exist")]
    Missing(String),
}

impl StoreError {
    /// The disk is full (ENOSPC) or over quota (EDQUOT).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::Io { source, .. } if matches!(source.raw_os_error(), Some(28) | Some(122)))
    }
}

/// Bytes read from a store file.
pub type FileStream = Pin<Box<dyn Stream<Item = Result<Bytes, StoreError>> + Send>>;

/// Where the backup files live.
#[derive(Clone)]
pub enum Store {
    Local(PathBuf),
    S3 { client: aws_sdk_s3::Client, bucket: String, prefix: String },
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

fn io(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io { path: path.display().to_string(), source }
}

impl Store {
    /// The path or `s3://bucket/prefix`, as the user would type it for `--retry-restore-dir`.
    pub fn describe(&self) -> String {
        match self {
            Store::Local(p) => p.display().to_string(),
            Store::S3 { bucket, prefix, .. } => format!("s3://{bucket}/{prefix}"),
        }
    }

    fn key(&self, name: &str) -> String {
        match self {
            Store::Local(_) => name.to_string(),
            Store::S3 { prefix, .. } => format!("{prefix}/{name}"),
        }
    }

    /// Whether the directory exists (for S3: whether anything is stored under the prefix).
    pub async fn exists(&self) -> Result<bool, StoreError> {
        match self {
            Store::Local(p) => Ok(tokio::fs::try_exists(p).await.map_err(|e| io(p, e))?),
            Store::S3 { client, bucket, prefix } => Ok(!s3::list(client, bucket, prefix).await?.is_empty()),
        }
    }

    /// Creates the directory; fails when it exists (`--dir-name` must be new).
    pub async fn create_new(&self) -> Result<(), StoreError> {
        if self.exists().await? {
            return Err(StoreError::Exists(self.describe()));
        }
        if let Store::Local(p) = self {
            tokio::fs::create_dir_all(p).await.map_err(|e| io(p, e))?;
        }
        Ok(())
    }

    /// Names of the files in the directory.
    pub async fn list(&self) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Local(p) => {
                let mut out = Vec::new();
                let mut rd = tokio::fs::read_dir(p).await.map_err(|e| io(p, e))?;
                while let Some(entry) = rd.next_entry().await.map_err(|e| io(p, e))? {
                    if entry.file_type().await.map(|t| t.is_file()).unwrap_or(false) {
                        out.push(entry.file_name().to_string_lossy().into_owned());
                    }
                }
                out.sort();
                Ok(out)
            }
            Store::S3 { client, bucket, prefix } => {
                let mut names: Vec<String> =
                    s3::list(client, bucket, prefix).await?.into_iter().map(|(n, _)| n).collect();
                names.sort();
                Ok(names)
            }
        }
    }

    pub async fn read_small(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        match self {
            Store::Local(p) => {
                let path = p.join(name);
                tokio::fs::read(&path).await.map_err(|e| io(&path, e))
            }
            Store::S3 { .. } => {
                let mut out = Vec::new();
                let mut s = self.reader(name, 0).await?;
                while let Some(c) = futures::StreamExt::next(&mut s).await {
                    out.extend_from_slice(&c?);
                }
                Ok(out)
            }
        }
    }

    /// Writes a small file whole, atomically for local directories.
    pub async fn write_small(&self, name: &str, data: &[u8]) -> Result<(), StoreError> {
        match self {
            Store::Local(p) => {
                let path = p.join(name);
                let tmp = p.join(format!(".{name}.tmp"));
                let mut f = tokio::fs::File::create(&tmp).await.map_err(|e| io(&tmp, e))?;
                f.write_all(data).await.map_err(|e| io(&tmp, e))?;
                f.sync_all().await.map_err(|e| io(&tmp, e))?;
                drop(f);
                tokio::fs::rename(&tmp, &path).await.map_err(|e| io(&path, e))
            }
            Store::S3 { client, bucket, .. } => {
                s3::put(client, bucket, &self.key(name), Bytes::copy_from_slice(data))
                    .await
                    .map_err(StoreError::from)
            }
        }
    }

    /// Opens a file for streaming writes (created or truncated).
    pub async fn writer(&self, name: &str) -> Result<FileWriter, StoreError> {
        match self {
            Store::Local(p) => {
                let path = p.join(name);
                let f = tokio::fs::File::create(&path).await.map_err(|e| io(&path, e))?;
                Ok(FileWriter::Local {
                    file: tokio::io::BufWriter::with_capacity(1024 * 1024, f),
                    path,
                    size: 0,
                })
            }
            Store::S3 { client, bucket, .. } => {
                Ok(FileWriter::S3(Box::new(MultipartWriter::new(client.clone(), bucket, &self.key(name)))))
            }
        }
    }

    /// Reads a file from byte `offset` on, as a stream of chunks.
    pub async fn reader(&self, name: &str, offset: u64) -> Result<FileStream, StoreError> {
        match self {
            Store::Local(p) => {
                let path = p.join(name);
                let mut f = tokio::fs::File::open(&path).await.map_err(|e| io(&path, e))?;
                if offset > 0 {
                    f.seek(std::io::SeekFrom::Start(offset)).await.map_err(|e| io(&path, e))?;
                }
                Ok(Box::pin(futures::stream::unfold(Some((f, path)), |state| async move {
                    let (mut f, path) = state?;
                    let mut buf = vec![0u8; READ_CHUNK];
                    match f.read(&mut buf).await {
                        Ok(0) => None,
                        Ok(n) => {
                            buf.truncate(n);
                            Some((Ok(Bytes::from(buf)), Some((f, path))))
                        }
                        Err(e) => Some((Err(io(&path, e)), None)),
                    }
                })))
            }
            Store::S3 { client, bucket, .. } => {
                let key = self.key(name);
                let body = s3::get(client, bucket, &key, offset).await?;
                let bucket = bucket.clone();
                Ok(Box::pin(futures::stream::unfold(Some((body, bucket, key)), |state| async move {
                    let (mut body, bucket, key) = state?;
                    match body.next().await {
                        None => None,
                        Some(Ok(b)) => Some((Ok(b), Some((body, bucket, key)))),
                        Some(Err(e)) => Some((
                            Err(StoreError::S3(S3Error {
                                operation: "GetObject",
                                bucket: bucket.clone(),
                                key: key.clone(),
                                detail: format!("the download was cut off: {e}"),
                                status: None,
                            })),
                            None,
                        )),
                    }
                })))
            }
        }
    }

    /// A file's size in bytes.
    pub async fn size(&self, name: &str) -> Result<u64, StoreError> {
        match self {
            Store::Local(p) => {
                let path = p.join(name);
                Ok(tokio::fs::metadata(&path).await.map_err(|e| io(&path, e))?.len())
            }
            Store::S3 { client, bucket, .. } => {
                let key = self.key(name);
                s3::size(client, bucket, &key)
                    .await?
                    .ok_or_else(|| StoreError::Missing(format!("s3://{bucket}/{key}")))
            }
        }
    }

    /// Removes a file (a partial download that will be fetched again).
    pub async fn remove(&self, name: &str) {
        match self {
            Store::Local(p) => {
                let _ = tokio::fs::remove_file(p.join(name)).await;
            }
            Store::S3 { client, bucket, .. } => {
                let _ = client.delete_object().bucket(bucket).key(self.key(name)).send().await;
            }
        }
    }
}

/// A file being written.
pub enum FileWriter {
    Local { file: tokio::io::BufWriter<tokio::fs::File>, path: PathBuf, size: u64 },
    S3(Box<MultipartWriter>),
}

impl FileWriter {
    pub async fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        match self {
            FileWriter::Local { file, path, size } => {
                file.write_all(data).await.map_err(|e| io(path, e))?;
                *size += data.len() as u64;
                Ok(())
            }
            FileWriter::S3(w) => w.write(data).await.map_err(StoreError::from),
        }
    }

    /// Flushes and closes; returns the file's size.
    pub async fn finish(self) -> Result<u64, StoreError> {
        match self {
            FileWriter::Local { mut file, path, size } => {
                file.flush().await.map_err(|e| io(&path, e))?;
                file.get_mut().sync_all().await.map_err(|e| io(&path, e))?;
                Ok(size)
            }
            FileWriter::S3(w) => w.finish().await.map_err(StoreError::from),
        }
    }

    /// Gives up on the file (an S3 multipart upload is aborted).
    pub async fn abort(self) {
        if let FileWriter::S3(mut w) = self {
            w.abort().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn local_files_round_trip_and_read_from_an_offset() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::Local(tmp.path().join("dir"));
        store.create_new().await.unwrap();
        let again = store.create_new().await.unwrap_err();
        assert!(again.to_string().contains("already exists"), "{again}");
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
        let mut w = store.writer("a.bin").await.unwrap();
        for c in data.chunks(70_001) {
            w.write(c).await.unwrap();
        }
        assert_eq!(w.finish().await.unwrap(), data.len() as u64);
        assert_eq!(store.size("a.bin").await.unwrap(), data.len() as u64);
        let mut read = Vec::new();
        let mut s = store.reader("a.bin", 12_345).await.unwrap();
        while let Some(c) = s.next().await {
            read.extend_from_slice(&c.unwrap());
        }
        assert_eq!(read, &data[12_345..]);
        store.write_small("state.json", b"{\"a\":1}").await.unwrap();
        store.write_small("state.json", b"{\"a\":2}").await.unwrap();
        assert_eq!(store.read_small("state.json").await.unwrap(), b"{\"a\":2}");
        assert_eq!(store.list().await.unwrap(), vec!["a.bin".to_string(), "state.json".to_string()]);
    }

    #[tokio::test]
    async fn writing_to_a_full_disk_says_so() {
        // /dev/full answers every write with ENOSPC, as a full file system does.
        let mut w = FileWriter::Local {
            file: tokio::io::BufWriter::with_capacity(
                16,
                tokio::fs::OpenOptions::new().write(true).open("/dev/full").await.unwrap(),
            ),
            path: PathBuf::from("/dev/full"),
            size: 0,
        };
        let r = async {
            w.write(&[0u8; 4096]).await?;
            w.finish().await
        }
        .await;
        let e = r.unwrap_err();
        assert!(e.is_disk_full(), "{e:?}");
        assert!(e.to_string().contains("No space left on device"), "{e}");
    }
}
