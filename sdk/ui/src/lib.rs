//! The page schema, version 1: what a linli plugin returns for the web shell to draw.
//!
//! A plugin never sends HTML or script. It answers a request from the shell (which sends
//! `Accept: application/vnd.linli.page+json`) with a [`Page`] serialised as JSON under the
//! media type [`MEDIA_TYPE`]. The host parses and checks every such response with
//! [`Page::parse`] before it reaches a browser (schema, sizes, nesting, safe paths and URLs,
//! no control characters), and the shell draws it with its own elements as plain text.
//!
//! Text is either one string or a `{"zh": …, "en": …}` pair; the shell shows the reader's
//! language. Paths (links, form actions, button targets, images) are relative to the plugin:
//! `/topics/7` is `/t/{tenant}/p/{plugin}/topics/7`. Images may also be `https://` URLs.
//!
//! ```
//! use linli_ui::{Block, Button, Field, Form, Page, Text};
//! let page = Page::new(Text::new("议题", "Topics"))
//!     .push(Block::heading(Text::new("修缮村道", "Repair the village road")))
//!     .push(Block::progress(Text::new("赞成", "For"), 42, 80))
//!     .push(Form::new("/topics/1/vote", Text::new("投票", "Vote"))
//!         .field(Field::radio("choice", Text::new("您的选择", "Your choice"))
//!             .option("yes", Text::new("赞成", "For"))
//!             .option("no", Text::new("反对", "Against"))
//!             .required()))
//!     .push(Block::actions(vec![Button::get(Text::new("返回", "Back"), "/")]));
//! let json = serde_json::to_vec(&page).unwrap();
//! assert_eq!(Page::parse(&json).unwrap(), page);
//! ```

mod form;
mod validate;

pub use form::{FieldError, Submission};
pub use validate::{Limits, PageError, is_plugin_path};

use serde::{Deserialize, Serialize};

/// The media type of a page. A response with this content type is checked by the host.
pub const MEDIA_TYPE: &str = "application/vnd.linli.page+json";
/// The schema version this crate writes and reads.
pub const VERSION: u32 = 1;

/// Human-readable text: one string for every language, or Chinese and English.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Text {
    Plain(String),
    Localized(Localized),
}

/// Text in Chinese and in English.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Localized {
    pub zh: String,
    pub en: String,
}

impl Text {
    /// Chinese and English.
    pub fn new(zh: impl Into<String>, en: impl Into<String>) -> Self {
        Text::Localized(Localized {
            zh: zh.into(),
            en: en.into(),
        })
    }

    /// The same text in every language (names, numbers, user content).
    pub fn plain(s: impl Into<String>) -> Self {
        Text::Plain(s.into())
    }

    /// The Chinese text (or the plain one).
    pub fn zh(&self) -> &str {
        match self {
            Text::Plain(s) => s,
            Text::Localized(l) => &l.zh,
        }
    }

    /// The English text (or the plain one).
    pub fn en(&self) -> &str {
        match self {
            Text::Plain(s) => s,
            Text::Localized(l) => &l.en,
        }
    }

    fn strings(&self) -> Vec<&str> {
        match self {
            Text::Plain(s) => vec![s],
            Text::Localized(l) => vec![&l.zh, &l.en],
        }
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text::plain(s)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text::Plain(s)
    }
}

/// One screen of a plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// Schema version; always [`VERSION`] for this crate.
    pub linli_page: u32,
    pub title: Text,
    /// The plugin's menu entries, shown by the shell next to the page.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nav: Vec<NavEntry>,
    /// A message shown above the body (e.g. "your vote is recorded").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<Notice>,
    /// Instead of a body: go to this plugin path (after a form was handled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<String>,
    #[serde(default)]
    pub body: Vec<Block>,
}

impl Page {
    pub fn new(title: Text) -> Self {
        Page {
            linli_page: VERSION,
            title,
            nav: Vec::new(),
            notice: None,
            redirect: None,
            body: Vec::new(),
        }
    }

    /// A page that sends the shell on to another path of the plugin.
    pub fn redirect(path: impl Into<String>) -> Self {
        let mut p = Page::new(Text::plain(""));
        p.redirect = Some(path.into());
        p
    }

    pub fn push(mut self, block: impl Into<Block>) -> Self {
        self.body.push(block.into());
        self
    }

    pub fn nav(mut self, label: Text, path: impl Into<String>) -> Self {
        self.nav.push(NavEntry {
            label,
            path: path.into(),
        });
        self
    }

    pub fn notice(mut self, tone: Tone, text: Text) -> Self {
        self.notice = Some(Notice { tone, text });
        self
    }

    /// Parse and check a page with the default [`Limits`]: what the host does to every page.
    pub fn parse(bytes: &[u8]) -> Result<Page, PageError> {
        Limits::default().parse(bytes)
    }
}

