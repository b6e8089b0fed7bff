//! What a backup's KV snapshot says about the source's authorizations, read straight from the
//! file: the snapshot is a BoltDB file (what `GET /api/v2/backup/kv` answers), and InfluxDB 2.9
//! stores each token there only as a hash (`hashedToken`), which its API never shows. Those hashes
//! are what lets the gateway recognise a client's token after the metadata was rebuilt with new
//! tokens at an older destination (`shared::secret`, `token_hashes`).
//!
//! Only reading is needed, so this is a small read-only walk of Bolt's on-disk layout (bbolt
//! `page.go`, `db.go`, `bucket.go`): two meta pages, each naming the root bucket's page; branch
//! pages of `(pos, ksize, pgid)` elements; leaf pages of `(flags, pos, ksize, vsize)` elements,
//! where flag 1 marks a nested bucket whose value is a `(root pgid, sequence)` header, followed
//! by the bucket's page inline when the root is 0. Every offset is checked against the file, so
//! a damaged snapshot is an error, never a panic.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use shared::secret::{TokenHash, token_hash};

const PAGE_HEADER: usize = 16;
const ELEMENT: usize = 16;
const BRANCH_PAGE: u16 = 0x01;
const LEAF_PAGE: u16 = 0x02;
const META_PAGE: u16 = 0x04;
const BUCKET_LEAF: u32 = 0x01;
const MAGIC: u32 = 0xED0C_DAED;
/// Where the meta's checksum starts: magic, version, page size, flags, root (16), freelist,
/// pgid, txid.
const META_CHECKSUMMED: usize = 56;
/// Deeper than any real B+tree; stops a cycle in a damaged file.
const MAX_DEPTH: usize = 64;

/// A key and its value, borrowed from the snapshot.
pub type Entry<'a> = (&'a [u8], &'a [u8]);
/// A leaf element: its flags (1 = nested bucket), key and value.
type Leaf<'a> = (u32, &'a [u8], &'a [u8]);

/// The bucket InfluxDB keeps authorizations in (`authorization/storage.go`).
pub const AUTHORIZATIONS: &[u8] = b"authorizationsv1";

#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("the KV snapshot is not a BoltDB file ({0})")]
    NotBolt(String),
    #[error("the KV snapshot is damaged: {0}")]
    Damaged(String),
    #[error("the KV snapshot has no bucket {0:?}")]
    NoBucket(String),
    #[error("authorization record {key} in the KV snapshot is not valid JSON: {reason}")]
    Record { key: String, reason: String },
}

/// A Bolt file held in memory.
pub struct Bolt<'a> {
    data: &'a [u8],
    page_size: usize,
    root: u64,
}

/// A bucket: its root page, or its only page held inline in the parent's value.
#[derive(Clone, Copy)]
enum Root<'a> {
    Page(u64),
    Inline(&'a [u8]),
}

impl<'a> Bolt<'a> {
    /// Opens the file's newest valid meta page.
    pub fn open(data: &'a [u8]) -> Result<Bolt<'a>, KvError> {
        // As bbolt does: the first meta gives the page size; when it is damaged, the second is
        // looked for where a 4 KiB page would put it.
        let first = meta(data, 0);
        let second_at = first.as_ref().map(|m| m.page_size).unwrap_or(4096);
        let newest = match (first, meta(data, second_at)) {
            (Ok(a), Ok(b)) => {
                if b.txid > a.txid {
                    b
                } else {
                    a
                }
            }
            (Ok(m), Err(_)) | (Err(_), Ok(m)) => m,
            (Err(e), Err(_)) => return Err(KvError::NotBolt(e)),
        };
        Ok(Bolt { data, page_size: newest.page_size, root: newest.root })
    }

    /// Every key and value of the bucket at `path` (nested buckets left out), in key order.
    pub fn entries(&self, path: &[&[u8]]) -> Result<Vec<Entry<'a>>, KvError> {
        let mut root = Root::Page(self.root);
        for name in path {
            let value = self
                .leaves(root)?
                .into_iter()
                .find(|(flags, k, _)| flags & BUCKET_LEAF != 0 && k == name)
                .map(|(_, _, v)| v)
                .ok_or_else(|| KvError::NoBucket(String::from_utf8_lossy(name).into_owned()))?;
            root = bucket_root(value)?;
        }
        Ok(self
            .leaves(root)?
            .into_iter()
            .filter(|(f, _, _)| f & BUCKET_LEAF == 0)
            .map(|(_, k, v)| (k, v))
            .collect())
    }

