//! `--full` into an older destination: the metadata is rebuilt through the API.
//!
//! An InfluxDB cannot read the metadata store (KV snapshot) of a newer one: 2.7 answers 500
//! "DB contains record of unknown migration" to a 2.9 snapshot. So instead of restoring it, every
//! object is read from the source's API and made again at the destination, in dependency order:
//! orgs, users and memberships; buckets with their data (the one-bucket native restore,
//! [`restore::restore_bucket`], which keeps retention and shard-group duration); labels,
//! variables, DBRP mappings, dashboards with their cells' views, notification endpoints, checks,
//! notification rules, tasks, label attachments; then authorizations. Objects keep their names
//! and get new IDs, so every reference between them (a rule's endpoint, a DBRP's bucket, a
//! permission's bucket) is translated through the ID map.
//!
//! The destination issues new tokens. A 2.9 source shows no token value, so the link between the
//! token a client holds and its new one is the source's stored hash of it, read from the backup's
//! KV snapshot ([`crate::influx::kv_snapshot`]); both go into `authorizations.json`
//! ([`crate::seeding::token_map`]), never into a log.
//!
//! Every object made is recorded at once in the state file (kind → source ID → destination ID,
//! [`crate::seeding::restore_state`]), so `--retry-restore-dir` skips it. An object of the same name
//! already at the destination (the destination's own org and user from its setup, or an object
//! made by an attempt that died before recording it) is taken over rather than made twice.
//!
//! Not carried over, because the API does not show them: user passwords, and the secrets of
//! notification endpoints (basic-auth passwords, bearer tokens). A warning names each.
//! A check or a notification rule makes its own task; those tasks are therefore not copied.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use reqwest::Method;
use serde_json::{Value, json};
use shared::sensitive::Sensitive;

use crate::influx::api::{ApiError, InfluxApi, Org, for_create};
use crate::influx::kv_snapshot::{self, KvError, StoredAuthorization};
use crate::influx::manifest::Manifest;
use crate::scheduled::work::{self, Kind, WorkError};
use crate::seeding::progress::Progress;
use crate::seeding::restore::{self, BucketTarget, RestoreError, Transfer};
use crate::seeding::restore_state::StateFile;
use crate::seeding::store::{Store, StoreError};
use crate::seeding::token_map::{self, RebuiltAuthorization, TokenMap, TokenMapError};

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Restore(#[from] RestoreError),
    #[error("the backup directory: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Kv(#[from] KvError),
    #[error(transparent)]
    TokenMap(#[from] TokenMapError),
    #[error("{0}")]
    Plan(String),
    #[error(transparent)]
    ScheduledWork(#[from] WorkError),
}

/// The kinds the ID map knows, as recorded in the state file.
const ORGS: &str = "orgs";
const USERS: &str = "users";
const BUCKETS: &str = "buckets";
const LABELS: &str = "labels";
const VARIABLES: &str = "variables";
const DBRPS: &str = "dbrps";
const DASHBOARDS: &str = "dashboards";
const CELLS: &str = "cells";
const ENDPOINTS: &str = "notificationEndpoints";
const CHECKS: &str = "checks";
const RULES: &str = "notificationRules";
const TASKS: &str = "tasks";
const AUTHORIZATIONS: &str = "authorizations";

/// The ID map kind of a permission's resource type (`influxdb.ResourceType`).
fn kind_of_resource(resource_type: &str) -> Option<&'static str> {
    Some(match resource_type {
        "orgs" => ORGS,
        "users" => USERS,
        "buckets" => BUCKETS,
        "labels" => LABELS,
        "variables" => VARIABLES,
        "dbrp" => DBRPS,
        "dashboards" => DASHBOARDS,
        "notificationEndpoints" => ENDPOINTS,
        "checks" => CHECKS,
        "notificationRules" => RULES,
        "tasks" => TASKS,
        "authorizations" => AUTHORIZATIONS,
        _ => return None,
    })
}

/// Where `authorizations.json` goes: the backup directory, or for a backup kept in S3 a local
/// directory of the same name (tokens do not go to S3).
pub fn token_file(store: &Store) -> PathBuf {
    match store {
        Store::Local(dir) => dir.join(token_map::FILE_NAME),
        Store::S3 { prefix, .. } => {
            PathBuf::from(prefix.rsplit('/').next().unwrap_or(prefix)).join(token_map::FILE_NAME)
        }
    }
}

/// What the rebuild did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Objects per kind at the destination that stand for the source's (made now, earlier, or
    /// taken over).
    pub counts: BTreeMap<&'static str, usize>,
    pub label_attachments: usize,
    /// Authorizations recreated (each with a new token).
    pub authorizations: usize,
    pub token_file: PathBuf,
}

