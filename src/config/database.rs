//! `[database]`: where the data lives (SQLite or PostgreSQL).

use super::*;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: DatabaseUrl,
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

pub(super) fn default_max_connections() -> u32 {
    10
}

/// The `sslmode` values of `database.url` for PostgreSQL, as libpq has them (`allow` is left
/// out: it falls back to clear text after a refused TLS handshake).
pub const SSL_MODES: [&str; 5] = ["disable", "prefer", "require", "verify-ca", "verify-full"];

/// A database address we know how to open.
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub enum DatabaseUrl {
    /// `sqlite://PATH`; the file (and its folder) are created if missing.
    Sqlite { path: PathBuf, url: String },
    /// `postgres://…` or `postgresql://…`.
    Postgres(SecretString),
}

impl DatabaseUrl {
    /// The URL handed to sqlx (contains the password for PostgreSQL: never log it).
    pub fn connect_url(&self) -> String {
        match self {
            DatabaseUrl::Sqlite { path, .. } => {
                format!("sqlite://{}?mode=rwc", path.display())
            }
            DatabaseUrl::Postgres(url) => url.expose_secret().to_string(),
        }
    }

    /// The URL with any password masked, for logs.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Sqlite { url, .. } => url.clone(),
            DatabaseUrl::Postgres(url) => match url::Url::parse(url.expose_secret()) {
                Ok(mut u) => {
                    if u.password().is_some() {
                        let _ = u.set_password(Some("***"));
                    }
                    u.to_string()
                }
                Err(_) => "postgres://***".into(),
            },
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl TryFrom<String> for DatabaseUrl {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let Some((scheme, rest)) = value.split_once("://") else {
            return Err(format!(
                "{value:?} is not a URL (expected sqlite://PATH or postgres://…)"
            ));
        };
        match scheme {
            "sqlite" => {
                let path = rest.split('?').next().unwrap_or_default();
                if path.is_empty() {
                    return Err(
                        "sqlite:// needs a file path, e.g. sqlite://data/verdicts.db".into(),
                    );
                }
                if path == ":memory:" {
                    return Err(
                        "an in-memory SQLite database loses everything at exit; give a file path"
                            .into(),
                    );
                }
                Ok(DatabaseUrl::Sqlite {
                    path: PathBuf::from(path),
                    url: value.clone(),
                })
            }
            "postgres" | "postgresql" => {
                let parsed = url::Url::parse(&value)
                    .map_err(|e| format!("not a valid PostgreSQL URL: {e}"))?;
                // TLS as libpq spells it; sqlx reads the same parameters.
                for (key, v) in parsed.query_pairs() {
                    match key.as_ref() {
                        "sslmode" if !SSL_MODES.contains(&v.as_ref()) => {
                            return Err(format!(
                                "sslmode={v:?} (use one of {})",
                                SSL_MODES.join(", ")
                            ));
                        }
                        "sslrootcert" if !Path::new(v.as_ref()).is_file() => {
                            return Err(format!("sslrootcert={v:?}: no such file"));
                        }
                        _ => {}
                    }
                }
                Ok(DatabaseUrl::Postgres(SecretString::from(value)))
            }
            other => Err(format!(
                "unsupported scheme {other:?} (expected sqlite or postgres)"
            )),
        }
    }
}
