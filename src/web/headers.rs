//! Security headers, as tower-http layers over the whole router rather than per handler.
//!
//! Every response: a `Content-Security-Policy` that allows only our own inline styles, images
//! and forms posting back here, and no framing (`frame-ancestors 'none'`, plus the older
//! `X-Frame-Options`); `X-Content-Type-Options: nosniff`; `Referrer-Policy: same-origin`.
//! Pages whose URL carries a token (`/confirm/…`, `/unsubscribe/…`) also get
//! `Cache-Control: no-store` and `Referrer-Policy: no-referrer` ([`token_pages`]), so neither
//! a shared cache nor the next site visited learns the token.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::config::HttpUrl;

/// The policy for `public_url`: forms may post to it (and to the origin serving the page).
pub fn content_security_policy(public_url: &HttpUrl) -> String {
    let origin = url::Url::parse(public_url.as_str())
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default();
    format!(
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https: data:; \
         form-action 'self' {origin}; base-uri 'none'; frame-ancestors 'none'"
    )
}

fn value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("a fixed header value")
}

/// Adds the headers every response carries, unless a route set its own.
pub fn every_response<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    public_url: &HttpUrl,
) -> Router<S> {
    let set = |name: HeaderName, v: HeaderValue| SetResponseHeaderLayer::if_not_present(name, v);
    router
        .layer(set(
            header::CONTENT_SECURITY_POLICY,
            value(&content_security_policy(public_url)),
        ))
        .layer(set(header::X_CONTENT_TYPE_OPTIONS, value("nosniff")))
        .layer(set(header::X_FRAME_OPTIONS, value("DENY")))
        .layer(set(header::REFERRER_POLICY, value("same-origin")))
}

/// Adds what pages with a token in their URL need on top: never stored, never referred.
pub fn token_pages<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            value("no-store"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            value("no-referrer"),
        ))
}
