//! Typed requests and responses, and a small router.

use std::collections::HashMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__private::exports::linli::plugin::http as wit;
use crate::__private::linli::plugin::types::Header;
use crate::Error;

/// A request handed to the plugin by the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Upper-case method, e.g. `GET`.
    pub method: String,
    /// The path after `/t/{tenant}/p/{plugin}`, always starting with `/`.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// Headers, names lower-case. Credentials (`authorization`, `cookie`) never reach a plugin.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// A request, for tests of handlers and routers.
    pub fn new(method: &str, path: &str) -> Self {
        Request {
            method: method.to_ascii_uppercase(),
            path: path.into(),
            query: String::new(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Replace the body (for tests).
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Replace the query string (for tests).
    pub fn with_query(mut self, query: &str) -> Self {
        self.query = query.into();
        self
    }

    #[doc(hidden)]
    pub fn from_wit(r: wit::Request) -> Self {
        Request {
            method: r.method,
            path: r.path,
            query: r.query,
            headers: r.headers.into_iter().map(|h| (h.name, h.value)).collect(),
            body: r.body,
        }
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the web shell asked for a page (`Accept: application/vnd.linli.page+json`).
    pub fn wants_page(&self) -> bool {
        self.header("accept")
            .is_some_and(|a| a.contains(crate::ui::MEDIA_TYPE))
    }

    /// The reader's language as the shell says it (`Accept-Language`): `"en"` or `"zh"`.
    pub fn language(&self) -> &'static str {
        match self.header("accept-language") {
            Some(l) if l.trim_start().starts_with("en") => "en",
            _ => "zh",
        }
    }

    /// The first query parameter named `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == name).then(|| percent_decode(v))
        })
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.body)
            .map_err(|_| Error::Invalid("请求体不是 UTF-8 / body is not UTF-8".into()))
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| Error::Json(e.to_string()))
    }

    /// The body checked as a submission of `form`, or the 422 answer listing every broken
    /// rule (`Response::form_errors`) to return as is.
    pub fn check_form(&self, form: &crate::ui::Form) -> Result<crate::ui::Submission, Response> {
        form.check(&self.body)
            .map_err(|errors| Response::form_errors(&errors))
    }
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push((hi << 4) | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A response to the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// 422 with `{"error": {"code": "invalid", "message", "fields"}}`: what the shell shows
    /// next to each field of a form that did not pass its rules.
    pub fn form_errors(errors: &[crate::ui::FieldError]) -> Self {
        let message = errors
            .iter()
            .map(|e| format!("{} / {}", e.message.zh(), e.message.en()))
            .collect::<Vec<_>>()
            .join("; ");
        Response::json(
            422,
            &serde_json::json!({"error": {"code": "invalid", "message": message, "fields": errors}}),
        )
    }

    /// An empty response with `status`.
    pub fn status(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `value` as JSON.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Response {
                status,
                headers: vec![(
                    "content-type".into(),
                    "application/json; charset=utf-8".into(),
                )],
                body,
            },
            Err(e) => Response::error(&Error::Json(e.to_string())),
        }
    }

    /// A page for the web shell (see [`crate::ui`]). The host checks it before any browser
    /// sees it; a page it refuses becomes a `502 invalid_page`.
    pub fn page(page: &crate::ui::Page) -> Self {
        match serde_json::to_vec(page) {
            Ok(body) => Response {
                status: 200,
                headers: vec![(
                    "content-type".into(),
                    format!("{}; version={}", crate::ui::MEDIA_TYPE, crate::ui::VERSION),
                )],
                body,
            },
            Err(e) => Response::error(&Error::Json(e.to_string())),
        }
    }

    /// Plain UTF-8 text.
    pub fn text(status: u16, text: &str) -> Self {
        Response {
            status,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: text.as_bytes().to_vec(),
        }
    }

    /// An error as `{"error": {"code", "message"}}` with its status.
    pub fn error(e: &Error) -> Self {
        let body = serde_json::json!({ "error": { "code": e.code(), "message": e.to_string() } });
        let mut r = Response::json(e.status(), &body);
        r.status = e.status();
        r
    }

    /// Add a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// Whether this is a page (see [`Response::page`]).
    pub fn is_page(&self) -> bool {
        self.headers
            .iter()
            .any(|(n, v)| n == "content-type" && v.starts_with(crate::ui::MEDIA_TYPE))
    }

    /// The body as UTF-8 text (lossy), for tests.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    #[doc(hidden)]
    pub fn into_wit(self) -> wit::Response {
        wit::Response {
            status: self.status,
            headers: self
                .headers
                .into_iter()
                .map(|(name, value)| Header { name, value })
                .collect(),
            body: self.body,
        }
    }
}

/// Path parameters captured by a route pattern (`/topics/{id}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(HashMap<String, String>);

impl Params {
    /// A captured parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// What a route runs: the request and its path parameters in, a response or an error out.
pub type Handler = Box<dyn Fn(&Request, &Params) -> Result<Response, Error>>;

/// Routes requests by method and path pattern. Segments in braces capture (`/notes/{id}`);
/// a final `{*rest}` captures the rest of the path. Unmatched paths answer 404, matched paths
/// with another method 405, and a handler's `Err` becomes a JSON error response.
#[derive(Default)]
pub struct Router {
    routes: Vec<(String, Vec<Segment>, Handler)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    Rest(String),
}

fn parse_pattern(pattern: &str) -> Vec<Segment> {
    pattern
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            if let Some(name) = s.strip_prefix("{*").and_then(|s| s.strip_suffix('}')) {
                Segment::Rest(name.into())
            } else if let Some(name) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Segment::Param(name.into())
            } else {
                Segment::Literal(s.into())
            }
        })
        .collect()
}

