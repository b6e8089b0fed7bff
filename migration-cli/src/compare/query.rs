//! A Flux query's rows as the answer streams in, and the comparison engine's error.
//!
//! Every comparison reads influxd's answers the same way: one query against a bucket's org, its
//! annotated CSV parsed chunk by chunk ([`crate::influx::annotated_csv`]), each row handed to the
//! caller, nothing buffered whole.

use futures::StreamExt;

use crate::influx::annotated_csv::{AnnotatedCsv, CsvError, Row};
use crate::influx::api::{ApiError, Bucket, InfluxApi, OrgRef};

/// Why a verification could not run (a difference is not an error: see [`VerifyReport`]).
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("organization {org:?} does not exist on {host}")]
    OrgNotFound { host: String, org: String },
    #[error("bucket {bucket:?} does not exist on {host}{}", org.as_deref().map(|o| format!(" in organization {o:?}")).unwrap_or_default())]
    BucketNotFound { host: String, org: Option<String>, bucket: String },
    #[error("bucket {bucket:?} exists in several organizations on {host} ({orgs}); name the organization")]
    AmbiguousBucket { host: String, bucket: String, orgs: String },
    #[error("counting bucket {bucket:?} on {host}: {source}")]
    Csv { host: String, bucket: String, source: CsvError },
    #[error("invalid time {value:?} for {what}: expected RFC3339, e.g. 2024-01-31T00:00:00Z")]
    Time { what: &'static str, value: String },
}

/// The bucket and its org's name; `None` when there is no such bucket.
pub(crate) async fn resolve(
    api: &InfluxApi,
    org: Option<&str>,
    bucket: &str,
) -> Result<Option<(Bucket, String)>, CompareError> {
    match org {
        Some(name) => {
            let o = api.find_org(name).await?.ok_or_else(|| CompareError::OrgNotFound {
                host: api.host().to_string(),
                org: name.to_string(),
            })?;
            Ok(api.find_bucket(&o.id, bucket).await?.map(|b| (b, o.name)))
        }
        None => {
            let found = api.find_buckets(None, bucket).await?;
            match found.len() {
                0 => Ok(None),
                1 => {
                    let b = found.into_iter().next().ok_or_else(|| CompareError::BucketNotFound {
                        host: api.host().to_string(),
                        org: None,
                        bucket: bucket.to_string(),
                    })?;
                    let org_name =
                        api.org_by_id(&b.org_id).await?.map(|o| o.name).unwrap_or_else(|| b.org_id.clone());
                    Ok(Some((b, org_name)))
                }
                _ => Err(CompareError::AmbiguousBucket {
                    host: api.host().to_string(),
                    bucket: bucket.to_string(),
                    orgs: found.iter().map(|b| b.org_id.as_str()).collect::<Vec<_>>().join(", "),
                }),
            }
        }
    }
}

/// Runs `flux` against `bucket`'s org and feeds every row to `on_row` as the answer streams in.
pub(crate) async fn stream_rows(
    api: &InfluxApi,
    bucket: &Bucket,
    flux: &str,
    on_row: &mut impl FnMut(&Row<'_>) -> Result<(), CsvError>,
) -> Result<(), CompareError> {
    let csv_err =
        |source| CompareError::Csv { host: api.host().to_string(), bucket: bucket.name.clone(), source };
    let mut body = api.query(OrgRef::Id(&bucket.org_id), flux, false).await?;
    let mut csv = AnnotatedCsv::new(true);
    while let Some(chunk) = body.next().await {
        csv.push(&chunk?, on_row).map_err(csv_err)?;
    }
    csv.push(b"", on_row).map_err(csv_err)?;
    Ok(())
}
