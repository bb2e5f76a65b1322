use serde::Serialize;

/// One problem with one field of a submitted document, located by a JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON pointer (RFC 6901) into the submitted document, e.g. `/properties/port`.
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }
}

/// Every problem found in one document; validation collects them all instead of stopping at the first.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("{} invalid field(s), first: {}", .0.len(), .0.first().map(|e| format!("{}: {}", e.path, e.message)).unwrap_or_default())]
pub struct FieldErrors(pub Vec<FieldError>);

impl FieldErrors {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(path, message));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was found, the collected errors otherwise.
    pub fn into_result<T>(self, value: T) -> Result<T, FieldErrors> {
        if self.0.is_empty() { Ok(value) } else { Err(self) }
    }
}

/// Escapes one JSON-pointer reference token (`~` → `~0`, `/` → `~1`).
pub fn pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// The most unknown fields one answer lists.
const MAX_UNKNOWN_FIELDS: usize = 100;

/// Deserialises a JSON document into `T`, reporting a failure as a field error at the exact path.
/// Every unknown field is reported at once (each is set aside and the document read again), then
/// the first other problem, if any.
pub fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, FieldErrors> {
    let mut unknown = Vec::new();
    let mut document = value;
    loop {
        match deserialize_once::<T>(&document) {
            Ok(value) if unknown.is_empty() => return Ok(value),
            Ok(_) => return Err(FieldErrors(unknown)),
            Err(error) => {
                let removable = error.message.starts_with("unknown field")
                    && unknown.len() < MAX_UNKNOWN_FIELDS
                    && remove_at(&mut document, &error.path);
                unknown.push(error);
                if !removable {
                    return Err(FieldErrors(unknown));
                }
            }
        }
    }
}

/// Removes the member a JSON pointer names; whether there was one.
fn remove_at(document: &mut serde_json::Value, pointer: &str) -> bool {
    let Some((parent, token)) = pointer.rsplit_once('/') else { return false };
    let key = token.replace("~1", "/").replace("~0", "~");
    document.pointer_mut(parent).and_then(|p| p.as_object_mut()).and_then(|object| object.shift_remove(&key)).is_some()
}

fn deserialize_once<T: serde::de::DeserializeOwned>(value: &serde_json::Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let mut path = String::new();
        for segment in err.path().iter() {
            use serde_path_to_error::Segment;
            match segment {
                Segment::Seq { index } => path.push_str(&format!("/{index}")),
                Segment::Map { key } | Segment::Enum { variant: key } => {
                    path.push('/');
                    path.push_str(&pointer_token(key));
                }
                Segment::Unknown => {}
            }
        }
        FieldError::new(path, err.into_inner().to_string())
    })
}