fn match_path(pattern: &[Segment], path: &str) -> Option<Params> {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut params = HashMap::new();
    for (i, seg) in pattern.iter().enumerate() {
        match seg {
            Segment::Rest(name) => {
                params.insert(name.clone(), parts.get(i..).unwrap_or(&[]).join("/"));
                return Some(Params(params));
            }
            Segment::Literal(l) => {
                if parts.get(i) != Some(&l.as_str()) {
                    return None;
                }
            }
            Segment::Param(name) => {
                params.insert(name.clone(), percent_decode(parts.get(i)?));
            }
        }
    }
    (parts.len() == pattern.len()).then_some(Params(params))
}

impl Router {
    pub fn new() -> Self {
        Router::default()
    }

    /// Add a route for `method` (upper-case) and `pattern`.
    pub fn route(
        mut self,
        method: &str,
        pattern: &str,
        handler: impl Fn(&Request, &Params) -> Result<Response, Error> + 'static,
    ) -> Self {
        self.routes.push((
            method.to_ascii_uppercase(),
            parse_pattern(pattern),
            Box::new(handler),
        ));
        self
    }

    pub fn get(
        self,
        pattern: &str,
        h: impl Fn(&Request, &Params) -> Result<Response, Error> + 'static,
    ) -> Self {
        self.route("GET", pattern, h)
    }

    pub fn post(
        self,
        pattern: &str,
        h: impl Fn(&Request, &Params) -> Result<Response, Error> + 'static,
    ) -> Self {
        self.route("POST", pattern, h)
    }

    pub fn put(
        self,
        pattern: &str,
        h: impl Fn(&Request, &Params) -> Result<Response, Error> + 'static,
    ) -> Self {
        self.route("PUT", pattern, h)
    }

    pub fn delete(
        self,
        pattern: &str,
        h: impl Fn(&Request, &Params) -> Result<Response, Error> + 'static,
    ) -> Self {
        self.route("DELETE", pattern, h)
    }

    /// Dispatch `request` to the first matching route.
    pub fn handle(&self, request: Request) -> Response {
        let mut path_matched = false;
        for (method, pattern, handler) in &self.routes {
            let Some(params) = match_path(pattern, &request.path) else {
                continue;
            };
            path_matched = true;
            if *method == request.method || (request.method == "HEAD" && method == "GET") {
                return handler(&request, &params).unwrap_or_else(|e| Response::error(&e));
            }
        }
        if path_matched {
            Response::error(&Error::Http(
                405,
                "不支持此方法 / method not allowed".into(),
            ))
        } else {
            Response::error(&Error::NotFound(format!(
                "没有这个页面 / no such page: {}",
                request.path
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        Router::new()
            .get("/", |_, _| Ok(Response::text(200, "home")))
            .get("/notes/{id}", |_, p| {
                Ok(Response::text(200, p.get("id").unwrap_or("?")))
            })
            .post("/notes", |r, _| {
                let v: serde_json::Value = r.json()?;
                Ok(Response::json(201, &v))
            })
            .get("/files/{*rest}", |_, p| {
                Ok(Response::text(200, p.get("rest").unwrap_or("")))
            })
            .get("/fail", |_, _| Err(Error::Denied("no".into())))
    }

    #[test]
    fn routes_by_method_and_pattern() {
        let r = router();
        assert_eq!(r.handle(Request::new("GET", "/")).body_text(), "home");
        assert_eq!(r.handle(Request::new("GET", "/notes/42")).body_text(), "42");
        assert_eq!(
            r.handle(Request::new("GET", "/notes/%E4%BD%A0"))
                .body_text(),
            "你"
        );
        assert_eq!(
            r.handle(Request::new("GET", "/files/a/b/c")).body_text(),
            "a/b/c"
        );
        assert_eq!(r.handle(Request::new("GET", "/nope")).status, 404);
        assert_eq!(r.handle(Request::new("DELETE", "/notes/1")).status, 405);
        assert_eq!(r.handle(Request::new("GET", "/notes/1/extra")).status, 404);
    }

    #[test]
    fn errors_become_json_responses() {
        let r = router();
        let denied = r.handle(Request::new("GET", "/fail"));
        assert_eq!(denied.status, 403);
        assert!(denied.body_text().contains("\"code\":\"denied\""));
        let bad = r.handle(Request::new("POST", "/notes").with_body("{not json"));
        assert_eq!(bad.status, 400);
        assert!(bad.body_text().contains("invalid_json"));
        let ok = r.handle(Request::new("POST", "/notes").with_body(r#"{"a":1}"#));
        assert_eq!(ok.status, 201);
    }

    #[test]
    fn query_params_decode() {
        let r = Request::new("GET", "/").with_query("name=%E5%BC%A0%E4%B8%89&x=a+b&flag&bad=%zz");
        assert_eq!(r.query_param("name").as_deref(), Some("张三"));
        assert_eq!(r.query_param("x").as_deref(), Some("a b"));
        assert_eq!(r.query_param("flag").as_deref(), Some(""));
        assert_eq!(r.query_param("bad").as_deref(), Some("%zz"));
        assert_eq!(r.query_param("missing"), None);
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%\u{4f60}"), "%\u{4f60}");
    }
}
