//! Saved plans (`scaler plan -o FILE`) and the plan JSON Schema.

use std::path::Path;

use super::{Plan, FORMAT_VERSION};

/// The digest of a plan: SHA-256 (hex) of its JSON without `digest`.
pub fn digest(plan: &Plan) -> String {
    use sha2::Digest;
    let mut unsigned = plan.clone();
    unsigned.digest.clear();
    // Serialising a plan cannot fail (string keys, finite numbers).
    let bytes = serde_json::to_vec(&unsigned).unwrap_or_default();
    hex::encode(sha2::Sha256::digest(&bytes))
}

/// Saves `plan` as JSON with its digest, atomically (temp file + rename).
pub fn save(plan: &Plan, path: &Path) -> std::io::Result<()> {
    let mut signed = plan.clone();
    signed.digest = digest(plan);
    let text = serde_json::to_string_pretty(&signed).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp-scaler");
    std::fs::write(&tmp, text + "\n")?;
    std::fs::rename(&tmp, path)
}

/// Reads a saved plan; refuses other format versions and a plan whose
/// contents do not match its digest (an edited file would apply what it
/// says now, not what was shown when it was made).
pub fn load(path: &Path) -> Result<Plan, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("not a plan file: {e}"))?;
    match v.get("format_version").and_then(|f| f.as_str()) {
        Some(FORMAT_VERSION) => {}
        Some(other) => return Err(format!("plan format version `{other}` is not supported (this scaler writes `{FORMAT_VERSION}`)")),
        None => return Err("not a plan file: no `format_version`".to_string()),
    }
    let plan: Plan = serde_json::from_value(v).map_err(|e| format!("not a plan file: {e}"))?;
    if plan.digest.is_empty() {
        return Err("plan file has no `digest`: it was not written by `scaler plan -o`; make a new plan".to_string());
    }
    if digest(&plan) != plan.digest {
        return Err("plan file was modified after `scaler plan -o` wrote it (its digest does not match its contents); make a new plan".to_string());
    }
    Ok(plan)
}

/// The JSON Schema of the plan format.
pub fn schema() -> serde_json::Value {
    let mut s = serde_json::to_value(schemars::schema_for!(Plan)).unwrap_or_default();
    if let Some(m) = s.as_object_mut() {
        m.insert("$id".into(), "https://scaler.dev/schema/plan.schema.json".into());
        m.insert("title".into(), "scaler plan".into());
    }
    s
}

/// Writes `plan.schema.json` into `dir`.
pub fn write_schema(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let text = serde_json::to_string_pretty(&schema()).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("plan.schema.json"), text + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_in_plan_schema_is_fresh() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/plan.schema.json");
        let want = serde_json::to_string_pretty(&schema()).unwrap() + "\n";
        if std::env::var_os("SCALER_UPDATE_SCHEMAS").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(have == want, "schema/plan.schema.json is stale: run `SCALER_UPDATE_SCHEMAS=1 cargo test` or `scaler schema --write schema/`");
    }
}
