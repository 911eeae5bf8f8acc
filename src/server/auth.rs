//! HTTP Basic authentication for every route (`--api-auth user:pass[,user:pass...]`), as
//! A1111's `--api-auth`: 401 with `WWW-Authenticate: Basic` without or with wrong credentials.
//! Passwords are compared in time independent of where they differ. `/healthz` answers without
//! credentials, but then only whether the server is up.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use super::error::ApiError;

/// The `user:password` pairs accepted (empty: no authentication).
pub type Credentials = Arc<Vec<(String, String)>>;

/// `user:pass,user2:pass2` -> pairs; the password is everything after the first `:`.
pub fn parse_credentials(text: &str) -> Result<Vec<(String, String)>, String> {
    text.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| match pair.split_once(':') {
            Some((user, pass)) if !user.is_empty() => Ok((user.to_string(), pass.to_string())),
            _ => Err(format!("--api-auth: `{pair}` is not user:password")),
        })
        .collect()
}

/// A request to `/healthz` without valid credentials on a server that requires them: it is
/// told only whether the server is up.
#[derive(Clone, Copy, Debug)]
pub struct Anonymous;

/// The middleware: passes the request on when no credentials are configured or when its
/// `Authorization: Basic` header (the scheme in any case, RFC 7235) holds one of them;
/// `/healthz` passes without them, marked [`Anonymous`].
pub async fn require(
    State(allowed): State<Credentials>,
    mut request: Request,
    next: Next,
) -> Response {
    if allowed.is_empty() {
        return next.run(request).await;
    }
    match check(&allowed, &request) {
        Ok(()) => next.run(request).await,
        Err(_) if request.uri().path() == "/healthz" => {
            request.extensions_mut().insert(Anonymous);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

/// Whether `request` carries one of the `allowed` credentials.
fn check(allowed: &[(String, String)], request: &Request) -> Result<(), ApiError> {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, b64)| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .and_then(|bytes| String::from_utf8(bytes).ok());
    let Some(given) = given else {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "Not authenticated"));
    };
    let (user, pass) = given.split_once(':').unwrap_or((&given, ""));
    let ok = allowed
        .iter()
        .any(|(u, p)| u == user && constant_time_eq(p.as_bytes(), pass.as_bytes()));
    match ok {
        true => Ok(()),
        false => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Incorrect username or password",
        )),
    }
}

/// Equal bytes, compared without stopping at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials() {
        assert_eq!(
            parse_credentials("a:b,c:d:e").unwrap(),
            vec![("a".into(), "b".into()), ("c".into(), "d:e".into())]
        );
        assert!(parse_credentials("nopass").is_err());
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
