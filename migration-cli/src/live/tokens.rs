//! `tokens`: after a `--full` migration that rebuilt the metadata at an older destination, what
//! each client uses once it stops going through the gateway, and (`--apply`) the gateway's map
//! from the tokens clients hold to the destination's new ones.
//!
//! The rebuild recreated every authorization with a new token (a destination issues its own) and
//! recorded each in the backup directory's `authorizations.json` ([`crate::seeding::token_map`]). A source
//! that hashes tokens (InfluxDB 2.9) kept no plaintext, so the link is the source's stored hash:
//! the gateway hashes the token a client presents the same way and looks it up
//! (`shared::secret`, `token_hashes`). With `--apply` those entries go into the endpoint secret's
//! `mappings`, so clients keep their own tokens through the kinesis-writer, the destination
//! writer and the query router, before and after cutover, until each is moved to its new token.
//!
//! Tokens are printed only with `--show-tokens`, and then only on stdout.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use serde_json::{Value, json};

use crate::aws::deployment::{Aws, Deployment};
use crate::aws::endpoint;
use crate::exit::Exit;
use crate::live::options::CommonArgs;
use crate::output::{Output, Verdict};
use crate::seeding::token_map::{self, RebuiltAuthorization, TokenMap};

#[derive(Debug, Args)]
pub struct TokensArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The backup directory of the `--full` migration (it holds authorizations.json), a local
    /// path.
    #[arg(long, value_name = "DIR")]
    pub dir_name: PathBuf,
    /// Print each authorization's new destination token, on stdout. Without it no token is
    /// printed.
    #[arg(long)]
    pub show_tokens: bool,
    /// Put the map from each client's token (by its hash, for a source that hashes tokens) to its
    /// destination token into the endpoint secret's mappings, so clients keep their tokens
    /// through the gateway and the query router, before and after cutover. Idempotent.
    #[arg(long)]
    pub apply: bool,
}

/// The gateway's entries for these authorizations: plaintext source token → destination token,
/// and stored source hash → destination token.
pub fn gateway_entries(map: &TokenMap) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut tokens = BTreeMap::new();
    let mut hashes = BTreeMap::new();
    for a in &map.authorizations {
        let new = a.destination_token.expose().to_string();
        if let Some(t) = a.source_token.as_ref().filter(|t| !t.is_empty()) {
            tokens.insert(t.expose().to_string(), new.clone());
        }
        if let Some(h) = a.source_token_hash.as_ref().filter(|h| !h.is_empty()) {
            hashes.insert(h.expose().to_string(), new);
        }
    }
    (tokens, hashes)
}

/// The secret's text with the entries added to `mappings.tokens` and `mappings.token_hashes`
/// (existing entries for other tokens kept, every other field untouched), and how many entries
/// were added or changed; `None` when the secret already holds them all.
pub fn merged(raw: &Value, map: &TokenMap) -> Option<(String, usize)> {
    let (tokens, hashes) = gateway_entries(map);
    let mut v = raw.clone();
    let root = v.as_object_mut()?;
    let mappings = root.entry("mappings").or_insert_with(|| json!({}));
    if !mappings.is_object() {
        *mappings = json!({});
    }
    let mut changed = 0;
    for (field, entries) in [("tokens", tokens), ("token_hashes", hashes)] {
        if entries.is_empty() {
            continue;
        }
        let slot = mappings.as_object_mut()?.entry(field).or_insert_with(|| json!({}));
        if !slot.is_object() {
            *slot = json!({});
        }
        let slot = slot.as_object_mut()?;
        for (k, new) in entries {
            if slot.get(&k).and_then(Value::as_str) != Some(new.as_str()) {
                slot.insert(k, Value::String(new));
                changed += 1;
            }
        }
    }
    (changed > 0).then(|| (v.to_string(), changed))
}

/// What a client holding this authorization's token does once it leaves the gateway.
fn after_gateway(a: &RebuiltAuthorization) -> &'static str {
    if a.status == "inactive" {
        "nothing: the authorization is inactive at both ends"
    } else if a.source_token_hash.is_some() || a.source_token.is_some() {
        "switch to its destination token (the gateway maps its old one until then)"
    } else {
        "switch to its destination token (the gateway cannot map this one: no hash was recorded)"
    }
}

