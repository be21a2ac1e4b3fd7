//! Clues → (subscriber, issue). Tried from the strongest to the weakest:
//!
//! 1. **VERP**: the report was addressed to (or quotes) `bounces+TOKEN@…`; the token is signed,
//!    so it names the (issue, subscriber) for certain.
//! 2. **Message-ID** of the original, `issue-N.sub-S@our-domain` (stable per issue and
//!    subscriber), accepted only when issue N was in fact sent to subscriber S.
//! 3. **List-Unsubscribe** of the original: the signed unsubscribe token names the subscriber
//!    (complaint reports redact the recipient but usually keep this header).
//! 4. **Recipient** address the report names, looked up among subscribers.
//!
//! For 3 and 4 the issue comes from the original's Feedback-ID or Message-ID, when present.
//!
//! A report addressed to (or quoting) one of our VERP addresses whose tag does **not** verify is
//! forged or mangled: it is attributed to nobody, whatever its other clues say.

use super::MatchedBy;
use super::parse::Clues;
use super::verp;
use crate::config::{MailSettings, NewsletterSettings, SecretKey};
use crate::store::Store;
use crate::subscribers::SubscriberEmail;
use crate::subscribers::tokens::verify_unsubscribe_token;

/// Whose report it is, as far as the clues tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resolved {
    pub subscriber_id: Option<i64>,
    pub issue_id: Option<i64>,
    pub matched_by: Option<MatchedBy>,
}

/// `issue-12.sub-345@shiporskip.example` → (12, 345) when the domain is ours.
fn message_id_parts(id: &str, our_domain: &str) -> Option<(i64, i64)> {
    let (local, domain) = id.rsplit_once('@')?;
    if !domain.eq_ignore_ascii_case(our_domain) {
        return None;
    }
    let rest = local.strip_prefix("issue-")?;
    let (number, sub) = rest.split_once(".sub-")?;
    Some((number.parse().ok()?, sub.parse().ok()?))
}

/// `12:weekly.example.org:newsletter:example.org` → 12 when the list is ours.
fn feedback_id_number(value: &str, list_id: &str) -> Option<i64> {
    let mut parts = value.split(':');
    let number = parts.next()?.parse().ok()?;
    (parts.next()? == list_id).then_some(number)
}

/// `…/unsubscribe/TOKEN` → the subscriber the signed token names.
fn unsubscribe_subscriber(url: &str, secret: &SecretKey) -> Option<i64> {
    let (_, token) = url.rsplit_once("/unsubscribe/")?;
    let token = token.split(['?', '#', '/']).next()?;
    verify_unsubscribe_token(secret, token)
}

/// Finds the subscriber and issue of a report.
pub async fn resolve(
    store: &Store,
    mail: &MailSettings,
    newsletter: &NewsletterSettings,
    secret: &SecretKey,
    clues: &Clues,
) -> anyhow::Result<Resolved> {
    let our_domain = crate::mail::our_domain(mail);
    if let Some(rp) = &mail.return_path {
        let mut forged = false;
        for a in &clues.envelope {
            if verp::looks_like_ours(rp, a) && verp::parse(rp, secret, a).is_none() {
                forged = true;
            }
            if let Some(t) = verp::parse(rp, secret, a)
                && store.get_subscriber(t.subscriber_id).await?.is_some()
            {
                let issue = store.get_issue(t.issue_id).await?.map(|i| i.id);
                return Ok(Resolved {
                    subscriber_id: Some(t.subscriber_id),
                    issue_id: issue,
                    matched_by: Some(MatchedBy::Verp),
                });
            }
        }
        if forged {
            tracing::warn!(envelope = ?clues.envelope, "a report with a VERP address that does not verify: not attributed");
            return Ok(Resolved::default());
        }
    }
    // The issue the original belonged to, from its Message-ID or Feedback-ID.
    let mut issue_number = None;
    for id in &clues.message_ids {
        if let Some((number, sid)) = message_id_parts(id, &our_domain) {
            issue_number.get_or_insert(number);
            if let Some(issue) = store.get_issue_by_number(number).await?
                && store.was_sent(issue.id, sid).await?
            {
                return Ok(Resolved {
                    subscriber_id: Some(sid),
                    issue_id: Some(issue.id),
                    matched_by: Some(MatchedBy::MessageId),
                });
            }
        }
    }
    for f in &clues.feedback_ids {
        if let Some(n) = feedback_id_number(f, &newsletter.list_id.0) {
            issue_number.get_or_insert(n);
        }
    }
    let issue_id = match issue_number {
        Some(n) => store.get_issue_by_number(n).await?.map(|i| i.id),
        None => None,
    };
    for url in &clues.unsubscribe_urls {
        if let Some(sid) = unsubscribe_subscriber(url, secret)
            && store.get_subscriber(sid).await?.is_some()
        {
            return Ok(Resolved {
                subscriber_id: Some(sid),
                issue_id,
                matched_by: Some(MatchedBy::ListUnsubscribe),
            });
        }
    }
    for r in &clues.recipients {
        let Ok(email) = SubscriberEmail::parse(r) else {
            continue;
        };
        if let Some(s) = store.get_subscriber_by_email(&email).await? {
            return Ok(Resolved {
                subscriber_id: Some(s.id),
                issue_id,
                matched_by: Some(MatchedBy::Recipient),
            });
        }
    }
    Ok(Resolved {
        subscriber_id: None,
        issue_id,
        matched_by: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_and_feedback_ids_read_back() {
        assert_eq!(
            message_id_parts("issue-12.sub-345@shiporskip.example", "shiporskip.example"),
            Some((12, 345))
        );
        assert_eq!(
            message_id_parts("issue-12.sub-345@evil.example", "shiporskip.example"),
            None
        );
        assert_eq!(
            message_id_parts("welcome-3@shiporskip.example", "shiporskip.example"),
            None
        );
        assert_eq!(
            feedback_id_number(
                "7:weekly.example.org:newsletter:example.org",
                "weekly.example.org"
            ),
            Some(7)
        );
        assert_eq!(
            feedback_id_number(
                "7:other.example.org:newsletter:example.org",
                "weekly.example.org"
            ),
            None
        );
    }
}
