//! The documentation stays true to the code: every relative link in the README and docs/
//! lands on a file that exists, and every link to a line (`…rs#L42`) whose text names a code
//! item (`` [`run`](../pkg/kubelet/src/lib.rs#L42) ``) lands on a line of code (not a comment)
//! that names it.
//!
//! docs/life-of-a-pod.md is a walk through the code by such links; when code moves, this test
//! names each link that no longer lands, so the walk is mended in the same change.

use std::path::{Path, PathBuf};

use rkube_tests::repo_root;

/// The Markdown files a reader follows.
fn documents() -> Vec<PathBuf> {
    let root = repo_root();
    let mut files: Vec<PathBuf> =
        ["README.md", "examples/README.md", "test/README.md", "lima/README.md"].iter().map(|f| root.join(f)).collect();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ is readable")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// One Markdown link: its text and target, and the line it is on.
struct Link {
    text: String,
    target: String,
    line: usize,
}

/// The inline links `[text](target)` of a Markdown text, outside code blocks.
fn links(markdown: &str) -> Vec<Link> {
    let mut out = Vec::new();
    let mut in_code = false;
    for (index, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let mut rest = line;
        while let Some(open) = rest.find('[') {
            let after = &rest[open + 1..];
            let Some(close) = after.find("](") else { break };
            let text = &after[..close];
            let target_start = &after[close + 2..];
            let Some(end) = target_start.find(')') else { break };
            out.push(Link { text: text.to_string(), target: target_start[..end].to_string(), line: index + 1 });
            rest = &target_start[end..];
        }
    }
    out
}

/// The last identifier of the first backticked name in a link's text: `run` for
/// `` `kubelet::run` ``, `Strategy` for `` `impl Strategy for Pod` `` is not a name (has spaces).
fn named_item(text: &str) -> Option<&str> {
    let start = text.find('`')? + 1;
    let end = start + text[start..].find('`')?;
    let code = text[start..end].trim_end_matches("()");
    let last = code.rsplit("::").next()?;
    let last = last.rsplit('.').next()?;
    (!last.is_empty() && last.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')).then_some(last)
}

/// What is wrong with one link of `document`, if anything.
fn check(document: &Path, link: &Link) -> Option<String> {
    let target = link.target.trim();
    if target.starts_with("http://") || target.starts_with("https://") || target.starts_with('#') {
        return None;
    }
    if target.starts_with("mailto:") {
        return None;
    }
    let (path, fragment) = target.split_once('#').unwrap_or((target, ""));
    let base = document.parent().unwrap_or(Path::new("."));
    let file = base.join(path);
    if !file.exists() {
        return Some(format!("{}: links to {path}, which does not exist", link.line));
    }
    let line = fragment.strip_prefix('L').and_then(|l| l.split('-').next()).and_then(|l| l.parse::<usize>().ok())?;
    let Ok(text) = std::fs::read_to_string(&file) else {
        return Some(format!("{}: links to line {line} of {path}, which is not text", link.line));
    };
    let Some(code_line) = text.lines().nth(line.saturating_sub(1)) else {
        return Some(format!("{}: links to line {line} of {path}, which has fewer lines", link.line));
    };
    let item = named_item(&link.text)?;
    let code = code_line.trim_start();
    if code.starts_with("//") || code.starts_with('#') {
        return Some(format!("{}: line {line} of {path} is a comment, not the code of `{item}`", link.line));
    }
    let named = code_line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).any(|word| word == item);
    (!named).then(|| {
        format!("{}: `{item}` is not on line {line} of {path} (that line reads: {})", link.line, code_line.trim())
    })
}

#[test]
fn every_relative_link_lands_on_a_file_and_every_line_link_on_the_item_it_names() {
    let mut problems = Vec::new();
    let mut line_links = 0;
    for document in documents() {
        let Ok(markdown) = std::fs::read_to_string(&document) else { continue };
        for link in links(&markdown) {
            if link.target.contains("#L") {
                line_links += 1;
            }
            if let Some(problem) = check(&document, &link) {
                problems
                    .push(format!("{}:{problem}", document.strip_prefix(repo_root()).unwrap_or(&document).display()));
            }
        }
    }
    assert!(problems.is_empty(), "links that do not land where they say:\n{}", problems.join("\n"));
    assert!(line_links >= 20, "docs/life-of-a-pod.md should walk the code by line links; found {line_links}");
}

#[test]
fn the_checker_finds_a_link_to_the_wrong_line() {
    let document = repo_root().join("docs/life-of-a-pod.md");
    let good = Link { text: "`repo_root`".into(), target: "../test/src/paths.rs#L1".into(), line: 1 };
    let text = std::fs::read_to_string(repo_root().join("test/src/paths.rs")).expect("paths.rs");
    let line = text.lines().position(|l| l.contains("fn repo_root")).expect("repo_root is defined") + 1;
    let good = Link { target: format!("../test/src/paths.rs#L{line}"), ..good };
    assert_eq!(check(&document, &good), None);
    let wrong = Link { target: format!("../test/src/paths.rs#L{}", line + 1), ..good };
    assert!(check(&document, &wrong).is_some_and(|p| p.contains("`repo_root` is not on line")));
    let missing = Link { text: "x".into(), target: "../no/such/file.rs".into(), line: 3 };
    assert!(check(&document, &missing).is_some_and(|p| p.contains("does not exist")));
}
