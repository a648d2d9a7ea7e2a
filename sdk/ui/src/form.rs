//! Checking what a browser sent for a form, with the same rules the shell applied.

use crate::{Field, FieldKind, Form, Text};
use serde_json::{Map, Value};

/// A field whose value broke its rules.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: Text,
}

/// A checked form submission: every field of the form, and nothing else.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission(Map<String, Value>);

impl Submission {
    /// A text value ("" when an optional field was left empty).
    pub fn text(&self, name: &str) -> &str {
        self.0.get(name).and_then(Value::as_str).unwrap_or("")
    }
    /// A number value.
    pub fn number(&self, name: &str) -> Option<f64> {
        self.0.get(name).and_then(Value::as_f64)
    }
    /// A checkbox.
    pub fn checked(&self, name: &str) -> bool {
        self.0.get(name).and_then(Value::as_bool).unwrap_or(false)
    }
    /// The chosen values of a `multi` field.
    pub fn chosen(&self, name: &str) -> Vec<&str> {
        match self.0.get(name) {
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }
}

fn err(field: &Field, zh: &str, en: &str) -> FieldError {
    FieldError {
        field: field.name.clone(),
        message: Text::new(
            format!("{}：{zh}", field.label.zh()),
            format!("{}: {en}", field.label.en()),
        ),
    }
}

fn valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<u32>().ok());
    matches!((num(0..4), num(5..7), num(8..10)), (Some(_), Some(m), Some(d)) if (1..=12).contains(&m) && (1..=31).contains(&d))
}

fn valid_datetime(s: &str) -> bool {
    let Some((date, time)) = s.split_once('T') else {
        return false;
    };
    let t = time.as_bytes();
    let num = |r: std::ops::Range<usize>| time.get(r).and_then(|x| x.parse::<u32>().ok());
    valid_date(date)
        && t.len() == 5
        && t[2] == b':'
        && matches!((num(0..2), num(3..5)), (Some(h), Some(m)) if h < 24 && m < 60)
}

impl Form {
    /// Check a submission (the JSON object the shell POSTs) against the fields' rules. Unknown
    /// names are dropped; every broken rule is reported, one error per field.
    pub fn check(&self, body: &[u8]) -> Result<Submission, Vec<FieldError>> {
        let sent: Map<String, Value> = match serde_json::from_slice(body) {
            Ok(Value::Object(m)) => m,
            _ => {
                return Err(vec![FieldError {
                    field: String::new(),
                    message: Text::new("提交的内容不是表单", "the submission is not a form"),
                }]);
            }
        };
        let mut out = Map::new();
        let mut errors = Vec::new();
        for f in &self.fields {
            match check_field(f, sent.get(&f.name)) {
                Ok(Some(v)) => {
                    out.insert(f.name.clone(), v);
                }
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(Submission(out))
        } else {
            Err(errors)
        }
    }
}

fn check_field(f: &Field, v: Option<&Value>) -> Result<Option<Value>, FieldError> {
    let empty = match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.trim().is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    };
    if empty {
        if f.required && f.kind != FieldKind::Checkbox {
            return Err(err(f, "必填", "required"));
        }
        return Ok(match f.kind {
            FieldKind::Checkbox => Some(Value::Bool(false)),
            FieldKind::Multi => Some(Value::Array(Vec::new())),
            _ => Some(Value::String(String::new())),
        });
    }
    let v = v.unwrap_or(&Value::Null);
    let in_options = |s: &str| f.options.iter().any(|o| o.value == s);
    match f.kind {
        FieldKind::Checkbox => match v {
            Value::Bool(b) => {
                if f.required && !b {
                    return Err(err(f, "请勾选", "must be ticked"));
                }
                Ok(Some(Value::Bool(*b)))
            }
            _ => Err(err(f, "应为是或否", "must be yes or no")),
        },
        FieldKind::Number => {
            let n = match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            }
            .filter(|n| n.is_finite())
            .ok_or_else(|| err(f, "应为数字", "must be a number"))?;
            if f.min.is_some_and(|min| n < min) || f.max.is_some_and(|max| n > max) {
                return Err(err(
                    f,
                    &format!("应在 {} 到 {} 之间", fmt(f.min), fmt(f.max)),
                    &format!("must be between {} and {}", fmt(f.min), fmt(f.max)),
                ));
            }
            Ok(serde_json::Number::from_f64(n).map(Value::Number))
        }
        FieldKind::Multi => {
            let Value::Array(a) = v else {
                return Err(err(f, "应为选项列表", "must be a list of choices"));
            };
            let mut chosen = Vec::new();
            for x in a {
                match x.as_str() {
                    Some(s) if in_options(s) => {
                        if !chosen.contains(&s) {
                            chosen.push(s)
                        }
                    }
                    _ => return Err(err(f, "含有无效选项", "has a choice that is not offered")),
                }
            }
            let n = chosen.len() as f64;
            if f.min.is_some_and(|min| n < min) || f.max.is_some_and(|max| n > max) {
                return Err(err(
                    f,
                    &format!("应选 {} 到 {} 项", fmt(f.min), fmt(f.max)),
                    &format!("choose {} to {}", fmt(f.min), fmt(f.max)),
                ));
            }
            Ok(Some(Value::Array(
                chosen
                    .into_iter()
                    .map(|s| Value::String(s.to_owned()))
                    .collect(),
            )))
        }
        _ => {
            let Value::String(s) = v else {
                return Err(err(f, "应为文字", "must be text"));
            };
            let s = s.trim();
            if let Some(max) = f.max_length
                && s.chars().count() > max as usize
            {
                return Err(err(
                    f,
                    &format!("最多 {max} 个字"),
                    &format!("at most {max} characters"),
                ));
            }
            let ok = match f.kind {
                FieldKind::Select | FieldKind::Radio => in_options(s),
                FieldKind::Date => valid_date(s),
                FieldKind::Datetime => valid_datetime(s),
                FieldKind::Phone => {
                    s.len() == 11 && s.starts_with('1') && s.bytes().all(|b| b.is_ascii_digit())
                }
                _ => !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t'),
            };
            if !ok {
                return Err(match f.kind {
                    FieldKind::Select | FieldKind::Radio => {
                        err(f, "不是可选的选项", "is not one of the choices")
                    }
                    FieldKind::Date => err(f, "日期格式应为 年-月-日", "must be a date YYYY-MM-DD"),
                    FieldKind::Datetime => {
                        err(f, "时间格式应为 年-月-日T时:分", "must be YYYY-MM-DDTHH:MM")
                    }
                    FieldKind::Phone => {
                        err(f, "应为 11 位手机号", "must be an 11-digit mobile number")
                    }
                    _ => err(f, "含有控制字符", "contains control characters"),
                });
            }
            Ok(Some(Value::String(s.to_owned())))
        }
    }
}

