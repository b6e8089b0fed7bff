//! The scheduled work a bucket-level migration moves.
//!
//! A `--full` migration moves every task, check and notification rule. A migration of some
//! buckets (`--src-bucket`, `--csv`) moves only the work that belongs with them: a task whose
//! Flux reads (`from(bucket: ...)`) and writes (`to(bucket: ...)`) only migrated buckets, and an
//! org's checks with its notification rules and endpoints when every check reads only migrated
//! buckets. They are made at the destination inactive and, where active at the source, held for
//! it ([`crate::scheduled::work::HELD_LABEL`]), so `cutover` hands them over exactly as after a
//! `--full` seeding. Everything else is listed with the reason and left at the source.
//!
//! Why checks and rules move together, per org: a rule pages on the statuses of every check of
//! its org. Moving a rule while a check it serves stays would silence that check's alerts at
//! the cutover; moving a check without a rule would leave its incidents unpaged at the
//! destination. As long as the live path runs, both databases get the same points, so monitoring
//! left at the source keeps seeing the migrated buckets' data.
//!
//! A bucket renamed on the way (`--dest-bucket`) does not carry its work: the Flux names the
//! source's bucket, and rewriting an operator's Flux is not ours to do. Such work is listed.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method;
use serde_json::{Value, json};

use crate::compare::window::BucketPair;
use crate::influx::api::InfluxApi;
use crate::influx::api::for_create;
use crate::scheduled::work::{self as work, Kind, WorkError};

/// What was moved and what was left, one line each (`task "down" (org acme)`, with the reason
/// for what was left).
#[derive(Debug, Default)]
pub struct Outcome {
    pub moved: Vec<String>,
    pub left: Vec<String>,
    /// Whether a task was moved (its output buckets are compared after the handover).
    pub tasks_moved: bool,
}

/// The buckets of one org: those this migration moves (`source name -> destination name`) and
/// those the destination org already has (moved by an earlier run, say).
pub struct Buckets {
    pub migrated: BTreeMap<String, String>,
    pub at_destination: BTreeSet<String>,
}

/// Whether work that names `buckets` moves with this migration; `Err` says why not. It moves
/// when it uses a bucket this migration moves, and every bucket it names is at the destination
/// under the same name (moved now or before): a downsampling task moves with the second of its
/// two buckets.
pub fn movable(buckets: &BTreeSet<String>, org: &Buckets) -> Result<(), String> {
    if buckets.is_empty() {
        return Err("it names no bucket by name (a bucket ID or a computed name cannot be followed)".into());
    }
    if !buckets.iter().any(|b| org.migrated.contains_key(b)) {
        let names: Vec<&str> = buckets.iter().map(String::as_str).collect();
        return Err(format!("it uses {}, none of the buckets migrated now", names.join(", ")));
    }
    let renamed: Vec<String> = buckets
        .iter()
        .filter_map(|b| org.migrated.get(b).filter(|to| *to != b).map(|to| format!("{b} (now {to})")))
        .collect();
    if !renamed.is_empty() {
        return Err(format!(
            "it names bucket(s) {} by their source name: move it by hand with its Flux changed",
            renamed.join(", ")
        ));
    }
    let missing: Vec<&str> = buckets
        .iter()
        .filter(|b| !org.migrated.contains_key(*b) && !org.at_destination.contains(*b))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "it also uses bucket(s) {} which the destination does not have yet: it moves when they are migrated",
            missing.join(", ")
        ));
    }
    Ok(())
}

/// The checks that cannot move, each with the reason; when there is one, the org's monitoring
/// (all its checks and rules) stays at the source.
pub fn checks_that_stay(checks: &[Value], org: &Buckets) -> Vec<String> {
    checks
        .iter()
        .filter_map(|c| {
            let text = c.pointer("/query/text").and_then(Value::as_str).unwrap_or_default();
            movable(&named_buckets(text), org).err().map(|why| format!("{:?} ({why})", s(c, "name")))
        })
        .collect()
}

/// The buckets a task's or check's Flux reads and writes.
fn named_buckets(flux: &str) -> BTreeSet<String> {
    work::input_buckets(flux).into_iter().chain(work::output_buckets(flux)).collect()
}

fn s<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Every `kind` (`checks`, ...) of org `org_id`.
async fn list(api: &InfluxApi, kind: &str, org_id: &str) -> Result<Vec<Value>, WorkError> {
    Ok(api.list_all(&format!("/api/v2/{kind}"), &[("orgID", org_id)], kind).await?)
}

fn describe(kind: Kind, name: &str, org: &str) -> String {
    format!("{} {name:?} (org {org})", kind.noun())
}

