//! Which source bucket is replayed into which destination bucket: the pairs every comparison of a
//! live migration is made over, by the rules the destination stream writer applies.
//!
//! The destination writer matches a write against the endpoint secret's `mappings.buckets` by
//! what the write resolved to at the source (`shared::secret::Mappings::apply_to`): a v2 write by
//! its bucket's name or ID, a v1 write by `db/rp`, then the bucket's name or ID, then `db`. A v2
//! write lands at the destination in the bucket the mapping names, in its org (renamed by
//! `mappings.orgs`); a v1 write is sent as v1 with the `db` (and `rp`) the mapping names, so it
//! lands in whatever bucket the destination's DBRP mapping points at. Pairing follows exactly
//! that, so a bucket written through the documented v1 key (`"app/autogen": "app"`) is compared
//! like any other, and:
//!
//! - a mapping key that names nothing at the source (no bucket by that name or ID, no DBRP
//!   `db/rp` or `db`) is an error: the operator meant something the writers will never match;
//! - a bucket the mappings leave out is listed as source-only (`"unmapped": "source-only"`) or as
//!   stalling the destination writer (`"fail"`), never silently dropped;
//! - a bucket whose writes would land in two destination buckets (by name to one, by `db/rp` to
//!   another) cannot be compared as one pair and is an error naming both;
//! - a v1 mapping whose `db/rp` has no DBRP mapping at the destination is an error (those writes
//!   fail there).
//!
//! [`pair_up`] is pure; [`Listing::read`] lists a side's buckets and DBRP mappings.

use std::collections::BTreeSet;

use serde_json::Value;
use shared::secret::{Mappings, Unmapped};

use crate::compare::window::BucketPair;
use crate::influx::api::{ApiError, InfluxApi};

/// A bucket as listed, with its org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedBucket {
    pub org: String,
    pub org_id: String,
    pub name: String,
    pub id: String,
}

/// A DBRP mapping as listed (`GET /api/v2/dbrps`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dbrp {
    pub database: String,
    pub retention_policy: String,
    pub default: bool,
    pub bucket_id: String,
}

/// What one side holds.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub buckets: Vec<ListedBucket>,
    pub dbrps: Vec<Dbrp>,
}

impl Listing {
    /// Every user bucket of every org the token sees, and every org's DBRP mappings.
    pub async fn read(api: &InfluxApi) -> Result<Listing, ApiError> {
        let orgs = api.orgs().await?;
        let mut listing = Listing::default();
        for (b, org) in api.user_buckets().await? {
            listing.buckets.push(ListedBucket {
                org,
                org_id: b.org_id.clone(),
                name: b.name.clone(),
                id: b.id.clone(),
            });
        }
        for org in &orgs {
            let v = api.get_value("/api/v2/dbrps", &[("orgID", &org.id)]).await?;
            let text = |d: &Value, k: &str| d.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            for d in v.get("content").and_then(Value::as_array).into_iter().flatten() {
                listing.dbrps.push(Dbrp {
                    database: text(d, "database"),
                    retention_policy: text(d, "retention_policy"),
                    default: d.get("default").and_then(Value::as_bool).unwrap_or(false),
                    bucket_id: text(d, "bucketID"),
                });
            }
        }
        Ok(listing)
    }
}

/// The buckets to compare, and what was left out and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pairs {
    pub pairs: Vec<BucketPair>,
    /// Source buckets whose writes stay at the source (`"unmapped": "source-only"`), `org/bucket`.
    pub source_only: Vec<String>,
    /// Other source buckets left out, each with the reason.
    pub skipped: Vec<String>,
}

/// Why the buckets cannot be paired.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairingError {
    #[error(
        "the secret's bucket mapping key {0:?} names no source bucket (by name or ID) and no DBRP mapping \
         (\"db/rp\" or \"db\") at the source: the writers never match it. Correct the key in the endpoint \
         secret's mappings"
    )]
    KeyMatchesNothing(String),
    #[error(
        "source bucket {bucket} is written to two destination buckets ({first} and {second}) by the secret's \
         mappings: its writes cannot be compared as one bucket. Map its name and its DBRP keys to one bucket"
    )]
    TwoTargets { bucket: String, first: String, second: String },
    #[error(
        "the secret's mappings send v1 writes of source bucket {bucket} to database {db:?}{}, which no DBRP \
         mapping names at the destination: those writes fail there. Create the DBRP mapping at the destination",
        rp.as_deref().map(|r| format!(", retention policy {r:?}")).unwrap_or_default()
    )]
    NoDestinationDbrp { bucket: String, db: String, rp: Option<String> },
    #[error("bucket {0:?} does not exist at the source")]
    NoSuchBucket(String),
}

