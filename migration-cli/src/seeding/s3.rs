//! S3 staging of the backup directory (`--s3-bucket`), through the AWS SDK instead of a mount.
//!
//! The client uses the standard credential and region chain. When an endpoint override is set
//! (`AWS_ENDPOINT_URL` or `AWS_ENDPOINT_URL_S3`: an S3-compatible store, or moto in tests) it
//! addresses buckets path-style, since such endpoints rarely serve bucket sub-domains.
//!
//! Ownership is checked as AWS's script does (`verify_s3_bucket_ownership`): STS
//! `GetCallerIdentity` gives the account, then `HeadBucket` with `ExpectedBucketOwner` answers
//! 403 when another account owns the bucket, 404 when there is none.
//!
//! Files are written with multipart uploads (parts of [`PART_SIZE`]; S3 and moto refuse
//! non-final parts under 5 MiB) from a stream, so a shard never sits whole in memory.

use aws_config::BehaviorVersion;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};

/// Multipart part size: above S3's 5 MiB minimum, small enough that several parallel
/// transfers stay well inside the memory budget.
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// An S3 failure, with the operation and the bucket.
#[derive(Debug, thiserror::Error)]
#[error("S3 {operation} on s3://{bucket}/{key}: {detail}")]
pub struct S3Error {
    pub operation: &'static str,
    pub bucket: String,
    pub key: String,
    pub detail: String,
    /// HTTP status of the answer, when there was one.
    pub status: Option<u16>,
}

fn s3_error<E>(
    operation: &'static str,
    bucket: &str,
    key: &str,
    e: &aws_sdk_s3::error::SdkError<E, HttpResponse>,
) -> S3Error
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    let detail = match e {
        aws_sdk_s3::error::SdkError::ServiceError(se) => {
            let err = se.err();
            match (err.code(), err.message()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_string(),
                _ => format!("HTTP {}", status.unwrap_or(0)),
            }
        }
        other => shared::influx_client::error_chain(other),
    };
    S3Error { operation, bucket: bucket.into(), key: key.into(), detail, status }
}

/// An S3 client from the standard chain, path-style when an endpoint override is set.
pub async fn client() -> Client {
    let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let overridden = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
    let s3 = aws_sdk_s3::config::Builder::from(&config).force_path_style(overridden).build();
    Client::from_conf(s3)
}

/// The outcome of the ownership check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// The caller's account owns the bucket.
    Owned { account: String },
    /// The bucket exists but another account owns it (HeadBucket answered 403).
    NotOwned { account: String },
}

/// Why the ownership check could not conclude.
#[derive(Debug, thiserror::Error)]
pub enum OwnershipError {
    #[error("the S3 bucket {0:?} given with --s3-bucket does not exist; check its name and try again")]
    Missing(String),
    #[error("STS GetCallerIdentity failed (are AWS credentials configured?): {0}")]
    Identity(String),
    #[error("could not check the S3 bucket {bucket:?}: {detail}")]
    Other { bucket: String, detail: String },
}

/// What a HeadBucket status means for ownership (403: someone else's, 404: none).
pub fn classify_head_bucket(
    bucket: &str,
    account: &str,
    status: Option<u16>,
    detail: String,
) -> Result<Ownership, OwnershipError> {
    match status {
        Some(403) => Ok(Ownership::NotOwned { account: account.to_string() }),
        Some(404) => Err(OwnershipError::Missing(bucket.to_string())),
        _ => Err(OwnershipError::Other { bucket: bucket.to_string(), detail }),
    }
}

/// STS GetCallerIdentity, then HeadBucket with ExpectedBucketOwner.
pub async fn check_ownership(client: &Client, bucket: &str) -> Result<Ownership, OwnershipError> {
    let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let sts = aws_sdk_sts::Client::new(&config);
    let identity = sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| OwnershipError::Identity(shared::influx_client::error_chain(&e)))?;
    let account = identity.account().unwrap_or_default().to_string();
    match client.head_bucket().bucket(bucket).expected_bucket_owner(&account).send().await {
        Ok(_) => Ok(Ownership::Owned { account }),
        Err(e) => {
            let err = s3_error("HeadBucket", bucket, "", &e);
            classify_head_bucket(bucket, &account, err.status, err.detail)
        }
    }
}

/// Keys directly under `prefix/` (names only).
pub async fn list(client: &Client, bucket: &str, prefix: &str) -> Result<Vec<(String, u64)>, S3Error> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    let dir = format!("{}/", prefix.trim_end_matches('/'));
    loop {
        let mut req = client.list_objects_v2().bucket(bucket).prefix(&dir);
        if let Some(t) = &token {
            req = req.continuation_token(t);
        }
        let page = req.send().await.map_err(|e| s3_error("ListObjectsV2", bucket, &dir, &e))?;
        for o in page.contents() {
            if let Some(k) = o.key()
                && let Some(name) = k.strip_prefix(&dir)
                && !name.contains('/')
            {
                out.push((name.to_string(), o.size().unwrap_or(0).max(0) as u64));
            }
        }
        match page.next_continuation_token() {
            Some(t) if page.is_truncated().unwrap_or(false) => token = Some(t.to_string()),
            _ => return Ok(out),
        }
    }
}

