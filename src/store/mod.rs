//! Storage: one interface over SQLite (the embedded default) and PostgreSQL (for scale).
//!
//! Both databases are reached through sqlx's `Any` driver with one set of query texts: both
//! accept `$1` placeholders, `ON CONFLICT … DO UPDATE` and `RETURNING`, and the schema stores times
//! as `BIGINT` milliseconds. Where the dialects must differ (claiming rows with
//! `FOR UPDATE SKIP LOCKED`, which SQLite lacks) the query picks by [`Backend`] in this module
//! alone. The same test suite runs against both.

pub mod bounces;
pub mod comparisons;
pub mod deliveries;
pub mod engagement;
pub mod history;
pub mod issues;
pub mod limits;
pub mod metrics;
pub mod operators;
pub mod outbound;
pub mod overview;
pub mod schedule;
pub mod subscribers;
pub mod throttle;
pub mod variants;
pub mod workers;

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, TimeZone, Utc};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};

use crate::config::{DatabaseSettings, DatabaseUrl};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Which database is behind a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The application's database handle: connection pools, built once per process.
///
/// On SQLite, writes go through a separate pool of **one** connection: SQLite has a single
/// writer anyway, and queueing for that connection is fair and immediate, whereas concurrent
/// writers collide and SQLite's busy handler backs off with sleeps (hundreds of ms at p99 under
/// load). Readers use the main pool and run beside the writer thanks to WAL. On PostgreSQL both
/// are the same pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    writer: AnyPool,
    backend: Backend,
}

impl Store {
    /// Opens the pool (creating the SQLite file and its folder if missing). Does not migrate.
    pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<Store> {
        install_default_drivers();
        let backend = match &settings.url {
            DatabaseUrl::Sqlite { path, .. } => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).with_context(|| {
                        format!("creating the database folder {}", dir.display())
                    })?;
                }
                Backend::Sqlite
            }
            DatabaseUrl::Postgres(_) => Backend::Postgres,
        };
        let options = |max: u32| {
            AnyPoolOptions::new()
                .max_connections(max)
                // While PostgreSQL is down, sqlx retries connecting with a backoff of up to a
                // fifth of this: 10 s keeps it at 2 s, so a sender is back within about 2 s of
                // the server's return (at 30 s it took 4-6 s).
                .acquire_timeout(Duration::from_secs(match backend {
                    Backend::Postgres => 10,
                    Backend::Sqlite => 30,
                }))
                // The default pings every connection before handing it out: a round trip per
                // query. A broken connection fails its query instead, which callers handle.
                .test_before_acquire(false)
                .after_connect(move |conn, _meta| {
                    Box::pin(async move {
                        if backend == Backend::Sqlite {
                            // WAL lets readers run beside the writer; the busy timeout makes
                            // other processes' writers wait instead of failing; foreign keys
                            // are off by default in SQLite.
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                        }
                        Ok(())
                    })
                })
        };
        let url = settings.url.connect_url();
        let pool = options(settings.max_connections)
            .connect(&url)
            .await
            .with_context(|| format!("connecting to {}", settings.url.redacted()))?;
        let writer = match backend {
            // A failed COMMIT (a full disk, an I/O error) may leave SQLite's transaction rolled
            // back while sqlx still counts it open: the rollback sqlx queues then fails ("no
            // transaction is active") and every later `BEGIN IMMEDIATE` on that connection is
            // refused with "begin_with at non-zero transaction depth". A connection that comes
            // back still in a transaction is closed instead (SQLite rolls back whatever is
            // left), and the next write opens a fresh one.
            Backend::Sqlite => options(1)
                .after_release(|conn, _meta| {
                    Box::pin(async move {
                        // Runs after the queued rollback: the worker handles commands in order.
                        sqlx::Connection::ping(conn).await?;
                        Ok(!sqlx::Connection::is_in_transaction(conn))
                    })
                })
                .connect(&url)
                .await
                .with_context(|| format!("connecting to {}", settings.url.redacted()))?,
            Backend::Postgres => pool.clone(),
        };
        Ok(Store {
            pool,
            writer,
            backend,
        })
    }

    /// Applies the migrations this binary embeds; returns how many were new.
    pub async fn migrate(&self) -> anyhow::Result<usize> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        let before = self.applied_migrations().await.unwrap_or(0);
        migrator
            .run(&self.writer)
            .await
            .context("applying database migrations")?;
        let after = self.applied_migrations().await?;
        Ok(after.saturating_sub(before))
    }

    async fn applied_migrations(&self) -> anyhow::Result<usize> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = $1")
            .bind(true)
            .fetch_one(&self.pool)
            .await?;
        Ok(n as usize)
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads and then writes fails with
    /// `SQLITE_BUSY` when another writer got in between, whatever the busy timeout.
    pub async fn begin_write(&self) -> anyhow::Result<sqlx::Transaction<'static, sqlx::Any>> {
        let tx = match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.writer.begin().await,
        };
        tx.context("starting a transaction")
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool for reads.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The pool for single-statement writes (see the type's documentation).
    pub fn writer(&self) -> &AnyPool {
        &self.writer
    }

    /// Round-trips a trivial query: for readiness checks.
    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Whether the database takes writes now: one small committed write through the writer
    /// (the single-row `write_probe` table), so a full disk, a read-only file or a database in
    /// recovery shows here even while reads work. For `/readyz` and `issue status`.
    pub async fn probe_write(&self) -> anyhow::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO write_probe (id, at) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET at = excluded.at",
        )
        .bind(to_millis(Utc::now()))
        .execute(&mut *tx)
        .await
        .context("writing")?;
        tx.commit().await.context("committing")?;
        Ok(())
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }
}

