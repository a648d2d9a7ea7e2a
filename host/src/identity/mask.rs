//! Masking of personal fields (张*, 138****8000, 1101**********1234): what every view and
//! every plugin without the field's grant sees.

use crate::storage::people::SENSITIVE_TAGS;

/// Keep the first character (the surname, usually) and hide the length too: 张三 → 张*,
/// 张秀英 → 张*, 欧阳修 → 欧*.
pub fn name(v: &str) -> String {
    let mut chars = v.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(_)) => format!("{first}*"),
        _ => "*".into(),
    }
}

/// 13800138000 → 138****8000.
pub fn phone(v: &str) -> String {
    keep_ends(v, 3, 4)
}

/// 11010519491231002X → 1101**********002X.
pub fn id_number(v: &str) -> String {
    keep_ends(v, 4, 4)
}

/// 1949-12-31 → 1949-**-** (the year stays: enough for age groups).
pub fn birth_date(v: &str) -> String {
    match v.get(..4) {
        Some(year) if v.len() == 10 => format!("{year}-**-**"),
        _ => "****-**-**".into(),
    }
}

/// Keep the first two characters: 东村3组12号 → 东村****.
pub fn household(v: &str) -> String {
    let head: String = v.chars().take(2).collect();
    format!("{head}****")
}

/// Keep the first six characters (usually the place down to the village).
pub fn address(v: &str) -> String {
    let head: String = v.chars().take(6).collect();
    format!("{head}****")
}

/// Drop tags of special categories (disability, party membership, …).
pub fn tags(v: &[String]) -> Vec<String> {
    v.iter()
        .filter(|t| !SENSITIVE_TAGS.contains(&t.as_str()))
        .cloned()
        .collect()
}

fn keep_ends(v: &str, head: usize, tail: usize) -> String {
    let chars: Vec<char> = v.chars().collect();
    if chars.len() <= head + tail {
        return "*".repeat(chars.len().max(1));
    }
    let mut out: String = chars[..head].iter().collect();
    out.push_str(&"*".repeat(chars.len() - head - tail));
    out.extend(&chars[chars.len() - tail..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_examples() {
        assert_eq!(name("张三"), "张*");
        assert_eq!(name("欧阳修"), "欧*");
        assert_eq!(name("张秀英"), "张*");
        assert_eq!(name("张"), "*");
        assert_eq!(phone("13800138000"), "138****8000");
        assert_eq!(id_number("110105194912311234"), "1101**********1234");
        assert_eq!(birth_date("1949-12-31"), "1949-**-**");
        assert_eq!(household("东村3组12号"), "东村****");
        assert_eq!(phone("123"), "***");
        assert_eq!(
            tags(&["elderly".into(), "disabled".into(), "party-member".into()]),
            vec!["elderly".to_string()]
        );
    }
}
