//! Every vector of `replication_diff.json` against `mesh_replication::diff`.

use std::collections::BTreeSet;
use std::error::Error;

use mesh_replication::{DiffItem, Index, diff};
use serde_json::Value as J;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../testdata/consul/replication_diff.json"
);

struct Item {
    key: String,
    hash: Vec<u8>,
    modify: Index,
}

impl DiffItem for Item {
    fn key(&self) -> &str {
        &self.key
    }
    fn hash(&self) -> &[u8] {
        &self.hash
    }
    fn modify_index(&self) -> Index {
        self.modify
    }
}

/// ACL vectors key by `ID` and give the hash as hex bytes; config-entry vectors key by
/// (Kind, Name) and give the hash as a number, 0 meaning "no hash".
fn key_of(v: &J) -> Result<String, Box<dyn Error>> {
    if let Some(id) = v.get("ID") {
        return Ok(id.as_str().ok_or("ID")?.to_owned());
    }
    let kind = v.get("Kind").and_then(J::as_str).ok_or("Kind")?;
    let name = v.get("Name").and_then(J::as_str).ok_or("Name")?;
    Ok(format!("{kind}/{name}"))
}

fn item(v: &J) -> Result<Item, Box<dyn Error>> {
    let hash = match v.get("Hash").ok_or("Hash")? {
        J::String(hex) => (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()?,
        J::Number(n) => {
            let n = n.as_u64().ok_or("hash number")?;
            if n == 0 {
                Vec::new()
            } else {
                n.to_be_bytes().to_vec()
            }
        }
        _ => return Err("hash type".into()),
    };
    Ok(Item {
        key: key_of(v)?,
        hash,
        modify: Index(
            v.get("ModifyIndex")
                .and_then(J::as_u64)
                .ok_or("ModifyIndex")?,
        ),
    })
}

fn items(v: &J) -> Result<Vec<Item>, Box<dyn Error>> {
    v.as_array().ok_or("array")?.iter().map(item).collect()
}

fn keys(v: Option<&J>) -> Result<BTreeSet<String>, Box<dyn Error>> {
    v.ok_or("expected list")?
        .as_array()
        .ok_or("array")?
        .iter()
        .map(|x| match x {
            J::String(s) => Ok(s.clone()),
            other => key_of(other),
        })
        .collect()
}

#[test]
fn every_replication_diff_vector() -> Result<(), Box<dyn Error>> {
    let file: J = serde_json::from_str(&std::fs::read_to_string(VECTORS)?)?;
    let vectors = file["vectors"].as_array().ok_or("vectors")?;
    assert_eq!(vectors.len() as u64, file["count"].as_u64().ok_or("count")?);
    for v in vectors {
        let name = v["name"].as_str().ok_or("name")?;
        let input = &v["input"];
        let local = items(&input["local"])?;
        let remote = items(&input["remote"])?;
        let last = Index(input["last_remote_index"].as_u64().ok_or("last")?);
        let d = diff(&local, &remote, last);
        let got_deletes: BTreeSet<String> =
            d.deletes.iter().map(|&i| local[i].key.clone()).collect();
        let got_upserts: BTreeSet<String> =
            d.upserts.iter().map(|&i| remote[i].key.clone()).collect();
        let exp = &v["expected"];
        let want_deletes = keys(exp.get("local_deletes").or(exp.get("deletions")))?;
        let want_upserts = keys(exp.get("local_upserts").or(exp.get("updates")))?;
        assert_eq!(got_deletes, want_deletes, "{name}: deletes");
        assert_eq!(got_upserts, want_upserts, "{name}: upserts");
        if let Some(n) = exp.get("local_skipped").and_then(J::as_u64) {
            assert_eq!(d.local_skipped as u64, n, "{name}: local_skipped");
        }
        if let Some(n) = exp.get("remote_skipped").and_then(J::as_u64) {
            assert_eq!(d.remote_skipped as u64, n, "{name}: remote_skipped");
        }
    }
    Ok(())
}