/// An object's size (`HeadObject`); `None` when there is no such object.
pub async fn size(client: &Client, bucket: &str, key: &str) -> Result<Option<u64>, S3Error> {
    match client.head_object().bucket(bucket).key(key).send().await {
        Ok(head) => Ok(Some(head.content_length().unwrap_or(0).max(0) as u64)),
        Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(404) => Ok(None),
        Err(e) => Err(s3_error("HeadObject", bucket, key, &e)),
    }
}

/// Reads an object from byte `offset` on, as a stream.
pub async fn get(client: &Client, bucket: &str, key: &str, offset: u64) -> Result<ByteStream, S3Error> {
    let mut req = client.get_object().bucket(bucket).key(key);
    if offset > 0 {
        req = req.range(format!("bytes={offset}-"));
    }
    let out = req.send().await.map_err(|e| s3_error("GetObject", bucket, key, &e))?;
    Ok(out.body)
}

/// Writes a small object in one request.
pub async fn put(client: &Client, bucket: &str, key: &str, data: Bytes) -> Result<(), S3Error> {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(data))
        .send()
        .await
        .map_err(|e| s3_error("PutObject", bucket, key, &e))?;
    Ok(())
}

/// A streaming upload: parts go out as they fill; small files become one PutObject.
pub struct MultipartWriter {
    client: Client,
    bucket: String,
    key: String,
    buf: BytesMut,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    size: u64,
}

impl MultipartWriter {
    pub fn new(client: Client, bucket: &str, key: &str) -> MultipartWriter {
        MultipartWriter {
            client,
            bucket: bucket.into(),
            key: key.into(),
            buf: BytesMut::with_capacity(64 * 1024),
            upload_id: None,
            parts: Vec::new(),
            size: 0,
        }
    }

    pub async fn write(&mut self, data: &[u8]) -> Result<(), S3Error> {
        self.buf.extend_from_slice(data);
        self.size += data.len() as u64;
        while self.buf.len() >= PART_SIZE {
            let part = self.buf.split_to(PART_SIZE).freeze();
            self.upload_part(part).await?;
        }
        Ok(())
    }

    async fn upload_part(&mut self, part: Bytes) -> Result<(), S3Error> {
        let (bucket, key) = (self.bucket.clone(), self.key.clone());
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let created = self
                    .client
                    .create_multipart_upload()
                    .bucket(&bucket)
                    .key(&key)
                    .send()
                    .await
                    .map_err(|e| s3_error("CreateMultipartUpload", &bucket, &key, &e))?;
                let id = created.upload_id().unwrap_or_default().to_string();
                self.upload_id = Some(id.clone());
                id
            }
        };
        let number = self.parts.len() as i32 + 1;
        let done = self
            .client
            .upload_part()
            .bucket(&bucket)
            .key(&key)
            .upload_id(&upload_id)
            .part_number(number)
            .body(ByteStream::from(part))
            .send()
            .await;
        let done = match done {
            Ok(d) => d,
            Err(e) => {
                let err = s3_error("UploadPart", &bucket, &key, &e);
                self.abort().await;
                return Err(err);
            }
        };
        self.parts.push(
            CompletedPart::builder().part_number(number).set_e_tag(done.e_tag().map(str::to_string)).build(),
        );
        Ok(())
    }

    /// Abandons the upload (S3 keeps parts of an unfinished upload until it is aborted).
    pub async fn abort(&mut self) {
        if let Some(id) = self.upload_id.take() {
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(id)
                .send()
                .await;
        }
    }

    /// Sends what is left and completes the object; returns its size.
    pub async fn finish(mut self) -> Result<u64, S3Error> {
        if self.upload_id.is_none() {
            let data = std::mem::take(&mut self.buf).freeze();
            put(&self.client, &self.bucket, &self.key, data).await?;
            return Ok(self.size);
        }
        if !self.buf.is_empty() {
            let last = std::mem::take(&mut self.buf).freeze();
            self.upload_part(last).await?;
        }
        let id = self.upload_id.clone().unwrap_or_default();
        let parts = std::mem::take(&mut self.parts);
        let r = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await;
        if let Err(e) = r {
            let err = s3_error("CompleteMultipartUpload", &self.bucket, &self.key, &e);
            self.abort().await;
            return Err(err);
        }
        Ok(self.size)
    }
}

/// Splits `s3://bucket/prefix` into its parts.
pub fn parse_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_matches('/');
    if bucket.is_empty() || prefix.is_empty() {
        return None;
    }
    Some((bucket.to_string(), prefix.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_name_a_bucket_and_a_directory() {
        assert_eq!(parse_url("s3://b/influxdb-backup-1"), Some(("b".into(), "influxdb-backup-1".into())));
        assert_eq!(parse_url("s3://b/a/b/"), Some(("b".into(), "a/b".into())));
        assert_eq!(parse_url("s3://b"), None);
        assert_eq!(parse_url("/local/dir"), None);
    }

    #[test]
    fn head_bucket_statuses_decide_ownership() {
        assert_eq!(
            classify_head_bucket("b", "123", Some(403), "Forbidden".into()).unwrap(),
            Ownership::NotOwned { account: "123".into() }
        );
        let missing = classify_head_bucket("b", "123", Some(404), "NotFound".into()).unwrap_err();
        assert!(missing.to_string().contains("does not exist"), "{missing}");
        assert!(matches!(
            classify_head_bucket("b", "1", Some(500), "x".into()),
            Err(OwnershipError::Other { .. })
        ));
    }
}
