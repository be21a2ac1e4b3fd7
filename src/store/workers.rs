//! Delivery workers: who is sending, and the heartbeat that keeps their leases.
//!
//! A worker registers when it starts and beats every third of `delivery.lease_seconds`: one
//! transaction renews the leases of the rows it holds (so a row in flight never expires) and
//! records what it is sending and how fast. A worker whose heartbeat stopped (killed, machine
//! gone) stops renewing: its rows are claimable once their lease runs out, and it drops out of
//! `issue status`.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, from_millis, placeholders, to_millis};

/// A worker as it registers.
#[derive(Debug, Clone)]
pub struct WorkerInfo {
    pub name: String,
    pub host: String,
    pub pid: u32,
    pub concurrency: u32,
}

/// One heartbeat.
#[derive(Debug, Clone, Copy)]
pub struct Beat<'a> {
    pub name: &'a str,
    /// The issue it is sending, if any.
    pub issue_id: Option<i64>,
    /// Messages it sent since it started, and its rate over the last beats.
    pub sent: i64,
    pub rate: f64,
    /// The deliveries it holds (claimed, not settled): their leases are renewed.
    pub held: &'a [i64],
    pub lease: Duration,
}

/// A registered worker, for `issue status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkerRow {
    pub name: String,
    pub host: String,
    pub pid: i64,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub issue_id: Option<i64>,
    pub concurrency: i64,
    pub sent: i64,
    /// Messages per second over its last heartbeats.
    pub rate: f64,
}

impl Store {
    /// Registers a worker (or re-registers one of the same name), and forgets workers whose
    /// heartbeat stopped a day ago.
    pub async fn register_worker(&self, w: &WorkerInfo) -> anyhow::Result<()> {
        let now = to_millis(Utc::now());
        sqlx::query("DELETE FROM workers WHERE heartbeat_at < $1")
            .bind(now - 24 * 3600 * 1000)
            .execute(&self.writer)
            .await
            .context("forgetting dead workers")?;
        sqlx::query(
            "INSERT INTO workers (name, host, pid, started_at, heartbeat_at, issue_id, concurrency, sent, rate)
             VALUES ($1, $2, $3, $4, $4, NULL, $5, 0, 0)
             ON CONFLICT (name) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        )
        .bind(&w.name)
        .bind(&w.host)
        .bind(i64::from(w.pid))
        .bind(now)
        .bind(i64::from(w.concurrency))
        .execute(&self.writer)
        .await
        .context("registering the worker")?;
        Ok(())
    }

    /// One heartbeat: renews the leases of `held` (only rows still pending and still this
    /// worker's) and records the worker's state, in one transaction. Returns the rows whose
    /// lease it renewed.
    pub async fn heartbeat(&self, beat: Beat<'_>) -> anyhow::Result<Vec<i64>> {
        let now = to_millis(Utc::now());
        let until = now + beat.lease.as_millis() as i64;
        let mut tx = self.begin_write().await?;
        let mut renewed = Vec::with_capacity(beat.held.len());
        for chunk in beat.held.chunks(500) {
            let sql = format!(
                "UPDATE deliveries SET lease_until = $1
                  WHERE lease_owner = $2 AND status = 'pending' AND id IN ({})
              RETURNING id",
                placeholders(3, chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(until)
                .bind(beat.name);
            for id in chunk {
                q = q.bind(*id);
            }
            for row in q.fetch_all(&mut *tx).await.context("renewing leases")? {
                renewed.push(row.try_get("id")?);
            }
        }
        sqlx::query(
            "UPDATE workers SET heartbeat_at = $1, issue_id = $2, sent = $3, rate = $4 WHERE name = $5",
        )
        .bind(now)
        .bind(beat.issue_id)
        .bind(beat.sent)
        .bind(beat.rate)
        .bind(beat.name)
        .execute(&mut *tx)
        .await
        .context("recording the heartbeat")?;
        tx.commit().await.context("committing the heartbeat")?;
        Ok(renewed)
    }

    /// Removes a worker that stops cleanly.
    pub async fn deregister_worker(&self, name: &str) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM workers WHERE name = $1")
            .bind(name)
            .execute(&self.writer)
            .await
            .context("deregistering the worker")?;
        Ok(())
    }

    /// The workers alive (a heartbeat within `alive`) and sending `issue_id`, by name.
    pub async fn workers_sending(
        &self,
        issue_id: i64,
        alive: Duration,
    ) -> anyhow::Result<Vec<WorkerRow>> {
        let since = to_millis(Utc::now()) - alive.as_millis() as i64;
        let rows = sqlx::query(
            "SELECT name, host, pid, started_at, heartbeat_at, issue_id, concurrency, sent, rate
               FROM workers WHERE issue_id = $1 AND heartbeat_at >= $2 ORDER BY name",
        )
        .bind(issue_id)
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .context("listing workers")?;
        rows.iter()
            .map(|r| {
                Ok(WorkerRow {
                    name: r.try_get("name")?,
                    host: r.try_get("host")?,
                    pid: r.try_get("pid")?,
                    started_at: from_millis(r.try_get("started_at")?),
                    heartbeat_at: from_millis(r.try_get("heartbeat_at")?),
                    issue_id: r.try_get("issue_id")?,
                    concurrency: r.try_get("concurrency")?,
                    sent: r.try_get("sent")?,
                    rate: r.try_get("rate")?,
                })
            })
            .collect()
    }
}