/// Whether `e` may go away by itself: the database cannot be reached or is restarting
/// (PostgreSQL's connection and shutdown errors, a pool timeout, a broken socket), or SQLite
/// is busy, full or failing I/O. A caller that can wait retries these rather than giving up.
pub fn is_transient(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        let Some(e) = cause.downcast_ref::<sqlx::Error>() else {
            return false;
        };
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|code| transient_code(&code)),
            _ => false,
        }
    })
}

/// Whether a database error code names a condition that passes by itself.
///
/// PostgreSQL (five characters, SQLSTATE): every connection exception (class 08: the server
/// went away, refused or broke the connection); insufficient resources (53000, disk full 53100,
/// out of memory 53200, too many connections 53300; not 53400, a configuration limit); a
/// read-only transaction (25006: a standby promoted or `default_transaction_read_only` while a
/// disk is being freed); operator intervention (57P01 admin shutdown, 57P02 crash shutdown,
/// 57P03 cannot connect now, 57P05 idle session timeout; not 57P04, the database dropped);
/// serialisation failure and deadlock (40001, 40P01).
///
/// SQLite (the primary code is the low byte of the extended one; at most four digits): BUSY 5,
/// LOCKED 6, IOERR 10, FULL 13, CANTOPEN 14.
pub fn transient_code(code: &str) -> bool {
    if code.len() == 5 {
        code.starts_with("08")
            || matches!(
                code,
                "53000"
                    | "53100"
                    | "53200"
                    | "53300"
                    | "25006"
                    | "57P01"
                    | "57P02"
                    | "57P03"
                    | "57P05"
                    | "40001"
                    | "40P01"
            )
    } else {
        code.parse::<i32>()
            .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 13 | 14))
    }
}

/// Counts `n` new subscribers of `status` in `subscriber_counts`, in the transaction (or
/// statement) that inserted them: inserts are counted by their writer, once per batch, not by a
/// trigger per row (migration 0017); status changes and deletions by the triggers of 0014.
pub(crate) async fn count_new_subscribers<'c, E>(ex: E, status: &str, n: i64) -> anyhow::Result<()>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    if n != 0 {
        sqlx::query("UPDATE subscriber_counts SET n = n + $1 WHERE status = $2")
            .bind(n)
            .bind(status)
            .execute(ex)
            .await
            .context("counting new subscribers")?;
    }
    Ok(())
}

/// Counts `n` new consent records of `event` in `consent_counts` (see
/// [`count_new_subscribers`]).
pub(crate) async fn count_new_consents<'c, E>(ex: E, event: &str, n: i64) -> anyhow::Result<()>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    if n != 0 {
        sqlx::query(
            "INSERT INTO consent_counts (event, n) VALUES ($1, $2)
             ON CONFLICT (event) DO UPDATE SET n = consent_counts.n + excluded.n",
        )
        .bind(event)
        .bind(n)
        .execute(ex)
        .await
        .context("counting consent records")?;
    }
    Ok(())
}

/// `$start, $start+1, …` (`n` of them): numbered placeholders for dynamic IN lists and
/// multi-row inserts. Only these are interpolated into SQL; every value is bound.
pub(crate) fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($1, …, $w), ($w+1, …)`: `rows` groups of `width` placeholders.
pub(crate) fn rows_of(rows: usize, width: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", placeholders(r * width + 1, width)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Milliseconds since the Unix epoch: how every time is stored.
pub fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The inverse of [`to_millis`].
pub fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[cfg(test)]
mod tests {
    use super::is_transient;

    #[test]
    fn connection_failures_are_transient_and_wrong_queries_are_not() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = anyhow::Error::from(sqlx::Error::Io(refused)).context("claiming deliveries");
        assert!(is_transient(&e), "through a context: {e:#}");
        assert!(is_transient(&anyhow::Error::from(
            sqlx::Error::PoolTimedOut
        )));
        assert!(!is_transient(&anyhow::Error::from(
            sqlx::Error::RowNotFound
        )));
        assert!(!is_transient(&anyhow::anyhow!(
            "issue 3 has no content to send"
        )));
    }

    #[test]
    fn database_codes_that_pass_by_themselves_are_transient() {
        use super::transient_code;
        let cases = [
            ("08006", true, "connection failure"),
            ("08001", true, "cannot establish a connection"),
            ("08P01", true, "protocol violation (a broken connection)"),
            ("53100", true, "disk full"),
            ("53200", true, "out of memory"),
            ("53300", true, "too many connections"),
            (
                "53400",
                false,
                "a configuration limit does not pass by itself",
            ),
            ("25006", true, "read-only transaction"),
            ("57P01", true, "admin shutdown"),
            ("57P02", true, "crash shutdown"),
            ("57P03", true, "cannot connect now"),
            ("57P04", false, "the database was dropped"),
            ("57P05", true, "idle session timeout"),
            ("40001", true, "serialisation failure"),
            ("40P01", true, "deadlock"),
            ("23505", false, "unique violation"),
            ("42P01", false, "undefined table"),
            ("13", true, "SQLite FULL"),
            ("5", true, "SQLite BUSY"),
            ("266", true, "SQLite IOERR_READ (extended)"),
            ("2067", false, "SQLite CONSTRAINT_UNIQUE"),
            ("1", false, "SQLite ERROR"),
        ];
        for (code, transient, what) in cases {
            assert_eq!(transient_code(code), transient, "{code}: {what}");
        }
    }
}
