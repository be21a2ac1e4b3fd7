//! Operator accounts and console sessions: who may manage operators, how a login is checked,
//! and what a session is. Passwords are Argon2id ([`crate::operators`]); a session lives in the
//! database as the hash of a random token, so logging out, a new password or removing the
//! operator ends it at once, in every process. Failed logins are throttled ([`throttle`]).

pub mod throttle;

use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{Activity, Actor, App, OpsError};
use crate::operators::{OperatorEmail, Password, Role, dummy_hash, hash_password, verify_password};
use crate::store::operators::OperatorRow;

/// How long a console session lasts after its last use: each use extends it (sliding
/// expiry, written at most once per [`SESSION_RENEW_STEP`]).
pub const SESSION_TTL: Duration = Duration::hours(12);
/// How long a console session lasts at most, however busy: then its operator signs in again.
/// The session cookie lives this long too; the server-side expiry is what ends it earlier.
pub const SESSION_MAX_AGE: Duration = Duration::days(7);
/// A session's server-side expiry is moved only when that gains at least this much, so a busy
/// console (progress polls every few seconds) writes it about once a minute, not per request.
pub const SESSION_RENEW_STEP: Duration = Duration::minutes(1);

/// The new expiry of a session created at `created_at`, expiring at `expires_at`, used at
/// `now`: `now` + [`SESSION_TTL`], within [`SESSION_MAX_AGE`] of its creation; `None` when
/// that is less than [`SESSION_RENEW_STEP`] later than it is (nothing to write).
pub fn renewed_expiry(
    now: DateTime<Utc>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let target = (now + SESSION_TTL).min(created_at + SESSION_MAX_AGE);
    (target - expires_at >= SESSION_RENEW_STEP).then_some(target)
}

/// A signed-in operator, as a request of the console sees them.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub operator_id: i64,
    pub email: String,
    pub role: Role,
    /// The session's token for every state-changing form.
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

impl SignedIn {
    /// Who acts, for the operator log.
    pub fn actor(&self) -> Actor {
        Actor::Operator(self.email.clone())
    }
}

/// A session just opened: the raw token goes into the cookie and nowhere else.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token: String,
    pub signed_in: SignedIn,
}

/// What a login attempt did.
#[derive(Debug)]
pub enum LoginOutcome {
    /// The address and password match: a new session.
    SignedIn(NewSession),
    /// Wrong address or password (the caller says so without saying which).
    Refused,
    /// Too many failed logins for this address or from this client: try again after this.
    Throttled { retry_after: std::time::Duration },
}

/// 32 random bytes, URL-safe base64: session and CSRF tokens.
pub fn random_token() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What the database keeps of a session token.
fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Runs CPU-bound password hashing off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, OpsError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| OpsError::Internal(anyhow::anyhow!("password hashing task: {e}")))
}

impl App {
    /// Managing operators is for the command line on the server and for owners.
    async fn may_manage_operators(&self, actor: &Actor) -> Result<(), OpsError> {
        match actor {
            Actor::Cli => Ok(()),
            Actor::Operator(email) => match self.store().get_operator_by_email(email).await? {
                Some(op) if op.role == Role::Owner => Ok(()),
                _ => Err(OpsError::Forbidden(
                    "only an owner can manage operators".into(),
                )),
            },
            Actor::Api | Actor::Scheduler | Actor::System | Actor::Reader => {
                Err(OpsError::Forbidden(
                    "operators are managed from the command line or by an owner".into(),
                ))
            }
        }
    }

    /// Adds an operator with an Argon2id hash of `password`. Without a role, the first
    /// operator is an owner and later ones are editors.
    pub async fn add_operator(
        &self,
        actor: &Actor,
        email: &OperatorEmail,
        role: Option<Role>,
        password: &Password,
    ) -> Result<OperatorRow, OpsError> {
        self.may_manage_operators(actor).await?;
        let role = match role {
            Some(role) => role,
            None if self.store().list_operators().await?.is_empty() => Role::Owner,
            None => Role::Editor,
        };
        let password = password.clone();
        let hash = blocking(move || hash_password(&password)).await??;
        let row = self
            .store()
            .insert_operator(email, role, &hash)
            .await?
            .ok_or_else(|| OpsError::invalid("email", format!("{email} is an operator already")))?;
        self.log(
            actor,
            Activity::OperatorAdd,
            None,
            &format!("{email} ({role})"),
        )
        .await?;
        Ok(row)
    }

    /// Every operator.
    pub async fn list_operators(&self, actor: &Actor) -> Result<Vec<OperatorRow>, OpsError> {
        self.may_manage_operators(actor).await?;
        Ok(self.store().list_operators().await?)
    }

    /// Removes an operator and ends their sessions. The last owner cannot be removed.
    pub async fn remove_operator(
        &self,
        actor: &Actor,
        email: &OperatorEmail,
    ) -> Result<(), OpsError> {
        self.may_manage_operators(actor).await?;
        match self.store().delete_operator(email.as_str()).await? {
            None => Err(OpsError::invalid(
                "email",
                format!("{email} is not an operator"),
            )),
            Some(false) => Err(OpsError::invalid(
                "email",
                format!("{email} is the last owner: add another owner first"),
            )),
            Some(true) => {
                self.log(actor, Activity::OperatorRemove, None, email.as_str())
                    .await?;
                Ok(())
            }
        }
    }

