//! What the README's "Run a fleet" section tells a user to do, read from the README itself so
//! the fleet test follows the documentation rather than its own idea of it: the
//! `HERALD_DATABASE_URL` to export, the `herald` commands (import, send, status), the sample
//! campaign and segment, and the admin API calls.

use crate::tests::deploy::read;

/// The section's instructions.
#[derive(Debug)]
pub(crate) struct FleetReadme {
    /// The value of `export HERALD_DATABASE_URL=...`.
    pub(crate) database_url: String,
    /// The arguments of `herald users import ...`.
    pub(crate) import: Vec<String>,
    /// The arguments of `herald campaign send ...`.
    pub(crate) send: Vec<String>,
    /// The arguments of `herald campaign status ...` (with the placeholder `RUN_ID`).
    pub(crate) status: Vec<String>,
    /// The ```toml block: the sample campaign.
    pub(crate) campaign: String,
    /// The ```csv block: the sample segment.
    pub(crate) segment: String,
    /// The bearer token of the curl calls.
    pub(crate) api_token: String,
    /// Each curl call's `(path and query, --data-binary @file)`, in order.
    pub(crate) api_calls: Vec<(String, Option<String>)>,
}

/// One fenced block: its language and its text.
struct Block {
    language: String,
    text: String,
}

impl FleetReadme {
    /// Reads README.md; panics, naming what is missing, when the section lacks an instruction.
    pub(crate) fn load() -> Self {
        let readme = read("README.md");
        let start = readme
            .find("\n## Run a fleet\n")
            .expect("README has a \"Run a fleet\" section");
        let section = &readme[start + 1..];
        let section = section[3..]
            .find("\n## ")
            .map_or(section, |end| &section[..end + 3]);
        let blocks = blocks(section);
        let block = |language: &str| -> Vec<&Block> {
            blocks.iter().filter(|b| b.language == language).collect()
        };
        let commands: Vec<String> = block("sh")
            .iter()
            .flat_map(|b| shell_lines(&b.text))
            .collect();
        let database_url = commands
            .iter()
            .find_map(|c| c.strip_prefix("export HERALD_DATABASE_URL="))
            .expect("an `export HERALD_DATABASE_URL=...` line")
            .to_owned();
        let herald = |prefix: &str| -> Vec<String> {
            let line = commands
                .iter()
                .find(|c| c.starts_with(prefix))
                .unwrap_or_else(|| panic!("a `{prefix} ...` line"));
            line.split_whitespace().skip(1).map(str::to_owned).collect()
        };
        let curls: Vec<&String> = commands.iter().filter(|c| c.starts_with("curl ")).collect();
        let api_token = curls
            .iter()
            .find_map(|c| {
                let at = c.find("Bearer ")? + "Bearer ".len();
                Some(c[at..].split(['\'', '"', ' ']).next()?.to_owned())
            })
            .expect("a curl call with `Authorization: Bearer ...`");
        let api_calls = curls.iter().map(|c| api_call(c)).collect();
        let single = |language: &str| -> String {
            let found = block(language);
            assert_eq!(found.len(), 1, "one ```{language} block in \"Run a fleet\"");
            found[0].text.clone()
        };
        Self {
            database_url,
            import: herald("herald users import "),
            send: herald("herald campaign send "),
            status: herald("herald campaign status "),
            campaign: single("toml"),
            segment: single("csv"),
            api_token,
            api_calls,
        }
    }
}

/// Every fenced block of `text`.
fn blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for line in text.lines() {
        match (line.strip_prefix("```"), open.take()) {
            (Some(_), Some(block)) => blocks.push(block),
            (Some(language), None) => {
                open = Some(Block {
                    language: language.trim().to_owned(),
                    text: String::new(),
                });
            }
            (None, Some(mut block)) => {
                block.text.push_str(line);
                block.text.push('\n');
                open = Some(block);
            }
            (None, None) => {}
        }
    }
    blocks
}

/// The commands of a shell block: continuation lines joined, `# comments` dropped.
fn shell_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.split(" # ").next().unwrap_or(line).trim();
        match line.strip_suffix('\\') {
            Some(start) => {
                current.push_str(start.trim());
                current.push(' ');
            }
            None => {
                current.push_str(line);
                if !current.is_empty() {
                    lines.push(std::mem::take(&mut current));
                }
            }
        }
    }
    lines
}

/// The path (and query) after `localhost:PORT` and the `@file` of `--data-binary`.
fn api_call(curl: &str) -> (String, Option<String>) {
    let words: Vec<&str> = curl.split_whitespace().collect();
    let url = words
        .iter()
        .map(|w| w.trim_matches(['\'', '"']))
        .find(|w| w.starts_with("localhost:"))
        .unwrap_or_else(|| panic!("curl call without a localhost URL: {curl}"));
    let path = &url[url.find('/').unwrap_or(url.len())..];
    let file = words
        .windows(2)
        .find(|pair| pair[0] == "--data-binary")
        .and_then(|pair| pair[1].strip_prefix('@'))
        .map(str::to_owned);
    (path.to_owned(), file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_lines_join_continuations_and_drop_comments() {
        let text = "export A=b\ncurl -H 'x' \\\n     --data-binary @f.csv 'localhost:8080/p?q=1'   # note\n";
        assert_eq!(
            shell_lines(text),
            [
                "export A=b",
                "curl -H 'x' --data-binary @f.csv 'localhost:8080/p?q=1'"
            ]
        );
        assert_eq!(
            api_call(&shell_lines(text)[1]),
            ("/p?q=1".to_owned(), Some("f.csv".to_owned()))
        );
    }

    #[test]
    fn the_readme_section_has_every_instruction() {
        let readme = FleetReadme::load();
        assert_eq!(readme.import[..2], ["users", "import"]);
        assert_eq!(readme.send[..2], ["campaign", "send"]);
        assert_eq!(readme.status[..2], ["campaign", "status"]);
        assert_eq!(readme.api_calls.len(), 3, "{:?}", readme.api_calls);
    }
}