/// The pairs for every source bucket (or the `only` ones, by name), by the writers' rules.
pub fn pair_up(
    source: &Listing,
    destination: &Listing,
    mappings: &Mappings,
    only: &[String],
) -> Result<Pairs, PairingError> {
    for name in only {
        if !source.buckets.iter().any(|b| &b.name == name) {
            return Err(PairingError::NoSuchBucket(name.clone()));
        }
    }
    if !mappings.buckets.is_empty() {
        for key in mappings.buckets.keys() {
            if !names_something(source, key) {
                return Err(PairingError::KeyMatchesNothing(key.clone()));
            }
        }
    }
    let mut out = Pairs::default();
    for b in &source.buckets {
        if !only.is_empty() && !only.contains(&b.name) {
            continue;
        }
        let dst_org_v2 = || {
            mappings
                .orgs
                .get(&b.org)
                .or_else(|| mappings.orgs.get(&b.org_id))
                .cloned()
                .unwrap_or_else(|| b.org.clone())
        };
        if mappings.buckets.is_empty() {
            out.pairs.push(BucketPair::new(Some(&b.org), &b.name, Some(&dst_org_v2()), &b.name));
            continue;
        }
        // Every destination a write to `b` can be replayed into: (org, bucket).
        let mut targets: BTreeSet<(String, String)> = BTreeSet::new();
        if let Some(to) = [&b.name, &b.id].into_iter().find_map(|k| mappings.buckets.get(k)) {
            targets.insert((dst_org_v2(), to.clone()));
        }
        for d in source.dbrps.iter().filter(|d| d.bucket_id == b.id) {
            let db_rp = format!("{}/{}", d.database, d.retention_policy);
            let keys = [&db_rp, &b.name, &b.id, &d.database];
            let Some(to) = keys.into_iter().find_map(|k| mappings.buckets.get(k)) else { continue };
            // `set_db_rp`: a value with a `/` sets both; without, `db` only and the client's `rp`
            // (this DBRP's, or none for the default one) stays.
            let (db, rp) = match to.split_once('/') {
                Some((db, rp)) => (db.to_string(), Some(rp.to_string())),
                None => (to.clone(), (!d.default).then(|| d.retention_policy.clone())),
            };
            let landing = destination
                .dbrps
                .iter()
                .find(|x| x.database == db && rp.as_ref().map_or(x.default, |r| &x.retention_policy == r))
                .and_then(|x| destination.buckets.iter().find(|db| db.id == x.bucket_id));
            match landing {
                Some(l) => {
                    targets.insert((l.org.clone(), l.name.clone()));
                }
                None => return Err(PairingError::NoDestinationDbrp { bucket: label(b), db, rp }),
            }
        }
        let mut targets = targets.into_iter();
        match (targets.next(), targets.next()) {
            (None, _) => match mappings.unmapped {
                Some(Unmapped::Fail) => out.skipped.push(format!(
                    "{}: not in the secret's bucket mappings; with \"unmapped\": \"fail\" a write to it stops the \
                     destination writer",
                    label(b)
                )),
                Some(Unmapped::SourceOnly) | None => out.source_only.push(label(b)),
            },
            (Some((org, bucket)), None) => out.pairs.push(BucketPair::new(Some(&b.org), &b.name, Some(&org), &bucket)),
            (Some(first), Some(second)) => {
                return Err(PairingError::TwoTargets {
                    bucket: label(b),
                    first: format!("{}/{}", first.0, first.1),
                    second: format!("{}/{}", second.0, second.1),
                });
            }
        }
    }
    Ok(out)
}

fn label(b: &ListedBucket) -> String {
    format!("{}/{}", b.org, b.name)
}

