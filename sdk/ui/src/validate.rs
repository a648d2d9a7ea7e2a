//! The host's check of a page: every limit is named here.

use crate::{Block, Field, FieldKind, Page, Text, VERSION};

/// How large a page may be. The defaults are what the host enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of JSON.
    pub max_bytes: usize,
    /// Blocks inside blocks (cards, tabs): a top-level block is depth 1.
    pub max_depth: usize,
    /// Blocks in the whole page, nested ones included.
    pub max_blocks: usize,
    /// Characters in one text, path or value.
    pub max_text_chars: usize,
    /// Menu entries.
    pub max_nav: usize,
    /// Items in one list, facts block, row of buttons, set of tabs or options.
    pub max_items: usize,
    /// Cells in one table.
    pub max_cells: usize,
    /// Fields in one form.
    pub max_fields: usize,
    /// Characters in a path or URL.
    pub max_path_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 256 * 1024,
            max_depth: 4,
            max_blocks: 1000,
            max_text_chars: 20_000,
            max_nav: 12,
            max_items: 500,
            max_cells: 5000,
            max_fields: 50,
            max_path_chars: 1024,
        }
    }
}

/// Why a page was refused; `at` says where (`body[2].body[0].path`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("page is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("page is not valid JSON for schema version {VERSION}: {0}")]
    Schema(String),
    #[error("page schema version {0} is not supported (this host reads version {VERSION})")]
    Version(u32),
    #[error("{at}: {problem}")]
    Invalid { at: String, problem: String },
}

impl Limits {
    /// Parse and check a page.
    pub fn parse(&self, bytes: &[u8]) -> Result<Page, PageError> {
        if bytes.len() > self.max_bytes {
            return Err(PageError::TooLarge {
                size: bytes.len(),
                limit: self.max_bytes,
            });
        }
        // The version first, so an old or future page gets a clear answer.
        #[derive(serde::Deserialize)]
        struct Version {
            linli_page: Option<u32>,
        }
        match serde_json::from_slice::<Version>(bytes) {
            Ok(Version {
                linli_page: Some(v),
            }) if v != VERSION => return Err(PageError::Version(v)),
            _ => {}
        }
        let page: Page =
            serde_json::from_slice(bytes).map_err(|e| PageError::Schema(e.to_string()))?;
        self.check(&page)?;
        Ok(page)
    }

    /// Check a page already in memory.
    pub fn check(&self, page: &Page) -> Result<(), PageError> {
        if page.linli_page != VERSION {
            return Err(PageError::Version(page.linli_page));
        }
        let mut c = Checker {
            limits: self,
            blocks: 0,
        };
        c.text("title", &page.title)?;
        c.count("nav", page.nav.len(), self.max_nav)?;
        for (i, n) in page.nav.iter().enumerate() {
            let at = format!("nav[{i}]");
            c.text(&format!("{at}.label"), &n.label)?;
            c.path(&format!("{at}.path"), &n.path)?;
        }
        if let Some(n) = &page.notice {
            c.text("notice.text", &n.text)?;
        }
        if let Some(r) = &page.redirect {
            c.path("redirect", r)?;
        }
        c.blocks("body", &page.body, 1)
    }
}

struct Checker<'a> {
    limits: &'a Limits,
    blocks: usize,
}

/// Whether `p` is a path inside a plugin: resolved against the plugin's base
/// (`/t/{tenant}/p/{plugin}`) by any URL parser, it stays under that base. So: `/` and then
/// no second `/` at the start, no backslash, whitespace or control character, no `.` or `..`
/// segment — written plainly or percent-encoded in any case (`.%2e`, `%2E.`) — and, in the
/// path part, no percent-encoded `/`, `\`, `%` or control character, which a server or a
/// later decoding could turn into one of those. The query and fragment may hold anything
/// else of that.
pub fn is_plugin_path(p: &str) -> bool {
    if !p.starts_with('/') || p.starts_with("//") {
        return false;
    }
    if p.chars()
        .any(|c| c == '\\' || c.is_whitespace() || c.is_control())
    {
        return false;
    }
    // In the path part, every `%` starts an escape of two hex digits, and none escapes a
    // separator.
    let path = p.split(['?', '#']).next().unwrap_or("");
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: u8| (b as char).to_digit(16);
            let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return false;
            };
            let decoded = (hi * 16 + lo) as u8;
            // An escaped `.` is judged with its segment below.
            if matches!(decoded, b'/' | b'\\' | b'%') || decoded < 0x20 || decoded == 0x7f {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    !path.split('/').any(|segment| {
        let plain = segment.replace("%2e", ".").replace("%2E", ".");
        plain == "." || plain == ".."
    })
}