fn fmt(v: Option<f64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "…".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn form() -> Form {
        Form::new("/v", Text::plain("ok"))
            .field(
                Field::radio("choice", Text::new("选择", "Choice"))
                    .option("yes", "Y".into())
                    .option("no", "N".into())
                    .required(),
            )
            .field(Field::textarea("comment", "c".into()).max_length(5))
            .field(Field::number("area", "a".into()).range(0.0, 1000.0))
            .field(Field::date("day", "d".into()))
            .field(Field::datetime("at", "t".into()))
            .field(Field::phone("phone", "p".into()))
            .field(
                Field::multi("tags", "m".into())
                    .option("a", "A".into())
                    .option("b", "B".into())
                    .range(0.0, 1.0),
            )
            .field(Field::checkbox("agree", "g".into()).required())
    }

    #[test]
    fn a_good_submission_passes_and_unknown_names_are_dropped() {
        let s = form()
            .check(
                &serde_json::to_vec(&json!({
                    "choice": "yes", "comment": " hi ", "area": "88.5", "day": "2026-11-24",
                    "at": "2026-11-24T09:30", "phone": "13800000001", "tags": ["a", "a"],
                    "agree": true, "admin": true
                }))
                .unwrap(),
            )
            .unwrap();
        assert_eq!(s.text("choice"), "yes");
        assert_eq!(s.text("comment"), "hi");
        assert_eq!(s.number("area"), Some(88.5));
        assert_eq!(s.chosen("tags"), vec!["a"]);
        assert!(s.checked("agree"));
        assert_eq!(s.text("admin"), "");
    }

    #[test]
    fn every_broken_rule_is_reported() {
        let errors = form()
            .check(
                &serde_json::to_vec(&json!({
                    "comment": "toolong", "area": 1e9, "day": "2026-13-01", "at": "9:30",
                    "phone": "12345", "tags": ["a", "b"], "agree": false
                }))
                .unwrap(),
            )
            .unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "choice", "comment", "area", "day", "at", "phone", "tags", "agree"
            ]
        );
        assert_eq!(errors[0].message.zh(), "选择：必填");
        assert_eq!(errors[0].message.en(), "Choice: required");
        let errors = form()
            .check(&serde_json::to_vec(&json!({"choice": "maybe", "agree": true})).unwrap())
            .unwrap_err();
        assert_eq!(errors[0].field, "choice");
        assert!(form().check(b"[1,2]").is_err());
        assert!(form().check(b"not json").is_err());
    }
}
