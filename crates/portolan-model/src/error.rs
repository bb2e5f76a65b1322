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

/// Deserialises a JSON document into `T`, reporting a failure as a field error at the exact path.
pub fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, FieldErrors> {
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
        FieldErrors(vec![FieldError::new(path, err.into_inner().to_string())])
    })
}
