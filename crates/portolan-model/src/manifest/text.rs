//! Reading manifest files: YAML or JSON text, one or many documents, each with the line of
//! every value so that an error can name the line it is about.

use std::collections::BTreeMap;

use serde_json::Value;
use serde_saphyr::granit_parser::{Event, Parser};

use crate::error::pointer_token;

/// The line of each value of a document, by JSON pointer.
type LineMap = BTreeMap<String, u32>;

/// One document read from a file, and the line (1-based) each of its values starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct LocatedDocument {
    pub value: Value,
    /// Line of the document itself.
    pub line: u32,
    lines: LineMap,
}

impl LocatedDocument {
    /// The line of the value at `pointer`, or of its nearest enclosing value that exists (an
    /// error about a missing field points at the object that lacks it).
    pub fn line_of(&self, pointer: &str) -> u32 {
        let mut pointer = pointer;
        loop {
            if let Some(line) = self.lines.get(pointer) {
                return *line;
            }
            match pointer.rfind('/') {
                Some(cut) => pointer = &pointer[..cut],
                None => return self.line,
            }
        }
    }
}

/// A file that could not be read as YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextError {
    pub line: u32,
    pub message: String,
}

/// Reads every document of a YAML (or JSON) text. Empty documents are skipped; a document that
/// is a list is read as that many documents (a JSON file may hold an array of them).
pub fn read_documents(text: &str) -> Result<Vec<LocatedDocument>, TextError> {
    // A catalog file may hold many thousand documents: the counts are bounded by the text's own
    // size (each node takes at least one byte), and aliases keep the library's own caps.
    let size = text.len() + 1024;
    let mut budget = serde_saphyr::Budget::default();
    budget.max_documents = size;
    budget.max_nodes = size;
    budget.max_events = size * 2;
    budget.max_total_scalar_bytes = size;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    let values: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options)
        .map_err(|err| TextError { line: error_line(&err.to_string()), message: first_line(&err.to_string()) })?;
    let located = locate(text)?;
    let mut documents = Vec::new();
    for (value, (line, lines)) in values.into_iter().zip(located) {
        match value {
            Value::Null => {}
            Value::Array(items) => {
                for (index, item) in items.into_iter().enumerate() {
                    let prefix = format!("/{index}");
                    let item_lines = lines
                        .iter()
                        .filter_map(|(p, l)| {
                            let rest = p.strip_prefix(&prefix)?;
                            (rest.is_empty() || rest.starts_with('/')).then(|| (rest.to_string(), *l))
                        })
                        .collect::<BTreeMap<_, _>>();
                    let item_line = item_lines.get("").copied().unwrap_or(line);
                    documents.push(LocatedDocument { value: item, line: item_line, lines: item_lines });
                }
            }
            value => documents.push(LocatedDocument { value, line, lines }),
        }
    }
    Ok(documents)
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_string()
}

/// serde-saphyr's messages end with "at line L column C"; the line is taken from there.
fn error_line(message: &str) -> u32 {
    let Some(at) = message.find("line ") else { return 1 };
    message[at + 5..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap_or(1)
}

enum Frame {
    /// A mapping: the key (and its line) whose value comes next, or None while a key is awaited.
    Map {
        pointer: String,
        key: Option<(String, u32)>,
    },
    Seq {
        pointer: String,
        next: usize,
    },
}

/// For each document, its first line and the line of each value by JSON pointer.
fn locate(text: &str) -> Result<Vec<(u32, LineMap)>, TextError> {
    let mut documents = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut lines = BTreeMap::new();
    let mut document_line = 1;
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|err| TextError {
            line: u32::try_from(err.marker().line()).unwrap_or(u32::MAX),
            message: err.to_string(),
        })?;
        let line = u32::try_from(span.start.line()).unwrap_or(u32::MAX);
        let opens = matches!(event, Event::MappingStart(..) | Event::SequenceStart(..));
        match event {
            Event::DocumentStart(..) => {
                stack.clear();
                lines = BTreeMap::new();
                document_line = line;
            }
            Event::DocumentEnd => documents.push((document_line, std::mem::take(&mut lines))),
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            Event::Scalar(..) | Event::Alias(..) | Event::MappingStart(..) | Event::SequenceStart(..) => {
                let scalar = match &event {
                    Event::Scalar(text, ..) => Some(text.to_string()),
                    _ => None,
                };
                // A scalar in key position names the next value rather than being one.
                if let (Some(Frame::Map { key: key @ None, .. }), Some(name)) = (stack.last_mut(), &scalar) {
                    *key = Some((name.clone(), line));
                    continue;
                }
                // A mapping's value is placed at its key: a block mapping starts a line below it.
                let (pointer, line) = match stack.last_mut() {
                    None => (String::new(), line),
                    Some(Frame::Map { pointer, key }) => {
                        let (name, key_line) = key.take().unwrap_or_default();
                        (format!("{pointer}/{}", pointer_token(&name)), key_line)
                    }
                    Some(Frame::Seq { pointer, next }) => {
                        *next += 1;
                        (format!("{pointer}/{}", *next - 1), line)
                    }
                };
                lines.entry(pointer.clone()).or_insert(line);
                if opens {
                    stack.push(match event {
                        Event::MappingStart(..) => Frame::Map { pointer, key: None },
                        _ => Frame::Seq { pointer, next: 0 },
                    });
                }
            }
            _ => {}
        }
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_knows_its_line() {
        let text = "apiVersion: portolan.dev/v1\nkind: Entity\nspec:\n  identifier: cart\n  properties:\n    tier: gold\n    ports:\n      - 80\n      - 443\n---\nkind: Blueprint\n";
        let documents = read_documents(text).expect("reads");
        assert_eq!(documents.len(), 2);
        let first = &documents[0];
        assert_eq!(first.value["spec"]["properties"]["ports"][1], 443);
        assert_eq!(first.line_of("/spec/identifier"), 4);
        assert_eq!(first.line_of("/spec/properties/tier"), 6);
        assert_eq!(first.line_of("/spec/properties/ports/1"), 9);
        assert_eq!(first.line_of("/spec/properties/missing"), 5, "the nearest enclosing value");
        assert_eq!(documents[1].line_of("/kind"), 11);
    }

    #[test]
    fn a_json_array_is_many_documents() {
        let text = "[\n {\"kind\": \"Blueprint\"},\n {\"kind\": \"Entity\",\n  \"spec\": {}}\n]\n";
        let documents = read_documents(text).expect("reads");
        assert_eq!(documents.len(), 2);
        assert_eq!(documents[1].value["kind"], "Entity");
        assert_eq!(documents[1].line, 3);
        assert_eq!(documents[1].line_of("/spec"), 4);
    }

    #[test]
    fn a_file_may_hold_thousands_of_documents() {
        let text = "kind: Entity\n---\n".repeat(5_000);
        assert_eq!(read_documents(&text).expect("reads").len(), 5_000);
    }

    #[test]
    fn text_that_is_not_yaml_names_its_line() {
        let err = read_documents("kind: Entity\nspec: {identifier: [unclosed\n").expect_err("not YAML");
        assert!(err.line >= 2, "{err:?}");
        assert!(!err.message.is_empty());
    }
}
