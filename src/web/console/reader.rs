//! `/admin/subscribers/{id}`: one reader and their history — signup, confirmation, each issue
//! sent, bounces, complaints and unsubscribe — with times and sources, oldest first.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Console, PageError, when};
use crate::bounces::kinds::BounceKind;
use crate::delivery::status::DeliveryStatus;
use crate::store::history::ReaderHistory;
use crate::subscribers::SubscriberStatus;
use crate::web::AppState;

#[derive(Serialize)]
struct ReaderView {
    email: String,
    name: String,
    status: &'static str,
    source: String,
    created_at: String,
    confirmed_at: String,
    unsubscribed_at: String,
    /// "until …" while paused, else "—".
    paused: String,
    /// "for 3 d 4 h" while pending, else "—".
    pending: String,
    /// "Chat, Image", or "everything".
    categories: String,
    /// "new@example.org, not confirmed yet", else "—".
    new_address: String,
    /// "until …" while a repermission is unanswered, else "—".
    asked: String,
}

/// One line of the history.
#[derive(Serialize)]
struct EventView {
    #[serde(skip)]
    sort: DateTime<Utc>,
    at: String,
    /// For styling and tests: consent, delivery, bounce.
    kind: &'static str,
    what: String,
    href: Option<String>,
    source: String,
    detail: String,
}

fn consent_label(event: &str) -> String {
    match event {
        "signup" => "Signed up".into(),
        "confirm" => "Confirmed".into(),
        "email_change" => "Changed address".into(),
        "keep" => "Kept the subscription".into(),
        "lapsed" => "Lapsed: did not keep by the deadline".into(),
        "unsubscribe" => "Unsubscribed".into(),
        "import" => "Imported".into(),
        other => other.replace('_', " "),
    }
}

fn issue_label(number: Option<i64>, week: &str) -> (String, String) {
    match number {
        Some(n) => (format!("#{n} · {week}"), format!("/admin/issues/{n}")),
        None => (week.to_string(), format!("/admin/issues/{week}")),
    }
}

/// `GET /admin/subscribers/{id}`.
pub(super) async fn reader(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let back = "/admin/subscribers";
    let Ok(id) = id.parse::<i64>() else {
        return console.message(
            &state,
            StatusCode::NOT_FOUND,
            "Not found",
            &format!("{id:?} is not a subscriber number"),
            back,
        );
    };
    let history = match state.app.reader(id).await {
        Ok(Some(h)) => h,
        Ok(None) => {
            return console.message(
                &state,
                StatusCode::NOT_FOUND,
                "Not found",
                &format!("There is no subscriber {id} (erased readers leave no record)."),
                back,
            );
        }
        Err(e) => return console.ops_error(&state, e, back),
    };
    let ReaderHistory {
        subscriber: s,
        consents,
        deliveries,
        bounces,
    } = history;
    let mut events: Vec<EventView> = Vec::new();
    let recorded_arrival = consents
        .iter()
        .any(|c| matches!(c.event.as_str(), "signup" | "import"));
    if !recorded_arrival {
        events.push(EventView {
            sort: s.created_at,
            at: when(s.created_at),
            kind: "consent",
            what: "Added".into(),
            href: None,
            source: s.source.clone(),
            detail: String::new(),
        });
    }
    for c in consents {
        let detail = [
            c.ip.map(|ip| format!("from {ip}")),
            c.user_agent,
            c.consent_text_version.map(|v| format!("consent text {v}")),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" · ");
        events.push(EventView {
            sort: c.at,
            at: when(c.at),
            kind: "consent",
            what: consent_label(&c.event),
            href: None,
            source: c.source,
            detail,
        });
    }
    for d in deliveries {
        let (label, href) = issue_label(d.number, &d.week);
        let at = d.sent_at.unwrap_or(d.updated_at);
        let what = match d.status {
            DeliveryStatus::Sent => format!("Issue {label} sent"),
            DeliveryStatus::Pending => format!("Issue {label} waiting to be sent"),
            DeliveryStatus::Failed => format!("Issue {label} failed"),
            DeliveryStatus::Skipped => format!("Issue {label} skipped"),
        };
        let mut detail = match d.attempts {
            1 => "1 attempt".to_string(),
            n => format!("{n} attempts"),
        };
        if let Some(e) = d.last_error.filter(|_| d.status != DeliveryStatus::Sent) {
            detail.push_str(&format!(" · {e}"));
        }
        events.push(EventView {
            sort: at,
            at: when(at),
            kind: "delivery",
            what,
            href: Some(href),
            source: "delivery".into(),
            detail,
        });
    }
    for b in bounces {
        let what = match b.kind {
            BounceKind::Hard => "Hard bounce",
            BounceKind::Soft => "Soft bounce",
            BounceKind::Complaint => "Complaint",
            BounceKind::Ignored => "Report ignored",
        };
        let (what, href) = match (b.number, &b.week) {
            (n, Some(week)) => {
                let (label, href) = issue_label(n, week);
                (format!("{what} (issue {label})"), Some(href))
            }
            _ => (what.to_string(), None),
        };
        let detail = [
            b.status_code,
            Some(b.reason),
            b.matched_by.map(|m| format!("matched by {}", m.as_str())),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" · ");
        events.push(EventView {
            sort: b.received_at,
            at: when(b.received_at),
            kind: "bounce",
            what,
            href,
            source: b.source.as_str().into(),
            detail,
        });
    }
    // Oldest first; at the same minute, arrival before the issues before the reports.
    events.sort_by_key(|e| e.sort);
    let optional = |t: Option<DateTime<Utc>>| t.map(when).unwrap_or_else(|| "—".into());
    let settings = match state.app.reader_settings(id).await {
        Ok(x) => x,
        Err(e) => return console.ops_error(&state, e, back),
    };
    let now = Utc::now();
    let dash = || "—".to_string();
    let view = ReaderView {
        paused: match settings.state.paused_until {
            Some(until) if until > now && s.status == SubscriberStatus::Confirmed => {
                format!("until {}", when(until))
            }
            _ => dash(),
        },
        pending: match settings.state.last_signup_at {
            Some(at) if s.status == SubscriberStatus::Pending => {
                format!("for {}", super::lists::age(now - at))
            }
            _ => dash(),
        },
        categories: if settings.categories.is_empty() {
            "everything".into()
        } else {
            settings.categories.join(", ")
        },
        new_address: settings
            .pending_email
            .map(|e| format!("{e}, not confirmed yet"))
            .unwrap_or_else(dash),
        asked: settings
            .repermission_deadline
            .map(|d| format!("still want it? unanswered; lapses {}", when(d)))
            .unwrap_or_else(dash),
        email: s.email,
        name: s.name.unwrap_or_else(|| "—".into()),
        status: s.status.as_str(),
        source: s.source,
        created_at: when(s.created_at),
        confirmed_at: optional(s.confirmed_at),
        unsubscribed_at: optional(s.unsubscribed_at),
    };
    let mut ctx = console.context(&state, "/admin/subscribers");
    ctx.insert("reader", &view);
    ctx.insert("events", &events);
    console.render(&state, StatusCode::OK, "console/reader.html", &ctx)
}