/// Whether a mapping key names a source bucket (name or ID) or a DBRP mapping (`db/rp`, `db`).
fn names_something(source: &Listing, key: &str) -> bool {
    source.buckets.iter().any(|b| b.name == key || b.id == key)
        || source
            .dbrps
            .iter()
            .any(|d| d.database == key || format!("{}/{}", d.database, d.retention_policy) == key)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn bucket(org: &str, name: &str, id: &str) -> ListedBucket {
        ListedBucket { org: org.into(), org_id: format!("{org}-id"), name: name.into(), id: id.into() }
    }

    fn dbrp(db: &str, rp: &str, default: bool, bucket_id: &str) -> Dbrp {
        Dbrp { database: db.into(), retention_policy: rp.into(), default, bucket_id: bucket_id.into() }
    }

    fn mappings(buckets: &[(&str, &str)], unmapped: Option<Unmapped>) -> Mappings {
        Mappings {
            buckets: buckets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            unmapped,
            ..Mappings::default()
        }
    }

    fn source() -> Listing {
        Listing {
            buckets: vec![
                bucket("o", "test-bucket", "b1"),
                bucket("o", "app", "b2"),
                bucket("o", "other", "b3"),
            ],
            dbrps: vec![dbrp("app", "autogen", true, "b2")],
        }
    }

    fn destination() -> Listing {
        Listing {
            buckets: vec![bucket("o", "test-bucket", "d1"), bucket("o", "app", "d2")],
            dbrps: vec![dbrp("app", "autogen", true, "d2")],
        }
    }

    #[test]
    fn without_bucket_mappings_every_bucket_pairs_by_name_with_its_org_renamed() {
        let m = Mappings {
            orgs: BTreeMap::from([("o".to_string(), "new-o".to_string())]),
            ..Mappings::default()
        };
        let p = pair_up(&source(), &destination(), &m, &[]).unwrap();
        assert_eq!(p.pairs.len(), 3);
        assert_eq!(p.pairs[1], BucketPair::new(Some("o"), "app", Some("new-o"), "app"));
        assert!(p.source_only.is_empty() && p.skipped.is_empty());
    }

    #[test]
    fn a_bucket_mapped_by_its_v1_key_is_paired_through_the_dbrp_mappings_at_both_ends() {
        let m = mappings(&[("test-bucket", "test-bucket"), ("app/autogen", "app")], Some(Unmapped::Fail));
        let p = pair_up(&source(), &destination(), &m, &[]).unwrap();
        assert_eq!(
            p.pairs,
            vec![
                BucketPair::new(Some("o"), "test-bucket", Some("o"), "test-bucket"),
                BucketPair::new(Some("o"), "app", Some("o"), "app"),
            ]
        );
        assert_eq!(p.skipped.len(), 1, "{p:?}");
        assert!(p.skipped[0].starts_with("o/other: not in the secret's bucket mappings"), "{p:?}");
    }

    #[test]
    fn a_bucket_mapped_by_id_or_by_db_alone_is_paired_too() {
        let m = mappings(&[("b1", "renamed"), ("app", "app")], Some(Unmapped::SourceOnly));
        let mut dst = destination();
        dst.buckets.push(bucket("o", "renamed", "d9"));
        let p = pair_up(&source(), &dst, &m, &[]).unwrap();
        assert_eq!(
            p.pairs,
            vec![
                BucketPair::new(Some("o"), "test-bucket", Some("o"), "renamed"),
                BucketPair::new(Some("o"), "app", Some("o"), "app"),
            ]
        );
        assert_eq!(p.source_only, vec!["o/other".to_string()]);
    }

    #[test]
    fn a_v1_mapping_to_another_database_lands_where_the_destination_dbrp_points() {
        let m = mappings(&[("app/autogen", "metrics/raw")], Some(Unmapped::SourceOnly));
        let mut dst = destination();
        dst.buckets.push(bucket("p", "metrics-raw", "d5"));
        dst.dbrps.push(dbrp("metrics", "raw", false, "d5"));
        let p = pair_up(&source(), &dst, &m, &[]).unwrap();
        assert_eq!(p.pairs, vec![BucketPair::new(Some("o"), "app", Some("p"), "metrics-raw")]);
        assert_eq!(p.source_only, vec!["o/test-bucket".to_string(), "o/other".to_string()]);
    }

    #[test]
    fn a_mapping_key_that_names_nothing_at_the_source_is_an_error() {
        let m = mappings(&[("test-bucket", "test-bucket"), ("gone/autogen", "gone")], Some(Unmapped::Fail));
        assert_eq!(
            pair_up(&source(), &destination(), &m, &[]),
            Err(PairingError::KeyMatchesNothing("gone/autogen".into()))
        );
    }

    #[test]
    fn a_bucket_sent_to_two_destination_buckets_is_an_error_naming_both() {
        let m = mappings(&[("app", "app-v2"), ("app/autogen", "app")], Some(Unmapped::SourceOnly));
        let mut dst = destination();
        dst.buckets.push(bucket("o", "app-v2", "d7"));
        let e = pair_up(&source(), &dst, &m, &[]).unwrap_err();
        assert_eq!(
            e,
            PairingError::TwoTargets {
                bucket: "o/app".into(),
                first: "o/app".into(),
                second: "o/app-v2".into()
            }
        );
    }

    #[test]
    fn a_v1_mapping_without_a_dbrp_at_the_destination_is_an_error() {
        let m = mappings(&[("app/autogen", "nowhere")], Some(Unmapped::SourceOnly));
        let e = pair_up(&source(), &destination(), &m, &[]).unwrap_err();
        assert_eq!(
            e,
            PairingError::NoDestinationDbrp { bucket: "o/app".into(), db: "nowhere".into(), rp: None }
        );
        assert!(e.to_string().contains("Create the DBRP mapping at the destination"), "{e}");
    }

    #[test]
    fn only_the_named_buckets_are_paired_and_an_unknown_name_is_an_error() {
        let m = Mappings::default();
        let p = pair_up(&source(), &destination(), &m, &["app".into()]).unwrap();
        assert_eq!(p.pairs, vec![BucketPair::same(Some("o"), "app")]);
        assert_eq!(
            pair_up(&source(), &destination(), &m, &["nope".into()]),
            Err(PairingError::NoSuchBucket("nope".into()))
        );
    }
}