/// Moves the scheduled work of the migrated buckets `pairs` from `src` to `dst`. Safe to run
/// again: what the destination already has under the same name is taken, not made twice.
pub async fn copy(src: &InfluxApi, dst: &InfluxApi, pairs: &[BucketPair]) -> Result<Outcome, WorkError> {
    let mut orgs: BTreeMap<(String, String), BTreeMap<String, String>> = BTreeMap::new();
    for p in pairs {
        let (Some(so), Some(d_o)) = (&p.src_org, &p.dst_org) else { continue };
        orgs.entry((so.clone(), d_o.clone())).or_default().insert(p.src_bucket.clone(), p.dst_bucket.clone());
    }
    let mut outcome = Outcome::default();
    for ((src_org, dst_org), migrated) in &orgs {
        let (Some(so), Some(d_o)) = (src.find_org(src_org).await?, dst.find_org(dst_org).await?) else {
            continue;
        };
        let org = Org { src: &so.id, dst: &d_o.id, name: src_org };
        let at_destination =
            dst.buckets(Some(&d_o.id)).await?.into_iter().map(|b| b.name).collect::<BTreeSet<String>>();
        let buckets = Buckets { migrated: migrated.clone(), at_destination };
        tasks(src, dst, &org, &buckets, &mut outcome).await?;
        monitoring(src, dst, &org, &buckets, &mut outcome).await?;
    }
    Ok(outcome)
}

struct Org<'a> {
    src: &'a str,
    dst: &'a str,
    name: &'a str,
}

/// Makes `body` at `path` of the destination inactive (a namesake there is taken instead) and
/// holds it when `active` at the source; the destination's ID.
async fn make_held(
    dst: &InfluxApi,
    kind: Kind,
    org: &Org<'_>,
    existing: Option<&Value>,
    body: Value,
    active: bool,
) -> Result<String, WorkError> {
    let id = match existing {
        Some(d) => s(d, "id").to_string(),
        None => {
            let made =
                dst.send_value(Method::POST, &format!("/api/v2/{}", kind.path()), &[], Some(&body)).await?;
            let id = s(&made, "id").to_string();
            work::unschedule(dst, kind, &id).await?;
            id
        }
    };
    if active {
        work::mark_held(dst, kind, org.dst, &id).await?;
    }
    Ok(id)
}

async fn tasks(
    src: &InfluxApi,
    dst: &InfluxApi,
    org: &Org<'_>,
    buckets: &Buckets,
    outcome: &mut Outcome,
) -> Result<(), WorkError> {
    let people = |t: &Value| matches!(s(t, "type"), "" | "basic" | "system");
    let at_dst: Vec<Value> = work::list_tasks(dst, org.dst).await?.into_iter().filter(people).collect();
    for t in work::list_tasks(src, org.src).await?.into_iter().filter(people) {
        let what = describe(Kind::Task, s(&t, "name"), org.name);
        if let Err(why) = movable(&named_buckets(s(&t, "flux")), buckets) {
            outcome.left.push(format!("{what}: {why}"));
            continue;
        }
        let existing = at_dst.iter().find(|d| s(d, "name") == s(&t, "name"));
        let mut body = json!({"orgID": org.dst, "flux": s(&t, "flux"), "status": "inactive"});
        if !s(&t, "description").is_empty() {
            body["description"] = json!(s(&t, "description"));
        }
        make_held(dst, Kind::Task, org, existing, body, s(&t, "status") == "active").await?;
        outcome.moved.push(what);
        outcome.tasks_moved = true;
    }
    Ok(())
}