impl Outcome {
    /// One line: `2 org(s), 3 user(s), ...`.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self.counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        parts.push(format!("{} label attachment(s)", self.label_attachments));
        parts.join(", ")
    }
}

/// Both ends and where the backup and the progress are.
pub struct Rebuild<'a> {
    pub src: &'a InfluxApi,
    pub dst: &'a InfluxApi,
    pub store: &'a Store,
    pub state: &'a StateFile,
    pub manifest: &'a Manifest,
    pub transfer: Transfer,
    pub progress: &'a Progress,
    pub source_version: String,
    pub destination_version: String,
}

/// The kind of scheduled work a rebuilt kind is, if it is one (tasks are made elsewhere).
fn scheduled(kind: &str) -> Option<Kind> {
    match kind {
        CHECKS => Some(Kind::Check),
        RULES => Some(Kind::Rule),
        _ => None,
    }
}

/// The value of a string field, or "".
fn s<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// `{"<key>": [...]}` items of every page of a list call.
async fn list(
    api: &InfluxApi,
    path: &str,
    query: &[(&str, &str)],
    key: &str,
) -> Result<Vec<Value>, ApiError> {
    api.list_all(path, query, key).await
}

/// The IDs of the tasks that checks and notification rules of org `org_id` run as.
async fn check_and_rule_tasks(api: &InfluxApi, org_id: &str) -> Result<BTreeSet<String>, ApiError> {
    let mut ids = BTreeSet::new();
    for kind in ["checks", "notificationRules"] {
        for o in list(api, &format!("/api/v2/{kind}"), &[("orgID", org_id)], kind).await? {
            ids.insert(s(&o, "taskID").to_string());
        }
    }
    Ok(ids)
}

