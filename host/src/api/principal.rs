//! Who is calling: `Authorization: Bearer <token>` resolved once per request into a [`Principal`] — the bootstrap admin token is Root, a
//! session token (`lls_…`) is a person. Handlers take [`Authed`] (anyone signed in) or
//! [`SignedIn`] (a person); the gateway takes the optional [`Auth`].

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::identity::auth;
use crate::identity::{Principal, Session};
use crate::platform::{Platform, PlatformError};

/// The principal of this request, if any (inserted by [`authenticate`]).
#[derive(Clone, Debug)]
pub struct Auth(pub Option<Principal>);

/// The token a request carries: `Authorization: Bearer …` only. No cookie is ever taken:
/// a browser sends a cookie on a cross-site request by itself, a bearer header only when a
/// page of this origin's script adds it — so no other site can make a signed-in request.
pub fn token_of(parts: &axum::http::HeaderMap) -> Option<String> {
    parts
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned())
}

fn unauthorized(code: &'static str, message: &str) -> Response {
    let mut e = ApiError::new(StatusCode::UNAUTHORIZED, code, message);
    e.www_authenticate = true;
    e.into_response()
}

/// Resolve the caller. A token that is neither the admin token nor a live session is an
/// error (401), never silently anonymous: a token reused after logout is refused.
pub(super) async fn authenticate(
    State(platform): State<Arc<Platform>>,
    mut req: Request,
    next: Next,
) -> Response {
    let principal = match token_of(req.headers()) {
        None => None,
        // A device's secret: no person; only the device-message route accepts it.
        Some(token) if token.starts_with(crate::storage::devices::SECRET_PREFIX) => None,
        // The broker's auth hook: no person; only the hook routes accept it.
        Some(token)
            if platform
                .config
                .devices
                .broker_hook_token
                .as_deref()
                .is_some_and(|hook| auth::secrets_match(&token, hook)) =>
        {
            None
        }
        Some(token) if token.starts_with("lls_") => match platform.session(&token).await {
            Ok(s) => Some(Principal::Person(s)),
            Err(PlatformError::Unauthenticated(m)) => return unauthorized("session_invalid", &m),
            Err(e) => return ApiError::from(e).into_response(),
        },
        Some(token) => match platform.config.admin_token.as_deref() {
            Some(expected) if auth::secrets_match(&token, expected) => Some(Principal::Root),
            Some(_) => {
                return unauthorized(
                    "unauthorized",
                    "令牌无效 / invalid token: sign in, or use the admin bearer token",
                );
            }
            None => {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    "admin_disabled",
                    "未配置管理令牌，只能用账号登录 / no admin_token is configured: sign in with an account",
                )
                .into_response();
            }
        },
    };
    req.extensions_mut().insert(Auth(principal));
    next.run(req).await
}

fn sign_in_required() -> ApiError {
    let mut e = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "请先登录 / sign in first (Authorization: Bearer <token>)",
    );
    e.www_authenticate = true;
    e
}

/// Anyone signed in: Root (the admin token) or a person.
pub struct Authed(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.extensions.get::<Auth>() {
            Some(Auth(Some(p))) => Ok(Authed(p.clone())),
            _ => Err(sign_in_required()),
        }
    }
}

/// The client's address, for rate limits: the connection's peer, or — when the peer is one
/// of `auth.trusted_proxies` — the last address in `X-Forwarded-For` that is not itself a
/// trusted proxy. `unknown` when the server runs without connection info (in-process tests).
pub struct ClientAddr(pub String);

impl FromRequestParts<Arc<Platform>> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        platform: &Arc<Platform>,
    ) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        let Some(peer) = peer else {
            return Ok(ClientAddr("unknown".into()));
        };
        let trusted = &platform.config.auth.trusted_proxies;
        let mut client = client_of(peer);
        if trusted.contains(&peer) {
            let hops: Vec<&str> = parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .collect();
            // Walk back from the nearest hop: the first address a trusted proxy did not add.
            for hop in hops.iter().rev() {
                match parse_hop(hop) {
                    Some(ip) if trusted.contains(&ip) => continue,
                    Some(ip) => client = client_of(ip),
                    // Not an address (a proxy's own notation): taken as it is, bounded.
                    None => client = hop.chars().take(64).collect(),
                }
                break;
            }
        }
        Ok(ClientAddr(client))
    }
}

/// An `X-Forwarded-For` hop: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:5678`.
fn parse_hop(hop: &str) -> Option<std::net::IpAddr> {
    hop.parse()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

/// The rate limits' name for a client address: an IPv4 address as it is, an IPv6 address by
/// its /64 (one subscriber's network: rotating within it is still one client).
fn client_of(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// A signed-in person (not the admin token).
pub struct SignedIn(pub Arc<Session>);

impl<S: Send + Sync> FromRequestParts<S> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.extensions.get::<Auth>() {
            Some(Auth(Some(Principal::Person(s)))) => Ok(SignedIn(s.clone())),
            Some(Auth(Some(_))) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "person_required",
                "此操作须以个人账号登录 / this needs a personal account, not the admin token",
            )),
            _ => Err(sign_in_required()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_by_address_and_ipv6_network() {
        assert_eq!(client_of("10.0.0.1".parse().unwrap()), "10.0.0.1");
        assert_eq!(
            client_of("2001:db8:1:2:aaaa::1".parse().unwrap()),
            client_of("2001:db8:1:2:bbbb::9".parse().unwrap())
        );
        assert_eq!(client_of("::ffff:10.0.0.1".parse().unwrap()), "10.0.0.1");
        assert_eq!(parse_hop("1.2.3.4:80"), "1.2.3.4".parse().ok());
        assert_eq!(parse_hop("[2001:db8::1]:443"), "2001:db8::1".parse().ok());
        assert_eq!(parse_hop("unknown"), None);
    }
}
