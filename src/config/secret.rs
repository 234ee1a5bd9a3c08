//! Reading the secrets a config refers to ([`SecretRef`]): an environment
//! variable of the scaler process, or a file in the config repo. The value
//! is a [`SecretString`], hidden in `Debug`; it is read when needed and
//! never stored.

use std::path::Path;

use secrecy::SecretString;

use crate::model::SecretRef;

/// Reads a secret: an environment variable, or a file relative to `root`
/// (trailing newline removed).
/// The value is registered with [`crate::redact`], so that output, errors
/// and logs that echo it show `***`. A file must stay inside the repo.
pub fn read_secret(root: &Path, r: &SecretRef) -> Result<SecretString, String> {
    let value = match r {
        SecretRef::Env { env } => std::env::var(env).map_err(|_| format!("secret environment variable `{env}` is not set"))?,
        SecretRef::File { file } => {
            let s = super::repo::read_to_string(root, file).map_err(|e| format!("secret file `{file}`: {}", e.reason()))?;
            s.strip_suffix('\n').unwrap_or(&s).to_string()
        }
    };
    crate::redact::register(&value);
    Ok(SecretString::from(value))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn a_secret_file_loses_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "s3cret\n\n").unwrap();
        let s = read_secret(dir.path(), &SecretRef::File { file: "token".into() }).unwrap();
        assert_eq!(s.expose_secret(), "s3cret\n");
    }

    #[test]
    fn a_missing_secret_names_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let env = SecretRef::Env { env: "SCALER_TEST_SECRET_THAT_IS_NEVER_SET".into() };
        let missing = read_secret(dir.path(), &env).unwrap_err();
        assert_eq!(missing, "secret environment variable `SCALER_TEST_SECRET_THAT_IS_NEVER_SET` is not set");
        let file = read_secret(dir.path(), &SecretRef::File { file: "absent".into() }).unwrap_err();
        assert!(file.starts_with("secret file `absent`: "), "{file}");
    }
}
