//! Manifests: the objects in `-f` files, directories and standard input.
//!
//! A source is a file, a directory (its `.yaml`, `.yml` and `.json` files in name order,
//! subdirectories too with `-R`) or `-` for standard input. A file may hold many YAML documents
//! separated by `---`, and a document may be a `kind: List` whose items are objects. Empty
//! documents are skipped.
//!
//! What this keeps true: a file that does not parse is an error naming the file and the line
//! (`error parsing pod.yaml: ... at line 4 column 3`); a path that does not exist is kubectl's
//! `the path "x" does not exist`. No object is sent to the server before every source parsed.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use rkube_api::ResourceDef;
use serde::Deserialize as _;
use serde_json::Value;

use crate::error::{Error, Result};

/// One object read from a manifest.
#[derive(Debug, Clone)]
pub struct Document {
    /// Where it came from (`pod.yaml`, `STDIN`), for messages.
    pub source: String,
    /// The object.
    pub object: Value,
}

impl Document {
    /// The object's name (`metadata.name`).
    pub fn name(&self) -> Result<String> {
        self.object["metadata"]["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .ok_or_else(|| Error::msg(format!("error when reading {:?}: an object has no metadata.name", self.source)))
    }

    /// The registry entry of the object's `apiVersion` and `kind`.
    pub fn resource(&self) -> Result<&'static ResourceDef> {
        let api_version = self.object["apiVersion"].as_str().unwrap_or("");
        let kind = self.object["kind"].as_str().unwrap_or("");
        if api_version.is_empty() || kind.is_empty() {
            return Err(Error::msg(format!(
                "error validating {:?}: error validating data: {} not set",
                self.source,
                if api_version.is_empty() { "apiVersion" } else { "kind" }
            )));
        }
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let def = rkube_api::registry::by_kind(group, kind).filter(|def| def.version == version);
        def.or_else(|| crate::resource::discovered_kind(group, version, kind)).ok_or_else(|| {
            Error::msg(format!(
                "resource mapping not found for name: {:?} from {:?}: no matches for kind {kind:?} in version {api_version:?}",
                self.object["metadata"]["name"].as_str().unwrap_or(""),
                self.source
            ))
        })
    }
}

/// Reads every source in order (see the module docs).
pub fn read_all(sources: &[String], recursive: bool) -> Result<Vec<Document>> {
    let mut docs = Vec::new();
    for source in sources {
        if source == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            docs.extend(parse("STDIN", &text)?);
            continue;
        }
        let path = Path::new(source);
        if !path.exists() {
            return Err(Error::msg(format!("the path {source:?} does not exist")));
        }
        let mut files = Vec::new();
        if path.is_dir() {
            collect_dir(path, recursive, &mut files)?;
        } else {
            files.push(path.to_path_buf());
        }
        for file in files {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Error::msg(format!("cannot read {}: {e}", file.display())))?;
            docs.extend(parse(&file.display().to_string(), &text)?);
        }
    }
    Ok(docs)
}

fn collect_dir(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::msg(format!("cannot read directory {}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            if recursive {
                collect_dir(&entry, recursive, out)?;
            }
        } else if entry.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e, "yaml" | "yml" | "json")) {
            out.push(entry);
        }
    }
    Ok(())
}

/// Parses the documents of one source's text.
pub fn parse(source: &str, text: &str) -> Result<Vec<Document>> {
    let mut docs = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value = Value::deserialize(document).map_err(|e| Error::msg(format!("error parsing {source}: {e}")))?;
        match value {
            Value::Null => {}
            Value::Object(_) if value["kind"] == "List" => {
                for item in value["items"].as_array().cloned().unwrap_or_default() {
                    docs.push(Document { source: source.to_string(), object: item });
                }
            }
            Value::Object(_) => docs.push(Document { source: source.to_string(), object: value }),
            other => {
                return Err(Error::msg(format!(
                    "error parsing {source}: a document is a {} where an object was expected",
                    match other {
                        Value::Array(_) => "list",
                        Value::String(_) => "string",
                        _ => "scalar",
                    }
                )));
            }
        }
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_and_lists_expand_and_empty_documents_are_skipped() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: b}}\n";
        let docs = parse("x.yaml", text).unwrap();
        let names: Vec<_> = docs.iter().map(|d| d.name().unwrap()).collect();
        assert_eq!(names, vec!["a", "b"]);
        assert_eq!(docs[1].resource().unwrap().plural, "pods");
    }

    #[test]
    fn a_parse_error_names_the_file_and_the_line() {
        let text = "apiVersion: v1\nkind: ConfigMap\n---\nmetadata:\n  name: [unclosed\n";
        let err = parse("bad.yaml", text).unwrap_err().to_string();
        assert!(err.starts_with("error: error parsing bad.yaml:"), "{err}");
        assert!(err.contains("line 5") || err.contains("line 6"), "{err}");
    }

    #[test]
    fn unknown_kinds_are_named() {
        let docs = parse("w.yaml", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n").unwrap();
        let err = docs[0].resource().unwrap_err().to_string();
        assert!(err.contains("no matches for kind \"Widget\" in version \"example.com/v1\""), "{err}");
    }
}
