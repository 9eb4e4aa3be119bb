//! The library's error type. Every message names the file, flag or tensor at fault and says
//! what was expected, so the CLI can print it as is.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A user-facing argument or configuration value is out of range.
    #[error("invalid value for {name}: {}", clip(.msg, MAX_DETAIL_CHARS))]
    InvalidArgument { name: String, msg: String },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file exists but its content is not what was expected.
    #[error("{}: {}", .path.display(), clip(.msg, MAX_DETAIL_CHARS))]
    BadFile { path: PathBuf, msg: String },
    /// A checkpoint does not fit the model it is loaded into.
    #[error("checkpoint {}: {}", .path.display(), clip(.msg, MAX_DETAIL_CHARS))]
    Checkpoint { path: PathBuf, msg: String },
    /// The training run was interrupted (Ctrl-C) after saving its state.
    #[error("interrupted")]
    Interrupted,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn invalid(name: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::InvalidArgument {
            name: name.into(),
            msg: msg.into(),
        }
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub fn bad_file(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::BadFile {
            path: path.into(),
            msg: msg.into(),
        }
    }
}

/// `bytes` as UTF-8 text, or an error naming `path` and where the text stops being UTF-8.
pub fn utf8<'a>(path: &std::path::Path, bytes: &'a [u8]) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| {
        Error::bad_file(
            path,
            format!(
                "not a text file (invalid UTF-8 at byte {})",
                e.valid_up_to()
            ),
        )
    })
}

/// `text` cut to at most `max` characters (with "…" when cut), so that a message quoting
/// file content stays short whatever the file holds.
pub fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

/// Longest error message the library produces, in characters: one terminal screen
/// (24 lines of 80). Messages that list things (missing tensors, …) show the first few and
/// count the rest to stay under it.
pub const MAX_MESSAGE_CHARS: usize = 24 * 80;

/// The part of a message after the file name or flag, cut to leave room for a long path.
const MAX_DETAIL_CHARS: usize = MAX_MESSAGE_CHARS - 400;
