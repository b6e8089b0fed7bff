//! What changes about a read when it goes to the destination.
//!
//! The endpoint secret's `mappings` (see `shared::secret`) say how names and tokens differ on the
//! destination. Writes are rewritten by the stream writer; reads are rewritten here, only when
//! the secret's `read` is `destination`, so that a client keeps using its source token and names
//! through the cutover:
//!
//! - the credential: a mapped token replaces the client's, in every form influxd accepts it
//!   (`Mappings::map_token`, which the destination writer uses too: `Authorization:
//!   Token|Bearer <token>`, the 1.x forms `Token <user>:<token>` and HTTP Basic with the token as
//!   password, and the `p` query parameter; influxdb
//!   `http/legacy/influx1x_authentication_handler.go`);
//! - `org` / `orgID` query values renamed;
//! - on InfluxQL (`/query`), `db` / `rp` renamed by the bucket mapping with the same rule the
//!   writers use (`Mappings::apply`), so InfluxQL reads find the data where the 1.x writes put it.
//!
//! Query *text* is never rewritten: a Flux `from(bucket: "…")` or an InfluxQL `FROM "db"."rp"."m"`
//! names what the client wrote. When buckets are renamed on the destination, queries that name
//! them must be changed by their owners (the README says so).

use shared::envelope::{Api, WriteParams};
use shared::secret::{Mapped, Mappings};
use shared::sensitive::Sensitive;

use crate::route::Route;

/// The query parameters for the destination.
pub fn query_for_destination(
    route: Route,
    query: &[(String, String)],
    m: &Mappings,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = query.to_vec();
    if m.is_empty() {
        return out;
    }
    for (name, value) in &mut out {
        match name.as_str() {
            "org" | "orgID" => {
                if let Some(to) = m.orgs.get(value.as_str()) {
                    *value = to.clone();
                }
            }
            "p" => *value = m.map_token(&Sensitive::new(value.as_str())).expose().to_string(),
            _ => {}
        }
    }
    if route == Route::InfluxQl && !m.buckets.is_empty() {
        rename_db_rp(&mut out, m);
    }
    out
}

/// `db` / `rp` of an InfluxQL request renamed as `Mappings::apply` renames a 1.x write; a
/// database the mapping does not name is left as it is (reads are never refused here).
fn rename_db_rp(query: &mut Vec<(String, String)>, m: &Mappings) {
    let first = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let params = WriteParams { db: first("db"), rp: first("rp"), ..Default::default() };
    if params.db.is_none() {
        return;
    }
    let Mapped::Write { params: renamed, .. } = m.apply(Api::V1, &params, None) else { return };
    for (name, value) in [("db", renamed.db), ("rp", renamed.rp)] {
        let Some(value) = value else { continue };
        match query.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => query.push((name.to_string(), value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn mappings() -> Mappings {
        Mappings {
            buckets: BTreeMap::from([
                ("telegraf".to_string(), "telegraf".to_string()),
                ("app/autogen".to_string(), "app".to_string()),
                ("old".to_string(), "new/weekly".to_string()),
            ]),
            unmapped: Some(shared::secret::Unmapped::SourceOnly),
            orgs: BTreeMap::from([("old-org".to_string(), "new-org".to_string())]),
            tokens: BTreeMap::from([(Sensitive::new("src-tok"), Sensitive::new("dst-tok"))]),
            token_hashes: BTreeMap::new(),
        }
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn org_and_password_parameters_are_renamed_and_others_kept_in_order() {
        let q = pairs(&[("org", "old-org"), ("orgID", "0123456789abcdef"), ("p", "src-tok"), ("u", "me")]);
        let out = query_for_destination(Route::Buckets, &q, &mappings());
        assert_eq!(
            out,
            pairs(&[("org", "new-org"), ("orgID", "0123456789abcdef"), ("p", "dst-tok"), ("u", "me")])
        );
    }

    #[test]
    fn influxql_db_and_rp_follow_the_bucket_mapping_of_the_writers() {
        let m = mappings();
        let q = pairs(&[("db", "app"), ("q", "SELECT * FROM m"), ("rp", "autogen")]);
        let out = query_for_destination(Route::InfluxQl, &q, &m);
        assert_eq!(out, pairs(&[("db", "app"), ("q", "SELECT * FROM m"), ("rp", "autogen")]));
        let q = pairs(&[("db", "old"), ("q", "SELECT 1")]);
        let out = query_for_destination(Route::InfluxQl, &q, &m);
        assert_eq!(out, pairs(&[("db", "new"), ("q", "SELECT 1"), ("rp", "weekly")]));
        // A database the mapping does not name is read as it is, not refused.
        let q = pairs(&[("db", "elsewhere")]);
        assert_eq!(query_for_destination(Route::InfluxQl, &q, &m), q);
        // Only InfluxQL carries db/rp.
        let q = pairs(&[("db", "old")]);
        assert_eq!(query_for_destination(Route::Dbrps, &q, &m), q);
    }

    #[test]
    fn empty_mappings_change_nothing() {
        let q = pairs(&[("org", "old-org"), ("p", "src-tok")]);
        assert_eq!(query_for_destination(Route::FluxQuery, &q, &Mappings::default()), q);
    }
}