impl Rebuild<'_> {
    async fn mapped(&self, kind: &str, id: &str) -> Option<String> {
        self.state.get().await.mapped(kind, id).map(str::to_string)
    }

    async fn record(&self, kind: &str, src_id: &str, dst_id: &str) -> Result<(), StoreError> {
        self.state
            .update(|s| {
                s.id_map.entry(kind.to_string()).or_default().insert(src_id.to_string(), dst_id.to_string());
            })
            .await
    }

    /// Destination IDs already standing for some source object of `kind`.
    async fn taken(&self, kind: &str) -> BTreeSet<String> {
        self.state.get().await.id_map.get(kind).map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// The source orgs with their destination IDs (after [`Rebuild::orgs`]).
    async fn org_pairs(&self, src_orgs: &[Org]) -> Vec<(Org, String)> {
        let st = self.state.get().await;
        src_orgs.iter().filter_map(|o| st.mapped(ORGS, &o.id).map(|d| (o.clone(), d.to_string()))).collect()
    }

    /// The whole rebuild; each step skips what the state file says is done.
    pub async fn run(&self) -> Result<Outcome, RebuildError> {
        let mut outcome = Outcome { token_file: token_file(self.store), ..Outcome::default() };
        let src_orgs = self.src.orgs().await?;
        outcome.counts.insert("org(s)", self.orgs(&src_orgs).await?);
        outcome.counts.insert("user(s)", self.users().await?);
        self.memberships(&src_orgs).await?;
        outcome.counts.insert("bucket(s)", self.buckets().await?);
        let orgs = self.org_pairs(&src_orgs).await;
        let mut n = BTreeMap::<&'static str, usize>::new();
        for (src_org, dst_org) in &orgs {
            *n.entry("label(s)").or_default() += self.labels(src_org, dst_org).await?;
            *n.entry("variable(s)").or_default() +=
                self.simple(VARIABLES, "variables", src_org, dst_org).await?;
            *n.entry("DBRP mapping(s)").or_default() += self.dbrps(src_org, dst_org).await?;
            *n.entry("dashboard(s)").or_default() += self.dashboards(src_org, dst_org).await?;
            *n.entry("notification endpoint(s)").or_default() +=
                self.simple(ENDPOINTS, "notificationEndpoints", src_org, dst_org).await?;
            *n.entry("check(s)").or_default() += self.simple(CHECKS, "checks", src_org, dst_org).await?;
            *n.entry("notification rule(s)").or_default() +=
                self.simple(RULES, "notificationRules", src_org, dst_org).await?;
            *n.entry("task(s)").or_default() += self.tasks(src_org, dst_org).await?;
        }
        outcome.counts.extend(n);
        outcome.label_attachments = self.label_attachments().await?;
        outcome.authorizations = self.authorizations(&src_orgs, &outcome.token_file).await?;
        outcome.counts.insert("authorization(s)", outcome.authorizations);
        Ok(outcome)
    }

    /// Orgs by name: the destination's org of the same name is used when there is one.
    async fn orgs(&self, src_orgs: &[Org]) -> Result<usize, RebuildError> {
        for o in src_orgs {
            if self.mapped(ORGS, &o.id).await.is_some() {
                continue;
            }
            let dst = match self.dst.find_org(&o.name).await? {
                Some(d) => {
                    tracing::info!("organization {:?} exists at the destination; using it", o.name);
                    d
                }
                None => {
                    tracing::info!("creating organization {:?}", o.name);
                    let mut body = json!({"name": o.name});
                    if let Some(d) = &o.description {
                        body["description"] = json!(d);
                    }
                    let made = self.dst.send_value(Method::POST, "/api/v2/orgs", &[], Some(&body)).await?;
                    Org { id: s(&made, "id").to_string(), name: o.name.clone(), description: None }
                }
            };
            self.record(ORGS, &o.id, &dst.id).await?;
        }
        Ok(src_orgs.len())
    }

    /// Users by name, without passwords (the API never shows them).
    async fn users(&self) -> Result<usize, RebuildError> {
        let src_users = list(self.src, "/api/v2/users", &[], "users").await?;
        let dst_users = list(self.dst, "/api/v2/users", &[], "users").await?;
        let mut made = 0;
        for u in &src_users {
            if self.mapped(USERS, s(u, "id")).await.is_some() {
                continue;
            }
            let id = match dst_users.iter().find(|d| s(d, "name") == s(u, "name")) {
                Some(d) => s(d, "id").to_string(),
                None => {
                    let mut body = json!({"name": s(u, "name")});
                    if !s(u, "status").is_empty() {
                        body["status"] = json!(s(u, "status"));
                    }
                    let d = self.dst.send_value(Method::POST, "/api/v2/users", &[], Some(&body)).await?;
                    made += 1;
                    s(&d, "id").to_string()
                }
            };
            self.record(USERS, s(u, "id"), &id).await?;
        }
        if made > 0 {
            tracing::warn!(
                "{made} user(s) were created without a password (InfluxDB never shows one): set each with \
                 `influx user password` at the destination before they sign in"
            );
        }
        Ok(src_users.len())
    }

    /// Owners and members of each org, for the users mapped.
    async fn memberships(&self, src_orgs: &[Org]) -> Result<(), RebuildError> {
        let st = self.state.get().await;
        for (o, dst_org) in self.org_pairs(src_orgs).await {
            for role in ["owners", "members"] {
                let path = format!("/api/v2/orgs/{}/{role}", o.id);
                let have = self.dst.get_value(&format!("/api/v2/orgs/{dst_org}/{role}"), &[]).await?;
                let have: BTreeSet<&str> =
                    have["users"].as_array().into_iter().flatten().map(|u| s(u, "id")).collect();
                let src_list = self.src.get_value(&path, &[]).await?;
                for u in src_list["users"].as_array().into_iter().flatten() {
                    let Some(dst_user) = st.mapped(USERS, s(u, "id")) else { continue };
                    if have.contains(dst_user) {
                        continue;
                    }
                    self.dst
                        .send_value(
                            Method::POST,
                            &format!("/api/v2/orgs/{dst_org}/{role}"),
                            &[],
                            Some(&json!({"id": dst_user})),
                        )
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Every user bucket of the backup, with its data, into its mapped org under its own name.
    async fn buckets(&self) -> Result<usize, RebuildError> {
        let mut n = 0;
        for b in self.manifest.buckets.iter().filter(|b| !b.is_system()) {
            n += 1;
            if self.mapped(BUCKETS, &b.bucket_id).await.is_some() {
                continue;
            }
            let org_id = self.mapped(ORGS, &b.organization_id).await.ok_or_else(|| {
                RebuildError::Plan(format!(
                    "organization {:?} of bucket {:?} is in the backup but not at the source any more",
                    b.organization_name, b.bucket_name
                ))
            })?;
            let target = BucketTarget {
                source: b.clone(),
                org: Org { id: org_id, name: b.organization_name.clone(), description: None },
                final_name: b.bucket_name.clone(),
            };
            self.replace_empty_namesake(&target).await?;
            restore::restore_bucket(self.dst, self.store, self.state, &target, self.transfer, self.progress)
                .await?;
            let st = self.state.get().await;
            let id = st.bucket(&target.key()).and_then(|p| p.bucket_id.clone()).ok_or_else(|| {
                RebuildError::Plan(format!(
                    "bucket {:?} was restored but its ID was not recorded",
                    b.bucket_name
                ))
            })?;
            self.record(BUCKETS, &b.bucket_id, &id).await?;
        }
        Ok(n)
    }

    /// A bucket of the target's name that the destination had before the rebuild (its setup
    /// bucket) and that holds no point is deleted, so the source's can take its name (the
    /// preflight refused one that holds data). The one an earlier attempt restored is kept.
    async fn replace_empty_namesake(&self, target: &BucketTarget) -> Result<(), RebuildError> {
        let Some(existing) = self.dst.find_bucket(&target.org.id, &target.final_name).await? else {
            return Ok(());
        };
        let ours = self.state.get().await.bucket(&target.key()).and_then(|p| p.bucket_id.clone());
        if ours.as_deref() == Some(existing.id.as_str()) {
            return Ok(());
        }
        if !self.dst.bucket_is_empty(&target.org.id, &existing.id).await? {
            return Err(RebuildError::Plan(format!(
                "the destination's organization {:?} has a bucket called {:?} that holds data (it was written after the \
                 checks): move that data or rename that bucket, then run the command again",
                target.org.name, target.final_name
            )));
        }
        self.dst.delete_bucket(&existing.id).await?;
        tracing::warn!(
            "replaced the destination's empty bucket {:?} in organization {:?} with the source's",
            target.final_name,
            target.org.name
        );
        Ok(())
    }

    async fn labels(&self, src_org: &Org, dst_org: &str) -> Result<usize, RebuildError> {
        let src = self.src.get_value("/api/v2/labels", &[("orgID", &src_org.id)]).await?;
        let dst = self.dst.get_value("/api/v2/labels", &[("orgID", dst_org)]).await?;
        let src = src["labels"].as_array().cloned().unwrap_or_default();
        for l in &src {
            if self.mapped(LABELS, s(l, "id")).await.is_some() {
                continue;
            }
            let existing =
                dst["labels"].as_array().into_iter().flatten().find(|d| s(d, "name") == s(l, "name"));
            let id = match existing {
                Some(d) => s(d, "id").to_string(),
                None => {
                    let mut body = json!({"orgID": dst_org, "name": s(l, "name")});
                    if let Some(p) = l.get("properties").filter(|p| p.is_object()) {
                        body["properties"] = p.clone();
                    }
                    let made = self.dst.send_value(Method::POST, "/api/v2/labels", &[], Some(&body)).await?;
                    s(&made["label"], "id").to_string()
                }
            };
            self.record(LABELS, s(l, "id"), &id).await?;
        }
        Ok(src.len())
    }

    /// Variables, endpoints, checks and rules: copied as they are, in the new org (a rule's
    /// endpoint translated), taken over by name when the destination has one.
    async fn simple(
        &self,
        kind: &str,
        api_kind: &str,
        src_org: &Org,
        dst_org: &str,
    ) -> Result<usize, RebuildError> {
        let path = format!("/api/v2/{api_kind}");
        let src = list(self.src, &path, &[("orgID", &src_org.id)], api_kind).await?;
        let dst = list(self.dst, &path, &[("orgID", dst_org)], api_kind).await?;
        let mut taken = self.taken(kind).await;
        for o in &src {
            if self.mapped(kind, s(o, "id")).await.is_some() {
                continue;
            }
            let existing = dst.iter().find(|d| s(d, "name") == s(o, "name") && !taken.contains(s(d, "id")));
            let id = match existing {
                Some(d) => s(d, "id").to_string(),
                None => {
                    let mut body = for_create(o, dst_org);
                    if scheduled(kind).is_some() {
                        // Made inactive: the source runs it until cutover (held just below).
                        body["status"] = json!("inactive");
                    }
                    if kind == RULES {
                        let ep = self.mapped(ENDPOINTS, s(o, "endpointID")).await.ok_or_else(|| {
                            RebuildError::Plan(format!(
                                "notification rule {:?} uses endpoint {} which was not rebuilt",
                                s(o, "name"),
                                s(o, "endpointID")
                            ))
                        })?;
                        body["endpointID"] = json!(ep);
                    }
                    if kind == ENDPOINTS && ["basic", "bearer"].contains(&s(o, "authMethod")) {
                        tracing::warn!(
                            "notification endpoint {:?}: its credentials are secrets the API does not show; set them \
                             again at the destination",
                            s(o, "name")
                        );
                    }
                    let made = self.dst.send_value(Method::POST, &path, &[], Some(&body)).await?;
                    let id = s(&made, "id").to_string();
                    if let Some(k) = scheduled(kind) {
                        work::unschedule(self.dst, k, &id).await?;
                    }
                    id
                }
            };
            if let Some(k) = scheduled(kind)
                && s(o, "status") == "active"
            {
                work::mark_held(self.dst, k, dst_org, &id).await?;
            }
            if scheduled(kind).is_some() {
                work::record_origin(self.dst, dst_org, &id, s(o, "id")).await?;
            }
            self.record(kind, s(o, "id"), &id).await?;
            taken.insert(id);
        }
        Ok(src.len())
    }

    /// Explicit DBRP mappings (not the virtual ones every bucket has), bucket translated.
    async fn dbrps(&self, src_org: &Org, dst_org: &str) -> Result<usize, RebuildError> {
        let src = self.src.get_value("/api/v2/dbrps", &[("orgID", &src_org.id)]).await?;
        let dst = self.dst.get_value("/api/v2/dbrps", &[("orgID", dst_org)]).await?;
        let mut n = 0;
        for m in src["content"].as_array().into_iter().flatten() {
            if m.get("virtual").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            n += 1;
            if self.mapped(DBRPS, s(m, "id")).await.is_some() {
                continue;
            }
            let Some(bucket) = self.mapped(BUCKETS, s(m, "bucketID")).await else {
                tracing::warn!(
                    "DBRP mapping {}/{} points at a bucket that was not migrated; skipped",
                    s(m, "database"),
                    s(m, "retention_policy")
                );
                continue;
            };
            let existing = dst["content"].as_array().into_iter().flatten().find(|d| {
                d.get("virtual").and_then(Value::as_bool) != Some(true)
                    && s(d, "database") == s(m, "database")
                    && s(d, "retention_policy") == s(m, "retention_policy")
            });
            let id = match existing {
                Some(d) => s(d, "id").to_string(),
                None => {
                    let body = json!({"orgID": dst_org, "bucketID": bucket, "database": s(m, "database"),
                        "retention_policy": s(m, "retention_policy"), "default": m.get("default").cloned().unwrap_or(json!(false))});
                    let made = self.dst.send_value(Method::POST, "/api/v2/dbrps", &[], Some(&body)).await?;
                    // 2.0 wrapped the answer in `content`.
                    let id =
                        if s(&made, "id").is_empty() { s(&made["content"], "id") } else { s(&made, "id") };
                    id.to_string()
                }
            };
            self.record(DBRPS, s(m, "id"), &id).await?;
        }
        Ok(n)
    }

    /// Dashboards, then each cell (position, size) and its view (name, properties). The
    /// dashboard is recorded as soon as it exists and each cell when it is complete, so a retry
    /// finishes a half-made dashboard instead of making a second one.
    async fn dashboards(&self, src_org: &Org, dst_org: &str) -> Result<usize, RebuildError> {
        let src = list(self.src, "/api/v2/dashboards", &[("orgID", &src_org.id)], "dashboards").await?;
        let dst = list(self.dst, "/api/v2/dashboards", &[("orgID", dst_org)], "dashboards").await?;
        let mut taken = self.taken(DASHBOARDS).await;
        for d in &src {
            let src_id = s(d, "id");
            // One of the same name that no source dashboard stands for was made by an attempt
            // that died before recording it (before any of its cells, which come after).
            let orphan = dst.iter().find(|x| s(x, "name") == s(d, "name") && !taken.contains(s(x, "id")));
            let dst_id = match (self.mapped(DASHBOARDS, src_id).await, orphan) {
                (Some(id), _) => id,
                (None, Some(x)) => {
                    let id = s(x, "id").to_string();
                    self.record(DASHBOARDS, src_id, &id).await?;
                    taken.insert(id.clone());
                    id
                }
                (None, None) => {
                    let body =
                        json!({"orgID": dst_org, "name": s(d, "name"), "description": s(d, "description")});
                    let made =
                        self.dst.send_value(Method::POST, "/api/v2/dashboards", &[], Some(&body)).await?;
                    let id = s(&made, "id").to_string();
                    self.record(DASHBOARDS, src_id, &id).await?;
                    id
                }
            };
            let mut dst_cells: Option<Vec<Value>> = None;
            let mut cells_taken = self.taken(CELLS).await;
            for c in d["cells"].as_array().into_iter().flatten() {
                let key = format!("{src_id}/{}", s(c, "id"));
                if self.mapped(CELLS, &key).await.is_some() {
                    continue;
                }
                let view = self
                    .src
                    .get_value(&format!("/api/v2/dashboards/{src_id}/cells/{}/view", s(c, "id")), &[])
                    .await?;
                let mut cell = json!({"x": c["x"], "y": c["y"], "w": c["w"], "h": c["h"]});
                if !s(&view, "name").is_empty() {
                    cell["name"] = json!(s(&view, "name"));
                }
                // A cell in the same place that no source cell stands for was made by an attempt
                // that died before recording it: its view is set (again) below.
                if dst_cells.is_none() {
                    let found = self.dst.get_value(&format!("/api/v2/dashboards/{dst_id}"), &[]).await?;
                    dst_cells = Some(found["cells"].as_array().cloned().unwrap_or_default());
                }
                let same_place = |x: &&Value| {
                    ["x", "y", "w", "h"].iter().all(|k| x[*k] == c[*k]) && !cells_taken.contains(s(x, "id"))
                };
                let orphan = dst_cells.iter().flatten().find(same_place).map(|x| s(x, "id").to_string());
                let cell_id = match orphan {
                    Some(id) => id,
                    None => {
                        let made = self
                            .dst
                            .send_value(
                                Method::POST,
                                &format!("/api/v2/dashboards/{dst_id}/cells"),
                                &[],
                                Some(&cell),
                            )
                            .await?;
                        s(&made, "id").to_string()
                    }
                };
                cells_taken.insert(cell_id.clone());
                let body = json!({"name": s(&view, "name"), "properties": view["properties"]});
                self.dst
                    .send_value(
                        Method::PATCH,
                        &format!("/api/v2/dashboards/{dst_id}/cells/{cell_id}/view"),
                        &[],
                        Some(&body),
                    )
                    .await?;
                self.record(CELLS, &key, &cell_id).await?;
            }
        }
        Ok(src.len())
    }

    /// The tasks people made (flux as it is, status as it is), not those of checks and rules,
    /// which the destination made with each check and rule. On 2.7.12 and 2.9.1 the task list
    /// leaves a check's or a rule's task out already (seen on real servers: only the two tasks
    /// made through `/api/v2/tasks` are listed); the filter by the checks' and rules' `taskID`
    /// and by `type` keeps them out should a version list them.
    async fn tasks(&self, src_org: &Org, dst_org: &str) -> Result<usize, RebuildError> {
        let skip_src = check_and_rule_tasks(self.src, &src_org.id).await?;
        let skip_dst = check_and_rule_tasks(self.dst, dst_org).await?;
        let people = |t: &Value, skip: &BTreeSet<String>| {
            !skip.contains(s(t, "id")) && matches!(s(t, "type"), "" | "basic" | "system")
        };
        let src: Vec<Value> = work::list_tasks(self.src, &src_org.id)
            .await?
            .into_iter()
            .filter(|t| people(t, &skip_src))
            .collect();
        let dst: Vec<Value> =
            work::list_tasks(self.dst, dst_org).await?.into_iter().filter(|t| people(t, &skip_dst)).collect();
        let mut taken = self.taken(TASKS).await;
        for t in &src {
            if self.mapped(TASKS, s(t, "id")).await.is_some() {
                continue;
            }
            let existing = dst.iter().find(|d| s(d, "name") == s(t, "name") && !taken.contains(s(d, "id")));
            let id = match existing {
                Some(d) => s(d, "id").to_string(),
                None => {
                    // Made inactive: the source runs it until cutover (held just below).
                    let mut body = json!({"orgID": dst_org, "flux": s(t, "flux"), "status": "inactive"});
                    if !s(t, "description").is_empty() {
                        body["description"] = json!(s(t, "description"));
                    }
                    let made = self.dst.send_value(Method::POST, "/api/v2/tasks", &[], Some(&body)).await?;
                    let id = s(&made, "id").to_string();
                    work::unschedule(self.dst, Kind::Task, &id).await?;
                    id
                }
            };
            if s(t, "status") == "active" {
                work::mark_held(self.dst, Kind::Task, dst_org, &id).await?;
            }
            work::record_origin(self.dst, dst_org, &id, s(t, "id")).await?;
            self.record(TASKS, s(t, "id"), &id).await?;
            taken.insert(id);
        }
        Ok(src.len())
    }

    /// Labels on every object that takes them, translated both ways.
    async fn label_attachments(&self) -> Result<usize, RebuildError> {
        let st = self.state.get().await;
        let mut n = 0;
        for (kind, api_kind) in [
            (BUCKETS, "buckets"),
            (DASHBOARDS, "dashboards"),
            (TASKS, "tasks"),
            (CHECKS, "checks"),
            (RULES, "notificationRules"),
            (ENDPOINTS, "notificationEndpoints"),
            (VARIABLES, "variables"),
        ] {
            for (src_id, dst_id) in st.id_map.get(kind).into_iter().flatten() {
                let src = self.src.get_value(&format!("/api/v2/{api_kind}/{src_id}/labels"), &[]).await?;
                let wanted: Vec<&str> = src["labels"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|l| st.mapped(LABELS, s(l, "id")))
                    .collect();
                if wanted.is_empty() {
                    continue;
                }
                let path = format!("/api/v2/{api_kind}/{dst_id}/labels");
                let have = self.dst.get_value(&path, &[]).await?;
                let have: BTreeSet<&str> =
                    have["labels"].as_array().into_iter().flatten().map(|l| s(l, "id")).collect();
                for label in wanted {
                    n += 1;
                    if !have.contains(label) {
                        self.dst
                            .send_value(Method::POST, &path, &[], Some(&json!({"labelID": label})))
                            .await?;
                    }
                }
            }
        }
        Ok(n)
    }

    /// Every source authorization, made again with translated org, user and permissions; each
    /// new token is written to `authorizations.json` before the authorization is recorded done.
    async fn authorizations(&self, src_orgs: &[Org], file: &std::path::Path) -> Result<usize, RebuildError> {
        let stored = self.stored_authorizations().await?;
        // For a backup kept in S3 the file goes to a local directory of the backup's name.
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            std::fs::create_dir_all(dir)
                .map_err(|source| TokenMapError::Io { path: dir.to_path_buf(), source })?;
        }
        let names = self.names(src_orgs).await?;
        let mut map = match TokenMap::load(file) {
            Ok(m) => m,
            Err(TokenMapError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                TokenMap {
                    version: token_map::VERSION,
                    source_url: self.src.host().to_string(),
                    destination_url: self.dst.host().to_string(),
                    source_version: self.source_version.clone(),
                    destination_version: self.destination_version.clone(),
                    authorizations: Vec::new(),
                }
            }
            Err(e) => return Err(e.into()),
        };
        let src = self.src.get_value("/api/v2/authorizations", &[]).await?;
        let src = src["authorizations"].as_array().cloned().unwrap_or_default();
        // What a dead attempt made but did not record: its entry is in the file.
        let dst_list = self.dst.get_value("/api/v2/authorizations", &[]).await?;
        let dst_ids: BTreeSet<String> = dst_list["authorizations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| s(a, "id").to_string())
            .collect();
        for a in &src {
            let src_id = s(a, "id");
            if self.mapped(AUTHORIZATIONS, src_id).await.is_some() {
                continue;
            }
            if let Some(e) = map
                .authorizations
                .iter()
                .find(|e| e.source_id == src_id && dst_ids.contains(&e.destination_id))
            {
                let id = e.destination_id.clone();
                self.record(AUTHORIZATIONS, src_id, &id).await?;
                continue;
            }
            let st = self.state.get().await;
            let org = st.mapped(ORGS, s(a, "orgID")).ok_or_else(|| {
                RebuildError::Plan(format!(
                    "authorization {src_id} belongs to an organization that was not rebuilt"
                ))
            })?;
            let mut perms = Vec::new();
            let mut rendered = Vec::new();
            for p in a["permissions"].as_array().into_iter().flatten() {
                let r = &p["resource"];
                let mut res = json!({"type": s(r, "type")});
                if !s(r, "orgID").is_empty() {
                    match st.mapped(ORGS, s(r, "orgID")) {
                        Some(o) => res["orgID"] = json!(o),
                        None => {
                            tracing::warn!(
                                "authorization {src_id}: a permission's organization was not rebuilt; left out"
                            );
                            continue;
                        }
                    }
                }
                if !s(r, "id").is_empty() {
                    match kind_of_resource(s(r, "type")).and_then(|k| st.mapped(k, s(r, "id"))) {
                        Some(id) => res["id"] = json!(id),
                        None => {
                            tracing::warn!(
                                "authorization {src_id}: a permission on {} {} that was not rebuilt; left out",
                                s(r, "type"),
                                s(r, "id")
                            );
                            continue;
                        }
                    }
                }
                perms.push(json!({"action": s(p, "action"), "resource": res}));
                rendered.push(format!("{}:{}", s(p, "action"), render_resource(r, &names)));
            }
            let mut body = json!({"orgID": org, "description": s(a, "description"), "permissions": perms});
            if let Some(u) = st.mapped(USERS, s(a, "userID")) {
                body["userID"] = json!(u);
            }
            if !s(a, "status").is_empty() {
                body["status"] = json!(s(a, "status"));
            }
            let made = self.dst.send_value(Method::POST, "/api/v2/authorizations", &[], Some(&body)).await?;
            let (token, hash) = source_secret(a, stored.get(src_id));
            if token.is_none() && hash.is_none() {
                tracing::warn!(
                    "authorization {src_id} ({:?}) is not in the backup's KV snapshot (made after the backup?): its \
                     clients cannot be matched to the new token",
                    s(a, "description")
                );
            }
            map.authorizations.retain(|e| e.source_id != src_id);
            map.authorizations.push(RebuiltAuthorization {
                source_id: src_id.to_string(),
                destination_id: s(&made, "id").to_string(),
                description: s(a, "description").to_string(),
                org: names.get(s(a, "orgID")).cloned().unwrap_or_default(),
                user: names.get(s(a, "userID")).cloned().unwrap_or_default(),
                status: s(&made, "status").to_string(),
                permissions: rendered,
                destination_token: Sensitive::new(s(&made, "token")),
                source_token_hash: hash,
                source_token: token,
            });
            map.save(file)?;
            self.record(AUTHORIZATIONS, src_id, s(&made, "id")).await?;
        }
        if !file.exists() {
            map.save(file)?;
        }
        Ok(src.len())
    }

    /// The source's stored authorizations from the backup's KV snapshot (the only place a 2.9
    /// source keeps its token hashes).
    async fn stored_authorizations(&self) -> Result<BTreeMap<String, StoredAuthorization>, RebuildError> {
        let bytes = restore::read_kv(self.store, &self.manifest.kv).await?;
        Ok(kv_snapshot::authorizations(&bytes)?)
    }

    /// Source ID → name of orgs, users and buckets, for `authorizations.json`.
    async fn names(&self, src_orgs: &[Org]) -> Result<BTreeMap<String, String>, RebuildError> {
        let mut m: BTreeMap<String, String> =
            src_orgs.iter().map(|o| (o.id.clone(), o.name.clone())).collect();
        for u in list(self.src, "/api/v2/users", &[], "users").await? {
            m.insert(s(&u, "id").to_string(), s(&u, "name").to_string());
        }
        for b in &self.manifest.buckets {
            m.insert(b.bucket_id.clone(), b.bucket_name.clone());
        }
        Ok(m)
    }
}

/// The client's token at the source as the gateway will know it: its plaintext when the source
/// keeps one (2.7), else its stored hash (2.9).
fn source_secret(
    listed: &Value,
    stored: Option<&StoredAuthorization>,
) -> (Option<Sensitive>, Option<Sensitive>) {
    let listed_token = s(listed, "token");
    if !listed_token.is_empty() {
        return (Some(Sensitive::new(listed_token)), None);
    }
    match stored {
        Some(a) if a.is_hashed() => (None, Some(Sensitive::new(a.hashed_token.clone()))),
        Some(a) if !a.token.is_empty() => (Some(Sensitive::new(a.token.clone())), None),
        _ => (None, None),
    }
}

/// `orgs/<org>/buckets/<bucket>`, `orgs/<org>/tasks`, `orgs/<org>`, `users/<user>` or `users`:
/// names where known, IDs otherwise.
fn render_resource(r: &Value, names: &BTreeMap<String, String>) -> String {
    let name = |id: &str| names.get(id).cloned().unwrap_or_else(|| id.to_string());
    let kind = s(r, "type");
    let id = s(r, "id");
    let org = s(r, "orgID");
    match (org.is_empty(), id.is_empty()) {
        _ if kind == "orgs" && !id.is_empty() => format!("orgs/{}", name(id)),
        (false, false) => format!("orgs/{}/{kind}/{}", name(org), name(id)),
        (false, true) => format!("orgs/{}/{kind}", name(org)),
        (true, false) => format!("{kind}/{}", name(id)),
        (true, true) => kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_are_rendered_with_names_where_known() {
        let names: BTreeMap<String, String> =
            [("o1", "acme"), ("b1", "metrics"), ("u1", "alice")].map(|(a, b)| (a.into(), b.into())).into();
        let r = |v: Value| render_resource(&v, &names);
        assert_eq!(r(json!({"type": "buckets", "orgID": "o1", "id": "b1"})), "orgs/acme/buckets/metrics");
        assert_eq!(r(json!({"type": "tasks", "orgID": "o1"})), "orgs/acme/tasks");
        assert_eq!(r(json!({"type": "orgs", "id": "o1"})), "orgs/acme");
        assert_eq!(r(json!({"type": "users", "id": "u1"})), "users/alice");
        assert_eq!(r(json!({"type": "dashboards", "orgID": "o1", "id": "d9"})), "orgs/acme/dashboards/d9");
        assert_eq!(r(json!({"type": "users"})), "users");
    }

    fn stored(token: &str, hashed: &str) -> StoredAuthorization {
        serde_json::from_value(json!({"id": "a1", "token": token, "hashedToken": hashed})).unwrap()
    }

    #[test]
    fn the_source_token_is_its_listed_value_else_the_snapshots_plaintext_else_its_hash() {
        let expose = |p: (Option<Sensitive>, Option<Sensitive>)| {
            (p.0.map(|t| t.expose().to_string()), p.1.map(|t| t.expose().to_string()))
        };
        let listed_27 = json!({"id": "a1", "token": "plain"});
        assert_eq!(expose(source_secret(&listed_27, None)), (Some("plain".into()), None));
        let listed_29 = json!({"id": "a1", "token": ""});
        let hashed = stored("", "$influxdb2-sha256$abc");
        assert_eq!(
            expose(source_secret(&listed_29, Some(&hashed))),
            (None, Some("$influxdb2-sha256$abc".into()))
        );
        let unhashed = stored("plain", "");
        assert_eq!(expose(source_secret(&listed_29, Some(&unhashed))), (Some("plain".into()), None));
        assert_eq!(expose(source_secret(&listed_29, None)), (None, None));
    }

    #[test]
    fn a_copy_for_create_has_no_server_fields_and_the_new_org() {
        let c = for_create(
            &json!({"id": "1", "orgID": "o", "taskID": "t", "ownerID": "u", "name": "n", "status": "inactive", "labels": []}),
            "o2",
        );
        assert_eq!(c, json!({"name": "n", "status": "inactive", "orgID": "o2"}));
    }
}