    /// Sets a new password and ends every session of that operator.
    pub async fn set_operator_password(
        &self,
        actor: &Actor,
        email: &OperatorEmail,
        password: &Password,
    ) -> Result<(), OpsError> {
        self.may_manage_operators(actor).await?;
        let password = password.clone();
        let hash = blocking(move || hash_password(&password)).await??;
        if !self
            .store()
            .set_operator_password(email.as_str(), &hash)
            .await?
        {
            return Err(OpsError::invalid(
                "email",
                format!("{email} is not an operator"),
            ));
        }
        self.log(actor, Activity::OperatorPasswd, None, email.as_str())
            .await?;
        Ok(())
    }

    /// Checks an address and password from `client`; opens a session when they match. An
    /// unknown address costs one Argon2 verification too, so timing does not tell which
    /// addresses exist. Failed logins are throttled per address and per client, across every
    /// process ([`throttle`]); successful ones never count.
    pub async fn log_in(
        &self,
        email: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<LoginOutcome, OpsError> {
        let now_ms = || chrono::Utc::now().timestamp_millis();
        let attempt = match throttle::reserve(self.store(), email, client, now_ms()).await? {
            Ok(attempt) => attempt,
            Err(retry_after) => return Ok(LoginOutcome::Throttled { retry_after }),
        };
        let result = self.check_login(email, password).await;
        let failed = matches!(result, Ok(None));
        throttle::finish(self.store(), attempt, failed, now_ms()).await?;
        Ok(match result? {
            Some(session) => LoginOutcome::SignedIn(session),
            None => LoginOutcome::Refused,
        })
    }

    /// The password check of [`App::log_in`] and the new session; `Ok(None)`: wrong address
    /// or password.
    async fn check_login(
        &self,
        email: &str,
        password: &str,
    ) -> Result<Option<NewSession>, OpsError> {
        let operator = match OperatorEmail::parse(email) {
            Ok(email) => self.store().get_operator_by_email(email.as_str()).await?,
            Err(_) => None,
        };
        let hash = operator
            .as_ref()
            .map_or_else(|| dummy_hash().to_string(), |o| o.password_hash.clone());
        let candidate = password.to_string();
        let matches = blocking(move || verify_password(&hash, &candidate)).await?;
        let Some(operator) = operator.filter(|_| matches) else {
            return Ok(None);
        };
        let token = random_token();
        let csrf_token = random_token();
        let expires_at = Utc::now() + SESSION_TTL;
        self.store()
            .insert_session(&token_hash(&token), operator.id, &csrf_token, expires_at)
            .await?;
        let signed_in = SignedIn {
            operator_id: operator.id,
            email: operator.email,
            role: operator.role,
            csrf_token,
            expires_at,
        };
        self.log(&signed_in.actor(), Activity::OperatorLogin, None, "")
            .await?;
        Ok(Some(NewSession { token, signed_in }))
    }

    /// The operator a session token belongs to, while the session lives; using it extends it
    /// ([`renewed_expiry`]).
    pub async fn session(&self, token: &str) -> Result<Option<SignedIn>, OpsError> {
        let now = Utc::now();
        let hash = token_hash(token);
        let Some(s) = self.store().live_session(&hash, now).await? else {
            return Ok(None);
        };
        let mut expires_at = s.expires_at;
        if let Some(renewed) = renewed_expiry(now, s.created_at, s.expires_at)
            && self.store().extend_session(&hash, renewed).await?
        {
            expires_at = renewed;
        }
        Ok(Some(SignedIn {
            operator_id: s.operator.id,
            email: s.operator.email,
            role: s.operator.role,
            csrf_token: s.csrf_token,
            expires_at,
        }))
    }

    /// Ends the session of `token` (the cookie is dead from now on, whoever holds it).
    pub async fn log_out(&self, who: &SignedIn, token: &str) -> Result<(), OpsError> {
        if self.store().delete_session(&token_hash(token)).await? {
            self.log(&who.actor(), Activity::OperatorLogout, None, "")
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn sessions_slide_at_most_once_a_minute_and_within_their_maximum_age() {
        let login = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap();
        let at_login = login + SESSION_TTL;
        // Used right after login, or 59 s later: nothing to write.
        assert_eq!(renewed_expiry(login, login, at_login), None);
        let t = login + Duration::seconds(59);
        assert_eq!(renewed_expiry(t, login, at_login), None);
        // A minute later: extended to a full TTL from now.
        let t = login + Duration::minutes(1);
        assert_eq!(renewed_expiry(t, login, at_login), Some(t + SESSION_TTL));
        // Eleven hours idle, then used: a full TTL again.
        let t = login + Duration::hours(11);
        assert_eq!(renewed_expiry(t, login, at_login), Some(t + SESSION_TTL));
        // Never beyond the maximum age, and nothing to write once there.
        let cap = login + SESSION_MAX_AGE;
        let t = cap - Duration::hours(1);
        assert_eq!(
            renewed_expiry(t, login, t + Duration::minutes(5)),
            Some(cap)
        );
        assert_eq!(renewed_expiry(t, login, cap), None);
    }
}
