//! Reading a tree of manifest files: folders recursively, Backstage Location entities followed
//! (relative and absolute targets, globs), and `$text`/`$json`/`$yaml` placeholders read from
//! beside the file that holds them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use portolan_model::manifest::backstage;
use portolan_model::manifest::{LocatedDocument, read_documents};
use serde_json::Value;

/// The documents found, each with the file it came from, and every file that could not be read.
#[derive(Debug, Default)]
pub struct Tree {
    pub documents: Vec<(String, LocatedDocument)>,
    /// `file:line: message`, one per problem.
    pub problems: Vec<String>,
}

/// Reads files and folders (every .yaml, .yml and .json file under a folder, hidden ones
/// skipped), following Location descriptors. Names are shown relative to `root` when under it.
pub fn read_tree(paths: &[PathBuf], root: &Path) -> Tree {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let mut reader = Reader { root, seen: HashSet::new(), chain: Vec::new(), tree: Tree::default() };
    for path in paths {
        if path.is_dir() {
            let mut files = Vec::new();
            if let Err(err) = walk(path, &mut files) {
                reader.tree.problems.push(format!("{}: {err}", path.display()));
            }
            files.sort();
            for file in files {
                reader.file(&file);
            }
        } else {
            reader.file(path);
        }
    }
    reader.tree
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')) {
            continue;
        }
        if path.is_dir() {
            walk(&path, out)?;
        } else if matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json")) {
            out.push(path);
        }
    }
    Ok(())
}

struct Reader {
    root: PathBuf,
    seen: HashSet<PathBuf>,
    /// The Location files that led to the one being read, to tell a loop.
    chain: Vec<PathBuf>,
    tree: Tree,
}

impl Reader {
    fn name(&self, path: &Path) -> String {
        path.strip_prefix(&self.root).unwrap_or(path).display().to_string()
    }

    fn file(&mut self, path: &Path) {
        let canonical = match std::fs::canonicalize(path) {
            Ok(canonical) => canonical,
            Err(err) => return self.tree.problems.push(format!("{}: cannot read: {err}", path.display())),
        };
        let name = self.name(&canonical);
        if !self.seen.insert(canonical.clone()) {
            return;
        }
        let text = match std::fs::read_to_string(&canonical) {
            Ok(text) => text,
            Err(err) => return self.tree.problems.push(format!("{name}: cannot read: {err}")),
        };
        let documents = match read_documents(&text) {
            Ok(documents) => documents,
            Err(err) => {
                return self.tree.problems.push(format!("{name}:{}: not YAML or JSON: {}", err.line, err.message));
            }
        };
        let dir = canonical.parent().map(Path::to_path_buf).unwrap_or_default();
        for mut document in documents {
            let descriptor = backstage::is_descriptor(&document.value);
            if descriptor {
                let warnings =
                    backstage::substitute(&mut document.value, &mut |kind, target| placeholder(&dir, kind, target));
                if !warnings.is_empty() {
                    document.value["warnings"] = Value::from(warnings);
                }
            }
            let targets = match document.value["kind"].as_str() {
                Some("Location") if descriptor => backstage::location_targets(&document.value),
                _ => Vec::new(),
            };
            let line = document.line;
            self.tree.documents.push((name.clone(), document));
            for target in targets {
                self.location_target(&canonical, &dir, &name, line, &target);
            }
        }
    }

    fn location_target(&mut self, from: &Path, dir: &Path, name: &str, line: u32, target: &str) {
        if target.contains("://") {
            self.tree.problems.push(format!(
                "{name}:{line}: target {target} is a URL: only files are followed here (register a location to sync a repository)"
            ));
            return;
        }
        let pattern = dir.join(target.strip_prefix("./").unwrap_or(target));
        let matches: Vec<PathBuf> = match glob::glob(&pattern.display().to_string()) {
            Ok(paths) => paths.filter_map(Result::ok).filter(|p| p.is_file()).collect(),
            Err(err) => return self.tree.problems.push(format!("{name}:{line}: target {target} is not a glob: {err}")),
        };
        if matches.is_empty() && !target.contains(['*', '?', '[']) {
            self.tree.problems.push(format!("{name}:{line}: target {target} does not exist"));
            return;
        }
        self.chain.push(from.to_path_buf());
        for path in matches {
            let canonical = std::fs::canonicalize(&path).unwrap_or(path.clone());
            if let Some(start) = self.chain.iter().position(|p| *p == canonical) {
                let mut names: Vec<String> = self.chain[start..].iter().map(|p| self.name(p)).collect();
                names.push(self.name(&canonical));
                self.tree.problems.push(format!("{name}:{line}: Location loop: {}", names.join(" -> ")));
                continue;
            }
            self.file(&path);
        }
        self.chain.pop();
    }
}

/// What a `$text`, `$json` or `$yaml` placeholder reads: a file beside the descriptor.
fn placeholder(dir: &Path, kind: &str, target: &str) -> Result<Value, String> {
    if target.contains("://") {
        return Err("only files beside the descriptor are read".into());
    }
    let path = dir.join(target.strip_prefix("./").unwrap_or(target));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read: {e}"))?;
    match kind {
        "$text" => Ok(Value::String(text)),
        "$json" => serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}")),
        _ => serde_saphyr::from_str(&text).map_err(|e| format!("not YAML: {e}")),
    }
}