/// An org's checks, with its rules and their endpoints, when every check can move.
async fn monitoring(
    src: &InfluxApi,
    dst: &InfluxApi,
    org: &Org<'_>,
    buckets: &Buckets,
    outcome: &mut Outcome,
) -> Result<(), WorkError> {
    let checks = list(src, "checks", org.src).await?;
    let rules = list(src, "notificationRules", org.src).await?;
    if checks.is_empty() && rules.is_empty() {
        return Ok(());
    }
    let stays = checks_that_stay(&checks, buckets);
    if !stays.is_empty() {
        let why = format!(
            "the org's checks {} stay, and its notification rules page for every check of the org, so its \
             monitoring stays at the source together",
            stays.join(", ")
        );
        for (kind, items) in [(Kind::Check, &checks), (Kind::Rule, &rules)] {
            for i in items {
                outcome.left.push(format!("{}: {why}", describe(kind, s(i, "name"), org.name)));
            }
        }
        return Ok(());
    }
    let by_name = |items: &[Value], name: &str| items.iter().find(|d| s(d, "name") == name).cloned();
    let dst_checks = list(dst, "checks", org.dst).await?;
    for c in &checks {
        let mut body = for_create(c, org.dst);
        body["status"] = json!("inactive");
        let existing = by_name(&dst_checks, s(c, "name"));
        make_held(dst, Kind::Check, org, existing.as_ref(), body, s(c, "status") == "active").await?;
        outcome.moved.push(describe(Kind::Check, s(c, "name"), org.name));
    }
    // The endpoints the rules post to, then the rules.
    let src_endpoints = list(src, "notificationEndpoints", org.src).await?;
    let mut dst_endpoints = list(dst, "notificationEndpoints", org.dst).await?;
    let mut endpoint_ids: BTreeMap<String, String> = BTreeMap::new();
    let used: BTreeSet<&str> = rules.iter().map(|r| s(r, "endpointID")).collect();
    for e in src_endpoints.iter().filter(|e| used.contains(s(e, "id"))) {
        let id = match by_name(&dst_endpoints, s(e, "name")) {
            Some(d) => s(&d, "id").to_string(),
            None => {
                if ["basic", "bearer"].contains(&s(e, "authMethod")) {
                    tracing::warn!(
                        "notification endpoint {:?}: its credentials are secrets the API does not show; set them again \
                         at the destination",
                        s(e, "name")
                    );
                }
                let made = dst
                    .send_value(
                        Method::POST,
                        "/api/v2/notificationEndpoints",
                        &[],
                        Some(&for_create(e, org.dst)),
                    )
                    .await?;
                dst_endpoints.push(made.clone());
                s(&made, "id").to_string()
            }
        };
        endpoint_ids.insert(s(e, "id").to_string(), id);
    }
    let dst_rules = list(dst, "notificationRules", org.dst).await?;
    for r in &rules {
        let mut body = for_create(r, org.dst);
        body["status"] = json!("inactive");
        let Some(ep) = endpoint_ids.get(s(r, "endpointID")) else {
            outcome.left.push(format!(
                "{}: its endpoint {} could not be read",
                describe(Kind::Rule, s(r, "name"), org.name),
                s(r, "endpointID")
            ));
            continue;
        };
        body["endpointID"] = json!(ep);
        let existing = by_name(&dst_rules, s(r, "name"));
        make_held(dst, Kind::Rule, org, existing.as_ref(), body, s(r, "status") == "active").await?;
        outcome.moved.push(describe(Kind::Rule, s(r, "name"), org.name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn org(migrated: &[(&str, &str)], at_destination: &[&str]) -> Buckets {
        Buckets {
            migrated: migrated.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            at_destination: set(at_destination),
        }
    }

    #[test]
    fn work_moves_when_it_uses_a_migrated_bucket_and_every_bucket_it_names_is_at_the_destination() {
        let now = org(&[("raw", "raw"), ("old", "new")], &["down"]);
        assert!(movable(&set(&["raw", "down"]), &now).is_ok(), "down was migrated before");
        let e = movable(&set(&["raw", "elsewhere"]), &now).unwrap_err();
        assert!(e.contains("elsewhere") && !e.contains("raw,"), "{e}");
        assert!(movable(&set(&["down"]), &now).unwrap_err().contains("none of the buckets migrated now"));
        let e = movable(&set(&["old"]), &now).unwrap_err();
        assert!(e.contains("old (now new)"), "{e}");
        assert!(movable(&set(&[]), &now).unwrap_err().contains("names no bucket"));
    }

    #[test]
    fn one_check_that_cannot_move_keeps_the_orgs_monitoring_at_the_source() {
        let check = |name: &str, bucket: &str| json!({"name": name, "query": {"text": format!("from(bucket: \"{bucket}\") |> range(start: v.timeRangeStart)")}});
        let now = org(&[("raw", "raw")], &[]);
        assert!(checks_that_stay(&[check("hot", "raw")], &now).is_empty());
        let stay = checks_that_stay(&[check("hot", "raw"), check("cold", "other")], &now);
        assert_eq!(stay.len(), 1);
        assert!(stay[0].starts_with("\"cold\"") && stay[0].contains("other"), "{stay:?}");
    }

    #[test]
    fn a_task_names_the_buckets_it_reads_and_writes() {
        let flux = "option task = {name: \"d\", every: 1m}\nfrom(bucket: \"raw\") |> range(start: -1m) |> to(bucket: \"down\")";
        assert_eq!(named_buckets(flux), set(&["down", "raw"]));
    }
}