    /// Every leaf element under `root`, as (flags, key, value).
    fn leaves(&self, root: Root<'a>) -> Result<Vec<Leaf<'a>>, KvError> {
        let mut out = Vec::new();
        match root {
            Root::Inline(page) => self.walk(page, 0, &mut out)?,
            Root::Page(id) => {
                let page = self.page(id)?;
                self.walk(page, 0, &mut out)?
            }
        }
        Ok(out)
    }

    fn walk(
        &self,
        page: &'a [u8],
        depth: usize,
        out: &mut Vec<(u32, &'a [u8], &'a [u8])>,
    ) -> Result<(), KvError> {
        if depth > MAX_DEPTH {
            return Err(KvError::Damaged("its pages form a cycle".into()));
        }
        let flags = u16_at(page, 8)?;
        let count = usize::from(u16_at(page, 10)?);
        for i in 0..count {
            let at = PAGE_HEADER + i * ELEMENT;
            if flags & LEAF_PAGE != 0 {
                let (eflags, pos, ksize, vsize) =
                    (u32_at(page, at)?, u32_at(page, at + 4)?, u32_at(page, at + 8)?, u32_at(page, at + 12)?);
                let key_at = at + pos as usize;
                let key = slice(page, key_at, ksize as usize)?;
                let value = slice(page, key_at + ksize as usize, vsize as usize)?;
                out.push((eflags, key, value));
            } else if flags & BRANCH_PAGE != 0 {
                let child = u64_at(page, at + 8)?;
                let child = self.page(child)?;
                self.walk(child, depth + 1, out)?;
            } else {
                return Err(KvError::Damaged(format!("a bucket points at a page of type {flags:#x}")));
            }
        }
        Ok(())
    }

    /// Page `id` with its overflow pages.
    fn page(&self, id: u64) -> Result<&'a [u8], KvError> {
        let start = usize::try_from(id)
            .ok()
            .and_then(|id| id.checked_mul(self.page_size))
            .ok_or_else(|| KvError::Damaged(format!("page {id} is out of range")))?;
        let head = slice(self.data, start, PAGE_HEADER)?;
        let overflow = u32_at(head, 12)? as usize;
        let len = (overflow + 1)
            .checked_mul(self.page_size)
            .ok_or_else(|| KvError::Damaged(format!("page {id} is out of range")))?;
        // The last page of a file may be short of a whole page.
        let end = (start + len).min(self.data.len());
        Ok(&self.data[start..end])
    }
}

struct Meta {
    page_size: usize,
    root: u64,
    txid: u64,
}

fn meta(data: &[u8], at: usize) -> Result<Meta, String> {
    let page = data.get(at..).ok_or("the file is shorter than its header")?;
    let flags = u16_at(page, 8).map_err(|e| e.to_string())?;
    let m = page
        .get(PAGE_HEADER..PAGE_HEADER + META_CHECKSUMMED + 8)
        .ok_or("the file is shorter than its header")?;
    let word = |i: usize| u32::from_le_bytes([m[i], m[i + 1], m[i + 2], m[i + 3]]);
    let long = |i: usize| u64::from_le_bytes(m[i..i + 8].try_into().unwrap_or_default());
    if flags & META_PAGE == 0 || word(0) != MAGIC {
        return Err("no Bolt magic number at its start".into());
    }
    if word(4) != 2 {
        return Err(format!("Bolt file version {} (only 2 is known)", word(4)));
    }
    let checksum = long(META_CHECKSUMMED);
    if checksum != 0 && checksum != fnv64a(&m[..META_CHECKSUMMED]) {
        return Err("its meta page's checksum does not match".into());
    }
    let page_size = word(8) as usize;
    if !(512..=1 << 20).contains(&page_size) {
        return Err(format!("page size {page_size}"));
    }
    Ok(Meta { page_size, root: long(16), txid: long(48) })
}