/// An entry in the plugin's menu.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NavEntry {
    pub label: Text,
    pub path: String,
}

/// A message with a tone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notice {
    pub tone: Tone,
    pub text: Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Tone {
    #[default]
    Info,
    Success,
    Warning,
    Error,
}

/// The building blocks of a page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Block {
    /// A heading; `level` 1–3.
    Heading {
        text: Text,
        level: u8,
    },
    /// A paragraph.
    Text {
        text: Text,
        #[serde(default)]
        style: TextStyle,
    },
    /// A list of items, each optionally a link.
    List {
        items: Vec<ListItem>,
    },
    /// Label/value pairs (a profile, a topic's facts).
    Facts {
        items: Vec<Fact>,
    },
    /// A boxed group of blocks, optionally a link as a whole.
    Card {
        title: Text,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        body: Vec<Block>,
    },
    /// A table; every row has as many cells as there are columns.
    Table {
        columns: Vec<Text>,
        rows: Vec<Vec<Text>>,
    },
    Form(Form),
    /// A row of buttons.
    Actions {
        buttons: Vec<Button>,
    },
    /// An image: a plugin path or an `https://` URL, always with a text alternative.
    Image {
        src: String,
        alt: Text,
    },
    /// A tally or progress bar: `value` of `max`.
    Progress {
        label: Text,
        value: u64,
        max: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<Text>,
    },
    /// Tabs, each with its own blocks; the first is shown first.
    Tabs {
        tabs: Vec<Tab>,
    },
    /// Nothing to show yet ("no topics").
    Empty {
        text: Text,
    },
    /// Something went wrong.
    Error {
        text: Text,
    },
    /// A message with a tone inside the body.
    Notice(Notice),
}