pub async fn run(args: TokensArgs) -> anyhow::Result<Exit> {
    let mut out = Output::new("tokens", args.common.json);
    let path = if args.dir_name.is_file() {
        args.dir_name.clone()
    } else {
        args.dir_name.join(token_map::FILE_NAME)
    };
    let map = TokenMap::load(&path).map_err(|e| {
        anyhow::anyhow!(
            "{e}. authorizations.json is written by a --full migration that rebuilt the metadata at a destination \
             older than the source; pass that migration's backup directory as --dir-name"
        )
    })?;
    out.check(
        "migration",
        Verdict::Info,
        format!(
            "{} ({}) to {} ({}): {} authorization(s) recreated with new tokens",
            map.source_url,
            map.source_version,
            map.destination_url,
            map.destination_version,
            map.authorizations.len()
        ),
    );
    let mut rows = Vec::new();
    let mut table = String::new();
    for a in &map.authorizations {
        let who = match (a.user.as_str(), a.org.as_str()) {
            ("", "") => String::new(),
            (u, "") => format!(" user {u}"),
            ("", o) => format!(" org {o}"),
            (u, o) => format!(" user {u}, org {o}"),
        };
        table.push_str(&format!(
            "\n{:?}{who}, {}, {} permission(s), source {} -> destination {}\n  a client using it: {}\n",
            a.description,
            a.status,
            a.permissions.len(),
            a.source_id,
            a.destination_id,
            after_gateway(a)
        ));
        for p in &a.permissions {
            table.push_str(&format!("    {p}\n"));
        }
        if args.show_tokens {
            table.push_str(&format!("  destination token: {}\n", a.destination_token.expose()));
        }
        let mut row = json!({
            "description": a.description,
            "user": a.user,
            "org": a.org,
            "status": a.status,
            "permissions": a.permissions,
            "source_id": a.source_id,
            "destination_id": a.destination_id,
            "gateway_maps_it": a.source_token_hash.is_some() || a.source_token.is_some(),
        });
        if args.show_tokens {
            row["destination_token"] = json!(a.destination_token.expose());
        }
        rows.push(row);
    }
    out.text(&table);
    if !args.show_tokens {
        out.note("\n(tokens are not printed; add --show-tokens to print them here, on stdout)");
    }

    let mut applied = Value::Null;
    if args.apply {
        let aws = Aws::connect(&args.common.aws).await;
        let dep = Deployment::resolve(&args.common.aws, &aws).await?;
        let current = endpoint::read(&aws.secrets, dep.secret_id()?).await?;
        match merged(current.raw(), &map) {
            None => {
                out.note(format!("nothing to do: secret {} already maps every token", current.id));
                applied = json!({"outcome": "already", "version_id": current.version_id});
            }
            Some((value, changed)) => {
                let (_, after) = endpoint::write_version(&aws.secrets, &current, value).await?;
                if merged(after.raw(), &map).is_some() {
                    anyhow::bail!(
                        "secret {}: after writing, AWSCURRENT (version {}) does not hold the token map; run \
                         `tokens --apply` again",
                        current.id,
                        after.version_id
                    );
                }
                out.did(format!(
                    "wrote version {} of secret {} (was {}): {changed} token mapping(s) added; the gateway and the \
                     query routers use them within their secret cache time",
                    after.version_id, current.id, current.version_id
                ));
                applied = json!({"outcome": "written", "mappings": changed, "version_id": after.version_id});
            }
        }
    }
    Ok(out.finish(Exit::Success, json!({"authorizations": rows, "apply": applied})))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::sensitive::Sensitive;

    fn auth(hash: Option<&str>, plain: Option<&str>, new: &str) -> RebuiltAuthorization {
        RebuiltAuthorization {
            source_id: "01".into(),
            destination_id: "02".into(),
            description: "d".into(),
            org: "o".into(),
            user: "u".into(),
            status: "active".into(),
            permissions: vec!["read:orgs/o/buckets".into()],
            destination_token: Sensitive::new(new),
            source_token_hash: hash.map(Sensitive::new),
            source_token: plain.map(Sensitive::new),
        }
    }

    fn map(authorizations: Vec<RebuiltAuthorization>) -> TokenMap {
        TokenMap {
            version: token_map::VERSION,
            source_url: "s".into(),
            destination_url: "d".into(),
            source_version: "v2.9.1".into(),
            destination_version: "v2.7.12".into(),
            authorizations,
        }
    }

    #[test]
    fn merging_adds_hashes_and_plain_tokens_keeps_other_fields_and_is_idempotent() {
        let m = map(vec![auth(Some("$influxdb2-sha256$h1="), None, "n1"), auth(None, Some("plain"), "n2")]);
        let raw = json!({
            "source": {"url": "http://s"}, "destination": {"url": "http://d"}, "read": "source",
            "mappings": {"buckets": {"a": "b"}, "unmapped": "source-only", "tokens": {"other": "kept"}}, "note": "kept"
        });
        let (text, changed) = merged(&raw, &m).expect("entries to add");
        assert_eq!(changed, 2);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["mappings"]["token_hashes"]["$influxdb2-sha256$h1="], "n1");
        assert_eq!(v["mappings"]["tokens"]["plain"], "n2");
        assert_eq!(v["mappings"]["tokens"]["other"], "kept");
        assert_eq!(v["mappings"]["buckets"]["a"], "b");
        assert_eq!(v["note"], "kept");
        assert_eq!(merged(&v, &m), None, "a second apply finds nothing to do");
        // The result is a secret the functions accept, and they map the token by its hash.
        let parsed = shared::secret::EndpointSecret::parse("s", &text).unwrap();
        assert_eq!(parsed.mappings.token_hashes.len(), 1);
    }

    #[test]
    fn a_changed_destination_token_replaces_the_old_entry() {
        let raw = json!({"mappings": {"token_hashes": {"$h": "old"}}});
        let (text, changed) = merged(&raw, &map(vec![auth(Some("$h"), None, "new")])).unwrap();
        assert_eq!(changed, 1);
        assert!(text.contains("\"new\"") && !text.contains("\"old\""), "{text}");
    }
}
