//! A reader's own page (`/manage/{token}`, linked from every issue email): pause for 2, 4 or 8
//! weeks (delivery skips them with reason `paused` until then, and they come back by
//! themselves), choose categories (only the comparisons with a tool in one of them; see
//! [`crate::issues::variants`]), download their data as JSON, delete themselves (as
//! `subscribers remove`).
//!
//! The token is the reader's signed manage token ([`crate::subscribers::tokens::manage_token`]):
//! it opens this reader's page only. A bad token, an unknown reader or a bad form value changes
//! nothing and says why.

use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;

use serde_json::json;

use super::super::{Actor, App, OpsError};
use crate::subscribers::tokens::verify_manage_token;
use crate::subscribers::{SubscriberEmail, SubscriberStatus};

/// The pauses a reader may choose, in weeks.
pub const PAUSE_WEEKS: [u32; 3] = [2, 4, 8];

/// The most categories a form may carry (more is not a reader's form).
const MAX_CATEGORIES: usize = 100;

/// What the manage form asked for (`action=…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManageAction {
    /// `action=pause` with `weeks` (2, 4 or 8).
    Pause { weeks: u32 },
    /// `action=resume`: end a pause now.
    Resume,
    /// `action=categories` with one `category` field per choice (none: everything). Checked
    /// against the known categories by [`App::manage`].
    Categories(Vec<String>),
    /// `action=email` with `email`: a change of address, confirmed at the new address first
    /// (see [`super::control`]). The web layer asks the door about its domain first.
    Email(SubscriberEmail),
    /// `action=export`: the reader's data as JSON.
    Export,
    /// `action=delete`: erase the reader (as `subscribers remove`).
    Delete,
}

impl ManageAction {
    /// Reads the posted form fields; an unknown action or a bad `weeks` is the reader's error.
    pub fn parse(fields: &[(String, String)]) -> Result<ManageAction, String> {
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim())
        };
        match field("action") {
            Some("pause") => {
                let weeks = field("weeks").ok_or("weeks: choose 2, 4 or 8 weeks.")?;
                match weeks.parse::<u32>() {
                    Ok(w) if PAUSE_WEEKS.contains(&w) => Ok(ManageAction::Pause { weeks: w }),
                    _ => Err(format!("weeks: {weeks:?} is not 2, 4 or 8.")),
                }
            }
            Some("resume") => Ok(ManageAction::Resume),
            Some("categories") => {
                let mut chosen: Vec<String> = fields
                    .iter()
                    .filter(|(k, _)| k == "category")
                    .map(|(_, v)| v.trim().to_string())
                    .collect();
                if chosen.len() > MAX_CATEGORIES {
                    return Err(format!(
                        "category: at most {MAX_CATEGORIES} choices, not {}.",
                        chosen.len()
                    ));
                }
                if chosen.iter().any(String::is_empty) {
                    return Err("category: an empty choice.".to_string());
                }
                chosen.sort();
                chosen.dedup();
                Ok(ManageAction::Categories(chosen))
            }
            Some("email") => {
                let raw = field("email").unwrap_or_default();
                if raw.is_empty() {
                    return Err("email: give the new address.".to_string());
                }
                SubscriberEmail::parse(raw)
                    .map(ManageAction::Email)
                    .map_err(|e| format!("email: {}", e.0))
            }
            Some("export") => Ok(ManageAction::Export),
            Some("delete") => Ok(ManageAction::Delete),
            Some(other) => Err(format!(
                "action: {other:?} is not something this page does."
            )),
            None => Err("action: missing.".to_string()),
        }
    }
}

/// What the page shows of a reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reader {
    pub id: i64,
    pub email: String,
    pub status: SubscriberStatus,
    /// Paused until then (only when still in the future).
    pub paused_until: Option<DateTime<Utc>>,
    /// The categories they chose, sorted (empty: everything).
    pub categories: Vec<String>,
    /// A new address they gave and have not confirmed yet.
    pub pending_email: Option<String>,
}