fn bucket_root(value: &[u8]) -> Result<Root<'_>, KvError> {
    let root = u64_at(value, 0)?;
    if root == 0 {
        Ok(Root::Inline(
            value.get(16..).ok_or_else(|| KvError::Damaged("an inline bucket is cut short".into()))?,
        ))
    } else {
        Ok(Root::Page(root))
    }
}

fn fnv64a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

fn slice(data: &[u8], at: usize, len: usize) -> Result<&[u8], KvError> {
    at.checked_add(len)
        .and_then(|end| data.get(at..end))
        .ok_or_else(|| KvError::Damaged(format!("{len} bytes at offset {at} run past the end of a page")))
}

fn u16_at(data: &[u8], at: usize) -> Result<u16, KvError> {
    let b = slice(data, at, 2)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, KvError> {
    let b = slice(data, at, 4)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn u64_at(data: &[u8], at: usize) -> Result<u64, KvError> {
    let b = slice(data, at, 8)?;
    let mut w = [0u8; 8];
    w.copy_from_slice(b);
    Ok(u64::from_le_bytes(w))
}

/// One authorization as InfluxDB stores it (`influxdb.Authorization`), the fields read here: the
/// token (plain or hashed) for the rebuild's token map, status and permissions to recognise the
/// operator's. The rest (description, org, user) is taken from the source's API.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredAuthorization {
    pub id: String,
    /// The plaintext, when the source does not hash tokens (2.7, or 2.9 with hashing off).
    #[serde(default)]
    pub token: String,
    /// `$influxdb2-sha256$<base64url>` (or `-sha512`) on a 2.9 source that hashes tokens.
    #[serde(default)]
    pub hashed_token: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub permissions: Value,
}

impl StoredAuthorization {
    pub fn is_hashed(&self) -> bool {
        self.token.is_empty() && !self.hashed_token.is_empty()
    }

    /// Whether `token` is this authorization's: its plaintext, or hashed as the snapshot stores
    /// it (the variant is the hash's prefix).
    pub fn has_token(&self, token: &str) -> bool {
        if !self.token.is_empty() {
            return self.token == token;
        }
        let variant = if self.hashed_token.starts_with("$influxdb2-sha512$") {
            TokenHash::Sha512
        } else {
            TokenHash::Sha256
        };
        !self.hashed_token.is_empty() && token_hash(token, variant).expose() == self.hashed_token
    }

    /// An operator's authorization (influxdb `OperPermissions`): active, and read and write on
    /// authorizations, buckets, orgs and users with no org or ID restriction.
    pub fn is_operator(&self) -> bool {
        let Some(permissions) = self.permissions.as_array() else { return false };
        let unrestricted = |kind: &str, action: &str| {
            permissions.iter().any(|p| {
                let r = &p["resource"];
                p["action"] == action
                    && r["type"] == kind
                    && r.get("orgID").is_none_or(|v| v.is_null() || v == "")
                    && r.get("id").is_none_or(|v| v.is_null() || v == "")
            })
        };
        self.status != "inactive"
            && ["authorizations", "buckets", "orgs", "users"]
                .iter()
                .all(|k| unrestricted(k, "read") && unrestricted(k, "write"))
    }
}

/// Every authorization in a KV snapshot, by ID.
pub fn authorizations(snapshot: &[u8]) -> Result<BTreeMap<String, StoredAuthorization>, KvError> {
    let bolt = Bolt::open(snapshot)?;
    let mut out = BTreeMap::new();
    for (key, value) in bolt.entries(&[AUTHORIZATIONS])? {
        let a: StoredAuthorization = serde_json::from_slice(value).map_err(|e| KvError::Record {
            key: String::from_utf8_lossy(key).into_owned(),
            // serde's message names the position, never the value.
            reason: e.to_string(),
        })?;
        out.insert(a.id.clone(), a);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = 4096;

    /// A page: header, then the elements, then their keys and values.
    fn page(id: u64, flags: u16, elements: &[(u32, &[u8], &[u8])], branch_children: &[u64]) -> Vec<u8> {
        let mut p = vec![0u8; PAGE_HEADER];
        p[0..8].copy_from_slice(&id.to_le_bytes());
        p[8..10].copy_from_slice(&flags.to_le_bytes());
        p[10..12].copy_from_slice(&(elements.len() as u16).to_le_bytes());
        let mut data = Vec::new();
        let heads = PAGE_HEADER + elements.len() * ELEMENT;
        for (i, (eflags, k, v)) in elements.iter().enumerate() {
            let at = PAGE_HEADER + i * ELEMENT;
            let pos = (heads + data.len() - at) as u32;
            if flags == BRANCH_PAGE {
                p.extend_from_slice(&pos.to_le_bytes());
                p.extend_from_slice(&(k.len() as u32).to_le_bytes());
                p.extend_from_slice(&branch_children[i].to_le_bytes());
            } else {
                p.extend_from_slice(&eflags.to_le_bytes());
                p.extend_from_slice(&pos.to_le_bytes());
                p.extend_from_slice(&(k.len() as u32).to_le_bytes());
                p.extend_from_slice(&(v.len() as u32).to_le_bytes());
            }
            data.extend_from_slice(k);
            data.extend_from_slice(v);
        }
        p.extend_from_slice(&data);
        p
    }

    fn meta_page(id: u64, root: u64, txid: u64) -> Vec<u8> {
        let mut p = vec![0u8; PAGE_HEADER];
        p[0..8].copy_from_slice(&id.to_le_bytes());
        p[8..10].copy_from_slice(&META_PAGE.to_le_bytes());
        let mut m = Vec::new();
        m.extend_from_slice(&MAGIC.to_le_bytes());
        m.extend_from_slice(&2u32.to_le_bytes());
        m.extend_from_slice(&(PAGE as u32).to_le_bytes());
        m.extend_from_slice(&0u32.to_le_bytes());
        m.extend_from_slice(&root.to_le_bytes());
        m.extend_from_slice(&0u64.to_le_bytes()); // sequence
        m.extend_from_slice(&0u64.to_le_bytes()); // freelist
        m.extend_from_slice(&0u64.to_le_bytes()); // pgid
        m.extend_from_slice(&txid.to_le_bytes());
        let sum = fnv64a(&m);
        m.extend_from_slice(&sum.to_le_bytes());
        p.extend_from_slice(&m);
        p
    }

    fn file(pages: Vec<Vec<u8>>) -> Vec<u8> {
        let mut f = Vec::new();
        for mut p in pages {
            p.resize(PAGE, 0);
            f.extend_from_slice(&p);
        }
        f
    }

    fn header(root: u64) -> Vec<u8> {
        let mut h = root.to_le_bytes().to_vec();
        h.extend_from_slice(&0u64.to_le_bytes());
        h
    }

    fn auth(id: &str, hashed: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "id": id, "token": "", "hashedToken": hashed, "status": "active", "description": "d",
            "orgID": "o", "userID": "u", "permissions": [{"action": "read"}]
        }))
        .unwrap()
    }

    /// The newer meta page names a root leaf holding `authorizationsv1`, whose root is a branch
    /// over two leaves; an inline bucket sits beside it.
    #[test]
    fn authorizations_are_read_across_branch_and_leaf_pages_from_the_newest_meta() {
        let (a1, a2, a3) = (auth("0001", "$influxdb2-sha256$AA=="), auth("0002", ""), auth("0003", "$x$y"));
        let leaf_a = page(4, LEAF_PAGE, &[(0, b"0001", &a1), (0, b"0002", &a2)], &[]);
        let leaf_b = page(5, LEAF_PAGE, &[(0, b"0003", &a3)], &[]);
        let branch = page(3, BRANCH_PAGE, &[(0, b"0001", b""), (0, b"0003", b"")], &[4, 5]);
        let mut inline = header(0);
        inline.extend_from_slice(&page(0, LEAF_PAGE, &[(0, b"k", b"v")], &[]));
        let root = page(
            2,
            LEAF_PAGE,
            &[(BUCKET_LEAF, AUTHORIZATIONS, &header(3)), (BUCKET_LEAF, b"other", &inline)],
            &[],
        );
        // The older meta (txid 1) points at a page that is not a bucket: it must not be used.
        let f = file(vec![meta_page(0, 2, 7), meta_page(1, 6, 1), root, branch, leaf_a, leaf_b]);

        let all = authorizations(&f).unwrap();
        assert_eq!(all.keys().collect::<Vec<_>>(), ["0001", "0002", "0003"]);
        assert_eq!(all["0001"].hashed_token, "$influxdb2-sha256$AA==");
        assert!(all["0001"].is_hashed());
        assert!(!all["0002"].is_hashed());
        let bolt = Bolt::open(&f).unwrap();
        assert_eq!(bolt.entries(&[b"other"]).unwrap(), vec![(&b"k"[..], &b"v"[..])]);
    }

    fn stored(token: &str, hashed: &str, permissions: Value) -> StoredAuthorization {
        StoredAuthorization {
            id: "0001".into(),
            token: token.into(),
            hashed_token: hashed.into(),
            status: "active".into(),
            permissions,
        }
    }

    fn operator_permissions() -> Value {
        let mut all = Vec::new();
        for kind in ["authorizations", "buckets", "orgs", "users", "tasks"] {
            for action in ["read", "write"] {
                all.push(serde_json::json!({"action": action, "resource": {"type": kind}}));
            }
        }
        Value::Array(all)
    }

    #[test]
    fn a_token_is_recognised_by_its_plaintext_or_either_hash_and_nothing_else() {
        let sha256 = token_hash("op-token", TokenHash::Sha256);
        let sha512 = token_hash("op-token", TokenHash::Sha512);
        for a in [
            stored("op-token", "", Value::Null),
            stored("", sha256.expose(), Value::Null),
            stored("", sha512.expose(), Value::Null),
        ] {
            assert!(a.has_token("op-token"));
            assert!(!a.has_token("other"));
            assert!(!a.has_token(""));
        }
        assert!(!stored("", "", Value::Null).has_token(""));
    }

    #[test]
    fn only_an_active_unrestricted_read_write_authorization_is_an_operators() {
        assert!(stored("", "h", operator_permissions()).is_operator());
        let mut inactive = stored("", "h", operator_permissions());
        inactive.status = "inactive".into();
        assert!(!inactive.is_operator());
        let mut in_one_org = operator_permissions();
        for p in in_one_org.as_array_mut().unwrap() {
            p["resource"]["orgID"] = "0a".into();
        }
        assert!(!stored("", "h", in_one_org).is_operator(), "an all-access token is not an operator's");
        assert!(!stored("", "h", Value::Null).is_operator());
    }

    #[test]
    fn a_file_that_is_not_bolt_or_is_cut_short_is_an_error_not_a_panic() {
        assert!(matches!(authorizations(b"not a bolt file"), Err(KvError::NotBolt(_))));
        let a = auth("0001", "h");
        let root = page(2, LEAF_PAGE, &[(BUCKET_LEAF, AUTHORIZATIONS, &header(3))], &[]);
        let leaf = page(3, LEAF_PAGE, &[(0, b"0001", &a)], &[]);
        let whole = file(vec![meta_page(0, 2, 1), meta_page(1, 2, 0), root, leaf]);
        for cut in [PAGE * 2 + 10, PAGE * 3 + 20, PAGE * 3 + 40] {
            assert!(authorizations(&whole[..cut]).is_err(), "cut at {cut}");
        }
        let mut corrupt = whole.clone();
        corrupt[PAGE_HEADER + 20] ^= 0xff; // the first meta's root, under its checksum
        assert_eq!(authorizations(&corrupt).unwrap().len(), 1, "the second meta is used");
        corrupt[PAGE + PAGE_HEADER] ^= 0xff; // the second meta's magic
        assert!(matches!(authorizations(&corrupt), Err(KvError::NotBolt(_))));
        let no_bucket = file(vec![meta_page(0, 2, 1), meta_page(1, 2, 0), page(2, LEAF_PAGE, &[], &[])]);
        assert!(matches!(authorizations(&no_bucket), Err(KvError::NoBucket(_))));
    }
}