impl Block {
    pub fn heading(text: Text) -> Block {
        Block::Heading { text, level: 1 }
    }
    pub fn subheading(text: Text) -> Block {
        Block::Heading { text, level: 2 }
    }
    pub fn text(text: Text) -> Block {
        Block::Text {
            text,
            style: TextStyle::Normal,
        }
    }
    pub fn muted(text: Text) -> Block {
        Block::Text {
            text,
            style: TextStyle::Muted,
        }
    }
    pub fn list(items: Vec<ListItem>) -> Block {
        Block::List { items }
    }
    pub fn facts(items: Vec<(Text, Text)>) -> Block {
        Block::Facts {
            items: items
                .into_iter()
                .map(|(label, value)| Fact { label, value })
                .collect(),
        }
    }
    pub fn card(title: Text, path: Option<String>, body: Vec<Block>) -> Block {
        Block::Card { title, path, body }
    }
    pub fn table(columns: Vec<Text>, rows: Vec<Vec<Text>>) -> Block {
        Block::Table { columns, rows }
    }
    pub fn actions(buttons: Vec<Button>) -> Block {
        Block::Actions { buttons }
    }
    pub fn image(src: impl Into<String>, alt: Text) -> Block {
        Block::Image {
            src: src.into(),
            alt,
        }
    }
    pub fn progress(label: Text, value: u64, max: u64) -> Block {
        Block::Progress {
            label,
            value,
            max,
            detail: None,
        }
    }
    pub fn tabs(tabs: Vec<Tab>) -> Block {
        Block::Tabs { tabs }
    }
    pub fn empty(text: Text) -> Block {
        Block::Empty { text }
    }
    pub fn error(text: Text) -> Block {
        Block::Error { text }
    }
    pub fn notice(tone: Tone, text: Text) -> Block {
        Block::Notice(Notice { tone, text })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TextStyle {
    #[default]
    Normal,
    Muted,
    Strong,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListItem {
    pub title: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtitle: Option<Text>,
    /// A short tag shown beside the title ("进行中 / open").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub badge: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl ListItem {
    pub fn new(title: Text) -> Self {
        ListItem {
            title,
            subtitle: None,
            badge: None,
            path: None,
        }
    }
    pub fn subtitle(mut self, t: Text) -> Self {
        self.subtitle = Some(t);
        self
    }
    pub fn badge(mut self, t: Text) -> Self {
        self.badge = Some(t);
        self
    }
    pub fn link(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fact {
    pub label: Text,
    pub value: Text,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tab {
    pub label: Text,
    pub body: Vec<Block>,
}

/// A button: `get` opens a plugin page, `post` sends `body` (JSON) to the path and shows the
/// page that comes back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Button {
    pub label: Text,
    pub path: String,
    #[serde(default)]
    pub method: Method,
    #[serde(default)]
    pub style: ButtonStyle,
    /// Ask the reader to confirm first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
}

impl Button {
    pub fn get(label: Text, path: impl Into<String>) -> Self {
        Button {
            label,
            path: path.into(),
            method: Method::Get,
            style: ButtonStyle::Default,
            confirm: None,
            body: None,
        }
    }
    pub fn post(label: Text, path: impl Into<String>, body: serde_json::Value) -> Self {
        Button {
            method: Method::Post,
            body: Some(body),
            ..Button::get(label, path)
        }
    }
    pub fn primary(mut self) -> Self {
        self.style = ButtonStyle::Primary;
        self
    }
    pub fn danger(mut self) -> Self {
        self.style = ButtonStyle::Danger;
        self
    }
    pub fn confirm(mut self, question: Text) -> Self {
        self.confirm = Some(question);
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    #[default]
    Get,
    Post,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ButtonStyle {
    #[default]
    Default,
    Primary,
    Danger,
}

/// A form: the shell checks the fields' rules, then POSTs `{name: value, …}` as JSON to
/// `action` and shows the page that comes back. The plugin checks again with
/// [`Form::check`]: a browser is not to be trusted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Form {
    pub action: String,
    pub fields: Vec<Field>,
    pub submit: Text,
}

impl Form {
    pub fn new(action: impl Into<String>, submit: Text) -> Self {
        Form {
            action: action.into(),
            fields: Vec::new(),
            submit,
        }
    }
    pub fn field(mut self, f: Field) -> Self {
        self.fields.push(f);
        self
    }
}

impl From<Form> for Block {
    fn from(f: Form) -> Block {
        Block::Form(f)
    }
}

/// A typed form field and its rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    /// `[a-z][a-z0-9_-]*`, unique in the form.
    pub name: String,
    pub label: Text,
    pub kind: FieldKind,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<Text>,
    /// For `select`, `radio` and `multi`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<Choice>,
    /// For `number`: the smallest and largest value; for `multi`: how many may be chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// For text kinds: the longest value in characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    /// The initial value: a string, number or boolean, or a list of strings for `multi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FieldKind {
    Text,
    Textarea,
    Number,
    /// `YYYY-MM-DD`.
    Date,
    /// `YYYY-MM-DDTHH:MM` (local time of the tenant).
    Datetime,
    /// Eleven digits starting with 1.
    Phone,
    Select,
    Radio,
    /// Several of the options.
    Multi,
    /// A yes/no box.
    Checkbox,
    /// Sent back as is, not shown.
    Hidden,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    pub value: String,
    pub label: Text,
}

impl Field {
    pub fn new(name: impl Into<String>, label: Text, kind: FieldKind) -> Self {
        Field {
            name: name.into(),
            label,
            kind,
            required: false,
            help: None,
            options: Vec::new(),
            min: None,
            max: None,
            max_length: None,
            value: None,
        }
    }
    pub fn text(name: impl Into<String>, label: Text) -> Self {
        Field::new(name, label, FieldKind::Text)
    }
    pub fn textarea(name: impl Into<String>, label: Text) -> Self {
        Field::new(name, label, FieldKind::Textarea)
    }
    pub fn number(name: impl Into<String>, label: Text) -> Self {
        Field::new(name, label, FieldKind::Number)
    }
    pub fn date(name: impl Into<String>, label: Text) -> Self {
        Field::new(name, label, FieldKind::Date)
    }
    pub fn datetime(name: impl Into<String>, label: Text) -> Self {
        Field::new(name, label, FieldKind::Datetime)
    }
    pub fn phone(name: impl Into<String>, label: Text) -> Self {
        Field::new(name, label, FieldKind::Phone)
    }
    pub fn select(name: impl Into<String>, label: Text) -> Self {
        Field::new(name, label, FieldKind::Select)
    }
    pub fn radio(name: impl Into<String>, label: Text) -> Self {
        Field::new(name, label, FieldKind::Radio)
    }
    pub fn multi(name: impl Into<String>, label: Text) -> Self {
        Field::new(name, label, FieldKind::Multi)
    }
    pub fn checkbox(name: impl Into<String>, label: Text) -> Self {
        Field::new(name, label, FieldKind::Checkbox)
    }
    pub fn hidden(name: impl Into<String>, value: impl Into<String>) -> Self {
        Field::new(name, Text::plain(""), FieldKind::Hidden).value(value.into())
    }
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
    pub fn help(mut self, t: Text) -> Self {
        self.help = Some(t);
        self
    }
    pub fn option(mut self, value: impl Into<String>, label: Text) -> Self {
        self.options.push(Choice {
            value: value.into(),
            label,
        });
        self
    }
    pub fn range(mut self, min: f64, max: f64) -> Self {
        self.min = Some(min);
        self.max = Some(max);
        self
    }
    pub fn max_length(mut self, n: u32) -> Self {
        self.max_length = Some(n);
        self
    }
    pub fn value(mut self, v: impl Into<serde_json::Value>) -> Self {
        self.value = Some(v.into());
        self
    }
}
