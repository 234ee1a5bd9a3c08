//! PostgreSQL for tests: the server at `SCALER_TEST_PG_URL` (default: the
//! machine's, `postgres://postgres@127.0.0.1:5432/postgres`, trust auth),
//! and a fresh schema per test on it ([`PgSchema`]), dropped afterwards.
//!
//! `scripts/test.sh` starts a server of its own (`initdb` + `pg_ctl` in a
//! temp dir, as a non-root user, on a free port) when none answers, and
//! exports the variable. A server that cannot be reached fails the test with
//! that hint; nothing is skipped.

use postgres::NoTls;

/// Names the test server.
pub const PG_URL_ENV: &str = "SCALER_TEST_PG_URL";

/// The test server when [`PG_URL_ENV`] is not set.
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The test server's URL.
pub fn pg_url() -> String {
    std::env::var(PG_URL_ENV).ok().filter(|u| !u.is_empty()).unwrap_or_else(|| DEFAULT_PG_URL.to_owned())
}

/// `url` with one more query parameter.
pub fn with_param(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

/// A connection to the test server as its admin, or a failed test that
/// says how to get a server.
pub fn admin() -> postgres::Client {
    let url = pg_url();
    postgres::Client::connect(&url, NoTls).unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at `{url}` ({e}). Run the tests with `scripts/test.sh`, which starts a PostgreSQL \
             of its own when none answers, or set {PG_URL_ENV} to a server where this user may create schemas \
             (Debian: `apt-get install postgresql`)"
        )
    })
}

/// A schema of its own on the test server, for one test: every connection
/// made with [`PgSchema::url`] creates and sees tables only there. Dropped
/// (with everything in it) when the value is.
pub struct PgSchema {
    name: String,
}

impl PgSchema {
    /// Creates a fresh, empty schema.
    pub fn new() -> PgSchema {
        let name = format!("scaler_test_{}", uuid::Uuid::new_v4().simple());
        admin().batch_execute(&format!("CREATE SCHEMA {name}")).unwrap_or_else(|e| panic!("create schema `{name}`: {e}"));
        PgSchema { name }
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL whose connections use this schema (`search_path`).
    pub fn url(&self) -> String {
        with_param(&pg_url(), &format!("options=-csearch_path%3D{}", self.name))
    }

    /// A plain connection to the schema, for what a test does behind the
    /// store's back.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), NoTls).unwrap_or_else(|e| panic!("connect to schema `{}`: {e}", self.name))
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        // No panic here (it may run while a failed test unwinds); a schema
        // left behind only costs space.
        let dropped = postgres::Client::connect(&pg_url(), NoTls)
            .and_then(|mut c| c.batch_execute(&format!("SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {} CASCADE", self.name)));
        if let Err(e) = dropped {
            eprintln!("warning: test schema `{}` not dropped: {e}", self.name);
        }
    }
}