/// What an action did.
#[derive(Debug, Clone, PartialEq)]
pub enum ManageOutcome {
    Paused {
        until: DateTime<Utc>,
    },
    Resumed,
    /// The choice now stored (empty: everything).
    Categories(Vec<String>),
    /// The confirmation of a change of address is on its way to `to`.
    EmailChangeSent {
        to: String,
    },
    Export(serde_json::Value),
    Deleted,
}

impl App {
    /// The reader a manage token stands for, or `None` (a forged token, or a reader erased).
    pub async fn manage_reader(&self, token: &str) -> Result<Option<Reader>, OpsError> {
        let Some(id) = verify_manage_token(self.secret(), token) else {
            return Ok(None);
        };
        let Some(row) = self.store().get_subscriber(id).await? else {
            return Ok(None);
        };
        let now = Utc::now();
        let paused_until = self
            .store()
            .paused_until(id)
            .await?
            .filter(|until| *until > now);
        Ok(Some(Reader {
            id,
            email: row.email,
            status: row.status,
            paused_until,
            categories: self.store().subscriber_categories(id).await?,
            pending_email: self.store().open_email_change(id).await?,
        }))
    }

    /// The categories a reader may choose: the tool categories of the comparisons published
    /// so far, sorted. Read at most once a minute per process (every manage page asks, and
    /// reading them parses every comparison); an import through this process forgets them.
    pub async fn known_categories(&self) -> Result<Arc<Vec<String>>, OpsError> {
        const FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(60);
        if let Some((at, known)) = &*self.inner.categories.lock().expect("not poisoned")
            && at.elapsed() < FRESH_FOR
        {
            return Ok(known.clone());
        }
        let now = Utc::now();
        let mut out: Vec<String> = self
            .store()
            .list_comparisons(None)
            .await?
            .into_iter()
            .filter(|s| s.comparison.published_at() <= now)
            .flat_map(|s| {
                s.comparison
                    .tools()
                    .iter()
                    .map(|t| t.category.clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort();
        out.dedup();
        let known = Arc::new(out);
        *self.inner.categories.lock().expect("not poisoned") =
            Some((std::time::Instant::now(), known.clone()));
        Ok(known)
    }

    /// Forgets the categories read last (comparisons were imported).
    pub(crate) fn forget_categories(&self) {
        *self.inner.categories.lock().expect("not poisoned") = None;
    }

    /// Applies `action` for the reader of `token`; `NotFound`-like errors are `Invalid`.
    pub async fn manage(
        &self,
        token: &str,
        action: ManageAction,
    ) -> Result<ManageOutcome, OpsError> {
        let reader = self.manage_reader(token).await?.ok_or(OpsError::Invalid {
            field: None,
            message: "this link is not valid: use the link from one of your emails".into(),
        })?;
        let must_be_confirmed = || {
            if reader.status == SubscriberStatus::Confirmed {
                Ok(())
            } else {
                Err(OpsError::Invalid {
                    field: None,
                    message: format!(
                        "you are {}: there is no delivery to change",
                        reader.status.as_str()
                    ),
                })
            }
        };
        match action {
            ManageAction::Pause { weeks } => {
                must_be_confirmed()?;
                let until = Utc::now() + Duration::weeks(i64::from(weeks));
                self.store()
                    .set_paused_until(reader.id, Some(until))
                    .await?;
                Ok(ManageOutcome::Paused { until })
            }
            ManageAction::Resume => {
                must_be_confirmed()?;
                self.store().set_paused_until(reader.id, None).await?;
                Ok(ManageOutcome::Resumed)
            }
            ManageAction::Categories(chosen) => {
                must_be_confirmed()?;
                let known = self.known_categories().await?;
                if let Some(unknown) = chosen.iter().find(|c| !known.contains(c)) {
                    return Err(OpsError::invalid(
                        "category",
                        format!(
                            "{unknown:?} is not one of the categories ({}).",
                            known.join(", ")
                        ),
                    ));
                }
                self.store()
                    .set_subscriber_categories(reader.id, &chosen)
                    .await?;
                Ok(ManageOutcome::Categories(chosen))
            }
            ManageAction::Email(new) => {
                must_be_confirmed()?;
                self.request_email_change(&reader, &new).await?;
                Ok(ManageOutcome::EmailChangeSent {
                    to: new.as_str().to_string(),
                })
            }
            ManageAction::Export => {
                let row =
                    self.store()
                        .get_subscriber(reader.id)
                        .await?
                        .ok_or(OpsError::Invalid {
                            field: None,
                            message: "this reader no longer exists".into(),
                        })?;
                let (consents, bounces) = self.store().subscriber_history(reader.id).await?;
                Ok(ManageOutcome::Export(json!({
                    "address": row.email,
                    "name": row.name,
                    "status": row.status.as_str(),
                    "signed_up_at": row.created_at.to_rfc3339(),
                    "confirmed_at": row.confirmed_at.map(|t| t.to_rfc3339()),
                    "paused_until": reader.paused_until.map(|t| t.to_rfc3339()),
                    "categories": reader.categories,
                    "consent_events": consents.iter().map(|c| json!({
                        "event": c.event,
                        "at": c.at.to_rfc3339(),
                        "source": c.source,
                        "ip": c.ip,
                        "user_agent": c.user_agent,
                    })).collect::<Vec<_>>(),
                    "bounces": bounces.iter().map(|b| json!({
                        "kind": b.kind,
                        "at": b.at.to_rfc3339(),
                        "status_code": b.status_code,
                        "reason": b.reason,
                    })).collect::<Vec<_>>(),
                })))
            }
            ManageAction::Delete => {
                let email =
                    SubscriberEmail::parse(&reader.email).map_err(|e| OpsError::Invalid {
                        field: None,
                        message: e.0,
                    })?;
                self.remove_subscriber(&Actor::Reader, &email).await?;
                Ok(ManageOutcome::Deleted)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_form_is_read_strictly() {
        for w in ["2", "4", "8"] {
            assert!(ManageAction::parse(&form(&[("action", "pause"), ("weeks", w)])).is_ok());
        }
        for (fields, error) in [
            (form(&[("action", "pause"), ("weeks", "3")]), "weeks:"),
            (form(&[("action", "pause"), ("weeks", "-2")]), "weeks:"),
            (form(&[("action", "pause")]), "weeks:"),
            (form(&[("action", "nuke")]), "action:"),
            (form(&[]), "action:"),
        ] {
            let e = ManageAction::parse(&fields).unwrap_err();
            assert!(e.starts_with(error), "{fields:?}: {e}");
        }
        assert_eq!(
            ManageAction::parse(&form(&[("action", "delete")])),
            Ok(ManageAction::Delete)
        );
        assert_eq!(
            ManageAction::parse(&form(&[
                ("action", "categories"),
                ("category", "Image"),
                ("category", " Chat "),
                ("category", "Image"),
            ])),
            Ok(ManageAction::Categories(vec![
                "Chat".into(),
                "Image".into()
            ]))
        );
        assert_eq!(
            ManageAction::parse(&form(&[("action", "categories")])),
            Ok(ManageAction::Categories(vec![]))
        );
        let e =
            ManageAction::parse(&form(&[("action", "categories"), ("category", " ")])).unwrap_err();
        assert!(e.starts_with("category:"), "{e}");
        for bad in [
            vec![("action", "email")],
            vec![("action", "email"), ("email", "not an address")],
        ] {
            let e = ManageAction::parse(&form(&bad)).unwrap_err();
            assert!(e.starts_with("email:"), "{bad:?}: {e}");
        }
        assert_eq!(
            ManageAction::parse(&form(&[
                ("action", "email"),
                ("email", " New@Example.ORG ")
            ])),
            Ok(ManageAction::Email(
                SubscriberEmail::parse("new@example.org").unwrap()
            ))
        );
    }
}
