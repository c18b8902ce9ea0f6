//! The test kit's error type.

use std::{fmt, io};

/// Why a topology could not be started or driven.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// `redis-server` or `redis-sentinel` was not found.
    MissingBinary {
        /// The binary's name.
        name: &'static str,
    },
    /// A file or process operation failed.
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A process exited before it answered.
    Exited {
        /// Which node.
        node: String,
        /// The end of its log.
        log_tail: String,
    },
    /// A condition was not met in time; `state` is what each node reported last.
    Timeout {
        /// What was awaited.
        what: String,
        /// The topology's state when the time ran out.
        state: String,
    },
    /// A command to a node failed.
    Redis(redis::RedisError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::MissingBinary { name } => write!(
                f,
                "`{name}` was not found on PATH: install Redis (Debian/Ubuntu: `apt-get install \
                 redis-server redis-sentinel`; macOS: `brew install redis`) or set REDIS_BIN_DIR \
                 to the folder that holds redis-server and redis-sentinel"
            ),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::Exited { node, log_tail } => {
                write!(
                    f,
                    "{node} exited before it answered; its log ends with:\n{log_tail}"
                )
            }
            Error::Timeout { what, state } => {
                write!(f, "timed out waiting for {what}; topology state:\n{state}")
            }
            Error::Redis(err) => write!(f, "redis error: {err}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Redis(err) => Some(err),
            _ => None,
        }
    }
}

impl From<redis::RedisError> for Error {
    fn from(err: redis::RedisError) -> Self {
        Error::Redis(err)
    }
}

pub(crate) fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}
