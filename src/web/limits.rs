//! Per-client rate limits (governor, keyed by [`ClientAddr`]) on every route a stranger can hit
//! in bulk: `POST /subscribe` (`signup.rate_limit_per_minute`), and `/confirm`, `/unsubscribe`
//! and `/api` (`http.rate_limit_per_minute`, one bucket each). A refused request gets 429 with
//! `Retry-After`, as JSON for API and JSON callers and as a page for browsers.
//!
//! Vote links are signed per reader, so they are counted per reader, not per address: a
//! genuine link spends its reader's own quota ([`RateLimits::check_reader`]), and only a link
//! that is not genuine spends the client's [`Bucket::Links`] quota. Readers behind one office
//! or carrier address then do not share one quota for a ten-comparison issue, and a stranger
//! guessing tokens is still slowed down.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::json;

use super::AppState;
use super::client::ClientAddr;

type Limiter = Arc<DefaultKeyedRateLimiter<IpAddr>>;
type ReaderLimiter = Arc<DefaultKeyedRateLimiter<i64>>;

/// Which routes a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// `POST /subscribe`.
    Signup,
    /// `/confirm/…`, `/unsubscribe/…`, `/manage/…`, and vote links that are not genuine.
    Links,
    /// `/api/…`.
    Api,
}

/// The limiters of one process, built once from settings; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RateLimits {
    signup: Option<Limiter>,
    links: Option<Limiter>,
    api: Option<Limiter>,
    /// Genuine vote links, keyed by the subscriber their token names.
    readers: Option<ReaderLimiter>,
}

fn per_minute<K: Clone + Eq + std::hash::Hash>(n: u32) -> Option<Arc<DefaultKeyedRateLimiter<K>>> {
    NonZeroU32::new(n).map(|n| Arc::new(RateLimiter::keyed(Quota::per_minute(n))))
}

/// `Err(seconds to wait)`, rounded up: "Retry-After: 0" would invite an immediate retry that
/// fails again.
fn wait_seconds(not_until: governor::NotUntil<<DefaultClock as Clock>::Instant>) -> u64 {
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

impl RateLimits {
    /// `signup.rate_limit_per_minute` for the signup form, `http.rate_limit_per_minute` for
    /// the token pages and the API (0: no limit).
    pub fn new(signup_per_minute: u32, http_per_minute: u32) -> RateLimits {
        RateLimits {
            signup: per_minute(signup_per_minute),
            links: per_minute(http_per_minute),
            api: per_minute(http_per_minute),
            readers: per_minute(http_per_minute),
        }
    }

    fn of(&self, bucket: Bucket) -> Option<&Limiter> {
        match bucket {
            Bucket::Signup => self.signup.as_ref(),
            Bucket::Links => self.links.as_ref(),
            Bucket::Api => self.api.as_ref(),
        }
    }

    /// `Err(seconds to wait)` when `client` is over its quota in `bucket`.
    pub fn check(&self, bucket: Bucket, client: IpAddr) -> Result<(), u64> {
        let Some(limiter) = self.of(bucket) else {
            return Ok(());
        };
        limiter.check_key(&network_of(client)).map_err(wait_seconds)
    }

    /// `Err(seconds to wait)` when the reader `subscriber_id` (named by a genuine, signed vote
    /// link) is over `http.rate_limit_per_minute`, whatever address they come from.
    pub fn check_reader(&self, subscriber_id: i64) -> Result<(), u64> {
        let Some(limiter) = self.readers.as_ref() else {
            return Ok(());
        };
        limiter.check_key(&subscriber_id).map_err(wait_seconds)
    }

    /// Forgets clients that are back to a full quota, so memory does not grow with every
    /// address ever seen.
    pub fn retain_recent(&self) {
        for limiter in [&self.signup, &self.links, &self.api].into_iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(readers) = &self.readers {
            readers.retain_recent();
            readers.shrink_to_fit();
        }
    }
}

/// What one client is, for counting: an IPv4 address, or an IPv6 /64 — one host or home
/// network gets a whole /64 and could otherwise rotate through its addresses.
pub(crate) fn network_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
            }
        },
    }
}

const TOO_MANY: &str =
    "Too many requests from your network just now. Please wait a minute and try again.";

fn too_many(state: &AppState, request: &Request, retry_after: u64) -> Response {
    let wants_json = request.uri().path().starts_with("/api/")
        || request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/json"));
    refused(state, wants_json, retry_after)
}

/// The 429 answer: JSON for API and JSON callers, else a page; `Retry-After` either way.
pub(super) fn refused(state: &AppState, wants_json: bool, retry_after: u64) -> Response {
    let mut response = if wants_json {
        (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({ "error": TOO_MANY, "retry_after": retry_after })),
        )
            .into_response()
    } else {
        super::pages::message_page(
            state,
            StatusCode::TOO_MANY_REQUESTS,
            "Slow down, please",
            TOO_MANY,
            None,
        )
        .unwrap_or_else(IntoResponse::into_response)
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
    response
}

/// The middleware: `from_fn_with_state((state, bucket), limits::enforce)` on the routes of
/// `bucket`.
pub async fn enforce(
    State((state, bucket)): State<(AppState, Bucket)>,
    request: Request,
    next: Next,
) -> Response {
    let client = ClientAddr::of(&request, &state);
    match state.rate_limits.check(bucket, client.0) {
        Ok(()) => next.run(request).await,
        Err(retry_after) => {
            tracing::info!(client = %client.0, ?bucket, "rate limited");
            too_many(&state, &request, retry_after)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_network_is_one_client() {
        let limits = RateLimits::new(0, 2);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::7".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limits.check(Bucket::Api, a).is_ok());
        assert!(limits.check(Bucket::Api, b).is_ok());
        let wait = limits.check(Bucket::Api, a).unwrap_err();
        assert!((1..=30).contains(&wait), "Retry-After {wait}");
        assert!(limits.check(Bucket::Api, other).is_ok(), "another /64");
        assert!(limits.check(Bucket::Links, a).is_ok(), "another bucket");
        let v4: IpAddr = "203.0.113.9".parse().unwrap();
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        assert_eq!(network_of(mapped), v4);
        assert_ne!(network_of("203.0.113.10".parse().unwrap()), network_of(v4));
    }
}