fn invalid(at: &str, problem: impl Into<String>) -> PageError {
    PageError::Invalid {
        at: at.to_owned(),
        problem: problem.into(),
    }
}

impl Checker<'_> {
    fn count(&self, at: &str, n: usize, limit: usize) -> Result<(), PageError> {
        if n > limit {
            return Err(invalid(at, format!("{n} entries; the limit is {limit}")));
        }
        Ok(())
    }

    fn string(&self, at: &str, s: &str) -> Result<(), PageError> {
        let chars = s.chars().count();
        if chars > self.limits.max_text_chars {
            return Err(invalid(
                at,
                format!(
                    "{chars} characters; the limit is {}",
                    self.limits.max_text_chars
                ),
            ));
        }
        // Line breaks and tabs are text; other control characters (and bidi overrides,
        // which can disguise text) are not.
        if let Some(c) = s.chars().find(|&c| {
            (c.is_control() && c != '\n' && c != '\t')
                || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
        }) {
            return Err(invalid(at, format!("control character U+{:04X}", c as u32)));
        }
        Ok(())
    }

    fn text(&self, at: &str, t: &Text) -> Result<(), PageError> {
        for s in t.strings() {
            self.string(at, s)?;
        }
        Ok(())
    }

    /// A path inside the plugin (see [`is_plugin_path`]).
    fn path(&self, at: &str, p: &str) -> Result<(), PageError> {
        self.string(at, p)?;
        if p.len() > self.limits.max_path_chars || !is_plugin_path(p) {
            return Err(invalid(
                at,
                format!("{p:?} is not a path inside the plugin (like /topics/7)"),
            ));
        }
        Ok(())
    }

    /// An image source: a plugin path or an `https://` URL.
    fn image_src(&self, at: &str, src: &str) -> Result<(), PageError> {
        if let Some(rest) = src.strip_prefix("https://") {
            self.string(at, src)?;
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            let ok = src.len() <= self.limits.max_path_chars
                && !host.is_empty()
                && !host.contains('@')
                && !src.chars().any(char::is_whitespace)
                && !src.contains('\\');
            if !ok {
                return Err(invalid(at, format!("{src:?} is not a usable https URL")));
            }
            return Ok(());
        }
        self.path(at, src)
            .map_err(|_| invalid(at, format!("{src:?} is neither a plugin path nor https")))
    }

    fn blocks(&mut self, at: &str, blocks: &[Block], depth: usize) -> Result<(), PageError> {
        if depth > self.limits.max_depth {
            return Err(invalid(
                at,
                format!("blocks nested deeper than {}", self.limits.max_depth),
            ));
        }
        for (i, b) in blocks.iter().enumerate() {
            self.blocks += 1;
            if self.blocks > self.limits.max_blocks {
                return Err(invalid(
                    at,
                    format!("more than {} blocks", self.limits.max_blocks),
                ));
            }
            self.block(&format!("{at}[{i}]"), b, depth)?;
        }
        Ok(())
    }

    fn block(&mut self, at: &str, b: &Block, depth: usize) -> Result<(), PageError> {
        let max_items = self.limits.max_items;
        match b {
            Block::Heading { text, level } => {
                if !(1..=3).contains(level) {
                    return Err(invalid(at, format!("heading level {level} is not 1–3")));
                }
                self.text(&format!("{at}.text"), text)
            }
            Block::Text { text, .. } | Block::Empty { text } | Block::Error { text } => {
                self.text(&format!("{at}.text"), text)
            }
            Block::Notice(n) => self.text(&format!("{at}.text"), &n.text),
            Block::List { items } => {
                self.count(&format!("{at}.items"), items.len(), max_items)?;
                for (i, item) in items.iter().enumerate() {
                    let at = format!("{at}.items[{i}]");
                    self.text(&format!("{at}.title"), &item.title)?;
                    for t in [&item.subtitle, &item.badge].into_iter().flatten() {
                        self.text(&at, t)?;
                    }
                    if let Some(p) = &item.path {
                        self.path(&format!("{at}.path"), p)?;
                    }
                }
                Ok(())
            }
            Block::Facts { items } => {
                self.count(&format!("{at}.items"), items.len(), max_items)?;
                for (i, f) in items.iter().enumerate() {
                    self.text(&format!("{at}.items[{i}].label"), &f.label)?;
                    self.text(&format!("{at}.items[{i}].value"), &f.value)?;
                }
                Ok(())
            }
            Block::Card { title, path, body } => {
                self.text(&format!("{at}.title"), title)?;
                if let Some(p) = path {
                    self.path(&format!("{at}.path"), p)?;
                }
                self.blocks(&format!("{at}.body"), body, depth + 1)
            }
            Block::Table { columns, rows } => {
                self.count(&format!("{at}.columns"), columns.len(), max_items)?;
                let cells = columns.len().saturating_mul(rows.len());
                if cells > self.limits.max_cells {
                    return Err(invalid(
                        at,
                        format!("{cells} cells; the limit is {}", self.limits.max_cells),
                    ));
                }
                for (i, c) in columns.iter().enumerate() {
                    self.text(&format!("{at}.columns[{i}]"), c)?;
                }
                for (r, row) in rows.iter().enumerate() {
                    if row.len() != columns.len() {
                        return Err(invalid(
                            &format!("{at}.rows[{r}]"),
                            format!("{} cells for {} columns", row.len(), columns.len()),
                        ));
                    }
                    for (i, c) in row.iter().enumerate() {
                        self.text(&format!("{at}.rows[{r}][{i}]"), c)?;
                    }
                }
                Ok(())
            }
            Block::Form(form) => {
                self.path(&format!("{at}.action"), &form.action)?;
                self.text(&format!("{at}.submit"), &form.submit)?;
                self.count(
                    &format!("{at}.fields"),
                    form.fields.len(),
                    self.limits.max_fields,
                )?;
                let mut names = std::collections::HashSet::new();
                for (i, f) in form.fields.iter().enumerate() {
                    let at = format!("{at}.fields[{i}]");
                    if !names.insert(f.name.as_str()) {
                        return Err(invalid(&at, format!("field name {:?} repeats", f.name)));
                    }
                    self.field(&at, f)?;
                }
                Ok(())
            }
            Block::Actions { buttons } => {
                self.count(&format!("{at}.buttons"), buttons.len(), max_items)?;
                for (i, b) in buttons.iter().enumerate() {
                    let at = format!("{at}.buttons[{i}]");
                    self.text(&format!("{at}.label"), &b.label)?;
                    self.path(&format!("{at}.path"), &b.path)?;
                    if let Some(c) = &b.confirm {
                        self.text(&format!("{at}.confirm"), c)?;
                    }
                    if let Some(body) = &b.body {
                        let len = serde_json::to_string(body).map(|s| s.len()).unwrap_or(0);
                        if len > self.limits.max_text_chars {
                            return Err(invalid(
                                &format!("{at}.body"),
                                format!("{len} bytes; the limit is {}", self.limits.max_text_chars),
                            ));
                        }
                    }
                }
                Ok(())
            }
            Block::Image { src, alt } => {
                self.image_src(&format!("{at}.src"), src)?;
                if alt.strings().iter().all(|s| s.trim().is_empty()) {
                    return Err(invalid(
                        &format!("{at}.alt"),
                        "an image needs a text alternative",
                    ));
                }
                self.text(&format!("{at}.alt"), alt)
            }
            Block::Progress {
                label,
                value,
                max,
                detail,
            } => {
                if value > max {
                    return Err(invalid(at, format!("value {value} is above max {max}")));
                }
                self.text(&format!("{at}.label"), label)?;
                if let Some(d) = detail {
                    self.text(&format!("{at}.detail"), d)?;
                }
                Ok(())
            }
            Block::Tabs { tabs } => {
                self.count(&format!("{at}.tabs"), tabs.len(), max_items)?;
                for (i, t) in tabs.iter().enumerate() {
                    self.text(&format!("{at}.tabs[{i}].label"), &t.label)?;
                    self.blocks(&format!("{at}.tabs[{i}].body"), &t.body, depth + 1)?;
                }
                Ok(())
            }
        }
    }

    fn field(&self, at: &str, f: &Field) -> Result<(), PageError> {
        let name_ok = f
            .name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase())
            && f.name.len() <= 64
            && f.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !name_ok {
            return Err(invalid(
                &format!("{at}.name"),
                format!("{:?} is not a field name ([a-z][a-z0-9_-]*)", f.name),
            ));
        }
        self.text(&format!("{at}.label"), &f.label)?;
        if let Some(h) = &f.help {
            self.text(&format!("{at}.help"), h)?;
        }
        let with_options = matches!(
            f.kind,
            FieldKind::Select | FieldKind::Radio | FieldKind::Multi
        );
        if with_options && f.options.is_empty() {
            return Err(invalid(at, "a choice field needs options"));
        }
        if !with_options && !f.options.is_empty() {
            return Err(invalid(
                at,
                "only select, radio and multi fields have options",
            ));
        }
        self.count(
            &format!("{at}.options"),
            f.options.len(),
            self.limits.max_items,
        )?;
        for (i, o) in f.options.iter().enumerate() {
            self.string(&format!("{at}.options[{i}].value"), &o.value)?;
            self.text(&format!("{at}.options[{i}].label"), &o.label)?;
        }
        if let (Some(min), Some(max)) = (f.min, f.max)
            && min > max
        {
            return Err(invalid(at, format!("min {min} is above max {max}")));
        }
        if [f.min, f.max].into_iter().flatten().any(|v| !v.is_finite()) {
            return Err(invalid(at, "min and max must be finite numbers"));
        }
        match &f.value {
            None => {}
            Some(serde_json::Value::String(s)) => self.string(&format!("{at}.value"), s)?,
            Some(serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => {}
            Some(serde_json::Value::Array(a)) if f.kind == FieldKind::Multi => {
                for v in a {
                    match v {
                        serde_json::Value::String(s) => self.string(&format!("{at}.value"), s)?,
                        _ => return Err(invalid(at, "a multi field's value is a list of strings")),
                    }
                }
            }
            Some(_) => {
                return Err(invalid(
                    &format!("{at}.value"),
                    "a value is a string, number or boolean",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<Page, PageError> {
        Page::parse(&serde_json::to_vec(&v).unwrap())
    }

    fn page_with(block: serde_json::Value) -> serde_json::Value {
        json!({"linli_page": 1, "title": "t", "body": [block]})
    }

    #[test]
    fn every_block_round_trips() {
        let page = Page::new(Text::new("标题", "Title"))
            .nav(Text::new("议题", "Topics"), "/")
            .notice(Tone::Success, Text::new("已投票", "Voted"))
            .push(Block::heading(Text::plain("h")))
            .push(Block::muted(Text::plain("m")))
            .push(Block::list(vec![
                ListItem::new("a".into())
                    .subtitle("b".into())
                    .badge("c".into())
                    .link("/x"),
            ]))
            .push(Block::facts(vec![("k".into(), "v".into())]))
            .push(Block::card(
                "c".into(),
                Some("/c".into()),
                vec![Block::text("x".into())],
            ))
            .push(Block::table(vec!["a".into()], vec![vec!["1".into()]]))
            .push(
                Form::new("/f", "ok".into())
                    .field(
                        Field::multi("m", "m".into())
                            .option("a", "A".into())
                            .range(1.0, 1.0),
                    )
                    .field(Field::number("n", "n".into()).range(0.0, 10.0).required())
                    .field(Field::hidden("h", "1")),
            )
            .push(Block::actions(vec![
                Button::post("b".into(), "/b", json!({"x": 1}))
                    .danger()
                    .confirm("sure?".into()),
            ]))
            .push(Block::image("https://example.org/a.png", "alt".into()))
            .push(Block::progress("p".into(), 1, 2))
            .push(Block::tabs(vec![Tab {
                label: "t".into(),
                body: vec![Block::empty("e".into())],
            }]))
            .push(Block::error("e".into()))
            .push(Block::notice(Tone::Warning, "w".into()));
        let bytes = serde_json::to_vec(&page).unwrap();
        assert_eq!(Page::parse(&bytes).unwrap(), page);
    }

    #[test]
    fn unknown_blocks_and_fields_are_refused() {
        let e = parse(page_with(json!({"type": "html", "html": "<script>"}))).unwrap_err();
        assert!(matches!(e, PageError::Schema(_)), "{e}");
        let e = parse(page_with(
            json!({"type": "text", "text": "x", "onclick": "x"}),
        ))
        .unwrap_err();
        assert!(matches!(e, PageError::Schema(_)), "{e}");
        let e = parse(json!({"linli_page": 2, "title": "t", "body": []})).unwrap_err();
        assert_eq!(e, PageError::Version(2));
        let e = parse(json!({"title": "t", "body": []})).unwrap_err();
        assert!(matches!(e, PageError::Schema(_)), "{e}");
    }

    #[test]
    fn unsafe_paths_and_urls_are_refused() {
        for bad in [
            "javascript:alert(1)",
            "//evil.example/x",
            "https://evil.example/",
            "/a/../../api/v1/tenants",
            "/a/.%2e/.%2e/api/v1/tenants",
            "/a/%2e./%2E%2E/api/v1",
            "/a/%2E%2e/api",
            "/..",
            "/.",
            "/a/./b",
            "/a%2fb",
            "/a%5c..",
            "/a%252e%252e/b",
            "/a%00",
            "/a%",
            "/a%zz",
            "/\\evil.example/",
            "/a\\b",
            "/a b",
            "data:text/html,x",
            "",
        ] {
            let e = parse(page_with(
                json!({"type": "list", "items": [{"title": "x", "path": bad}]}),
            ));
            assert!(e.is_err(), "{bad:?} accepted as a link");
            let e = parse(json!({"linli_page": 1, "title": "t", "redirect": bad}));
            assert!(e.is_err(), "{bad:?} accepted as a redirect");
        }
        for bad in [
            "javascript:x",
            "http://example.org/a.png",
            "https://user@evil/x",
            "https://",
        ] {
            let e = parse(page_with(json!({"type": "image", "src": bad, "alt": "a"})));
            assert!(e.is_err(), "{bad:?} accepted as an image");
        }
        parse(page_with(
            json!({"type": "image", "src": "/img/a.png", "alt": "a"}),
        ))
        .unwrap();
        let e = parse(page_with(
            json!({"type": "image", "src": "/a.png", "alt": " "}),
        ))
        .unwrap_err();
        assert!(e.to_string().contains("alternative"), "{e}");
    }

    #[test]
    fn limits_are_enforced() {
        let deep = (0..6).fold(
            json!({"type": "text", "text": "x"}),
            |inner, _| json!({"type": "card", "title": "c", "body": [inner]}),
        );
        let e = parse(page_with(deep)).unwrap_err();
        assert!(e.to_string().contains("nested deeper"), "{e}");

        let many: Vec<_> = (0..1001)
            .map(|_| json!({"type": "text", "text": "x"}))
            .collect();
        let e = parse(json!({"linli_page": 1, "title": "t", "body": many})).unwrap_err();
        assert!(e.to_string().contains("more than 1000 blocks"), "{e}");

        let long = "字".repeat(20_001);
        let e = parse(page_with(json!({"type": "text", "text": long}))).unwrap_err();
        assert!(e.to_string().contains("characters; the limit"), "{e}");

        let big = vec![b' '; 256 * 1024 + 1];
        assert!(matches!(Page::parse(&big), Err(PageError::TooLarge { .. })));

        let e = parse(page_with(json!({"type": "text", "text": "a\u{0007}b"}))).unwrap_err();
        assert!(e.to_string().contains("U+0007"), "{e}");
        let e = parse(page_with(json!({"type": "text", "text": "a\u{202E}b"}))).unwrap_err();
        assert!(e.to_string().contains("U+202E"), "{e}");

        let e = parse(page_with(
            json!({"type": "table", "columns": ["a", "b"], "rows": [["1"]]}),
        ))
        .unwrap_err();
        assert!(e.to_string().contains("1 cells for 2 columns"), "{e}");
        let e = parse(page_with(
            json!({"type": "progress", "label": "p", "value": 3, "max": 2}),
        ))
        .unwrap_err();
        assert!(e.to_string().contains("above max"), "{e}");
        let e = parse(page_with(
            json!({"type": "heading", "text": "h", "level": 7}),
        ))
        .unwrap_err();
        assert!(e.to_string().contains("level 7"), "{e}");
    }

    #[test]
    fn forms_are_checked() {
        let form = |fields: serde_json::Value| {
            parse(page_with(
                json!({"type": "form", "action": "/v", "submit": "ok", "fields": fields}),
            ))
        };
        form(json!([{"name": "a", "label": "A", "kind": "text"}])).unwrap();
        let e = form(json!([{"name": "A b", "label": "A", "kind": "text"}])).unwrap_err();
        assert!(e.to_string().contains("not a field name"), "{e}");
        let e = form(json!([{"name": "a", "label": "A", "kind": "select"}])).unwrap_err();
        assert!(e.to_string().contains("needs options"), "{e}");
        let e = form(json!([
            {"name": "a", "label": "A", "kind": "text"},
            {"name": "a", "label": "B", "kind": "text"}
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("repeats"), "{e}");
        let e = form(json!([{"name": "a", "label": "A", "kind": "text", "value": {"x": 1}}]))
            .unwrap_err();
        assert!(e.to_string().contains("string, number or boolean"), "{e}");
        let e = form(json!([{"name": "a", "label": "A", "kind": "number", "min": 5, "max": 1}]))
            .unwrap_err();
        assert!(e.to_string().contains("above max"), "{e}");
    }

    #[test]
    fn error_says_where() {
        let e = parse(page_with(json!({"type": "card", "title": "c", "body": [
            {"type": "list", "items": [{"title": "x", "path": "javascript:x"}]}
        ]})))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "body[0].body[0].items[0].path: \"javascript:x\" is not a path inside the plugin (like /topics/7)"
        );
    }
}
