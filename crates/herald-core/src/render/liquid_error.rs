//! Liquid's errors folded into one line: the position inside the template for syntax errors,
//! the headline, and only the context keys that name things (filter, variable), never values
//! Liquid echoes back, which may be the user's data.

/// Liquid errors span several lines ("with:" context). Results get the headline plus the
/// names Liquid reports (filter, variable, index), never the values it was given, which may be
/// the user's data.
pub(super) fn first_line(error: &liquid::Error) -> String {
    summarize(
        error,
        &[
            "cause",
            "filter",
            "variable",
            "requested variable",
            "requested index",
            "name",
        ],
    )
}

/// A syntax error on one line, with the position inside the template when Liquid gives one:
/// `Liquid syntax error at 1:29 of the template: expected Identifier`.
pub(crate) fn describe_liquid_error(error: &liquid::Error) -> String {
    let summary = summarize(
        error,
        &["requested filter", "requested tag", "requested block"],
    );
    match summary.split_once(": ") {
        Some((position, rest)) if position.starts_with("at ") => {
            format!("Liquid syntax error {position} of the template: {rest}")
        }
        _ => format!("Liquid syntax error: {summary}"),
    }
}

/// Folds Liquid's multi-line error text into one line, keeping only the named context keys.
fn summarize(error: &liquid::Error, keep: &[&str]) -> String {
    let text = error.to_string();
    let mut position = None;
    let mut parts: Vec<String> = Vec::new();
    let mut context = Vec::new();
    for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
        let line = line.trim_start_matches("liquid:").trim();
        if let Some(at) = line.strip_prefix("-->") {
            position = Some(format!("at {}", at.trim()));
        } else if let Some(detail) = line.strip_prefix('=') {
            parts.push(detail.trim().trim_end_matches('.').to_owned());
        } else if let Some((key, value)) = line.split_once('=') {
            if keep.contains(&key.trim()) {
                context.push(format!("{} `{}`", key.trim(), value.trim()));
            }
        } else if !(line == "with:" || line.starts_with('|') || line.starts_with(char::is_numeric))
        {
            parts.push(line.trim_end_matches('.').to_owned());
        }
    }
    let mut out = parts.join(", ");
    if !context.is_empty() {
        out.push_str(&format!(" ({})", context.join(", ")));
    }
    match position {
        Some(position) => format!("{position}: {out}"),
        None => out,
    }
}
