//! `authorizations.json`: what a `--full` rebuild did to each authorization, kept in the backup
//! directory beside the snapshot it came from.
//!
//! When the destination cannot take the source's metadata store (it is older), `--full` recreates
//! every authorization through the API, and the destination issues new tokens. A source that
//! hashes its tokens (InfluxDB 2.9) no longer knows their plaintext, so the only link between the
//! token a client holds and its new destination token is the source's stored hash of it, which
//! the gateway can compute from the token a client presents. This file records that link;
//! `influx-migration tokens` reads it to tell operators what each client uses once it leaves the
//! gateway, and `tokens --apply` hands the hash → token map to the gateway.
//!
//! The file holds destination tokens, so it is written with mode 0600 and never logged.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shared::sensitive::Sensitive;

/// The file's name in the backup directory.
pub const FILE_NAME: &str = "authorizations.json";
/// The schema this build writes and reads.
pub const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum TokenMapError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not an authorizations file this version can read: {reason}")]
    Format { path: PathBuf, reason: String },
}

/// Every authorization the rebuild recreated, and the two servers it went between.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenMap {
    pub version: u32,
    pub source_url: String,
    pub destination_url: String,
    pub source_version: String,
    pub destination_version: String,
    pub authorizations: Vec<RebuiltAuthorization>,
}

/// One authorization: the same user, org, description, status and permissions at both ends,
/// with a new ID and a new token at the destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebuiltAuthorization {
    pub source_id: String,
    pub destination_id: String,
    #[serde(default)]
    pub description: String,
    /// The org's name (empty for an operator token, which has no org restriction).
    #[serde(default)]
    pub org: String,
    /// The user's name.
    #[serde(default)]
    pub user: String,
    /// `active` or `inactive`.
    pub status: String,
    /// Each permission as `action:resource`, e.g. `write:orgs/<org>/buckets/<bucket>`.
    pub permissions: Vec<String>,
    /// The new token at the destination.
    pub destination_token: Sensitive,
    /// The source's stored hash of the client's token (`$influxdb2-sha256$...`), when the source
    /// hashes tokens; the gateway maps a presented token by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_token_hash: Option<Sensitive>,
    /// The source's plaintext token, when the source does not hash tokens (2.7): the gateway
    /// maps it as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_token: Option<Sensitive>,
}

impl TokenMap {
    /// Reads the file at `path`.
    pub fn load(path: &Path) -> Result<TokenMap, TokenMapError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TokenMapError::Io { path: path.into(), source })?;
        let map: TokenMap = serde_json::from_str(&text)
            .map_err(|e| TokenMapError::Format { path: path.into(), reason: e.to_string() })?;
        if map.version != VERSION {
            return Err(TokenMapError::Format {
                path: path.into(),
                reason: format!("schema version {} (this build reads {VERSION})", map.version),
            });
        }
        Ok(map)
    }

    /// Writes the file at `path`, readable by its owner only, through a temporary file so a
    /// crash never leaves half of it.
    pub fn save(&self, path: &Path) -> Result<(), TokenMapError> {
        let io = |source| TokenMapError::Io { path: path.into(), source };
        let text = serde_json::to_vec_pretty(self)
            .map_err(|e| TokenMapError::Format { path: path.into(), reason: e.to_string() })?;
        let tmp = path.with_extension("json.tmp");
        {
            use std::io::Write as _;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                options.mode(0o600);
            }
            let mut f = options.open(&tmp).map_err(io)?;
            // `mode` applies only to a file it creates: one left by a crash keeps its own.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                f.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io)?;
            }
            f.write_all(&text).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TokenMap {
        TokenMap {
            version: VERSION,
            source_url: "http://127.0.0.1:8086".into(),
            destination_url: "http://127.0.0.1:8087".into(),
            source_version: "v2.9.1".into(),
            destination_version: "v2.7.12".into(),
            authorizations: vec![RebuiltAuthorization {
                source_id: "0a".into(),
                destination_id: "0b".into(),
                description: "telegraf".into(),
                org: "acme".into(),
                user: "alice".into(),
                status: "active".into(),
                permissions: vec!["write:orgs/acme/buckets/metrics".into()],
                destination_token: Sensitive::new("new-token"),
                source_token_hash: Some(Sensitive::new("$influxdb2-sha256$abc=")),
                source_token: None,
            }],
        }
    }

    #[test]
    fn a_saved_map_reads_back_the_same_and_only_its_owner_can_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        sample().save(&path).unwrap();
        assert_eq!(TokenMap::load(&path).unwrap(), sample());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!path.with_extension("json.tmp").exists());
    }

    /// Regression (issue 31): the owner-only mode was given only when the temporary file was
    /// new, so a temporary file left world-readable by a crash made a world-readable map.
    #[cfg(unix)]
    #[test]
    fn a_map_saved_over_a_left_over_readable_temporary_file_is_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, b"half a file").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
        sample().save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "authorizations.json holds destination tokens");
        assert_eq!(TokenMap::load(&path).unwrap(), sample());
    }

    #[test]
    fn a_map_from_a_newer_schema_is_refused_in_words_without_its_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut m = sample();
        m.version = 2;
        m.save(&path).unwrap();
        let e = TokenMap::load(&path).unwrap_err().to_string();
        assert!(e.contains("schema version 2"), "{e}");
        assert!(!e.contains("new-token"), "{e}");
    }
}
