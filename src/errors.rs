//! Which stage errors are worth retrying.
//!
//! Deterministic errors (corrupt or mis-typed data, SQL and plan errors, a missing file, a
//! permission refused) fail the same way every time: retrying them only delays the report.
//! Transient ones (timeouts, dropped connections, a store's 5xx, a locked database) are retried
//! with the stage's `retries` policy. An error of a kind not recognised here is treated as
//! transient, as before this classification existed.
use std::error::Error as StdError;

use datafusion::error::DataFusionError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Deterministic,
    Transient,
}

/// Input data that is there but unusable (corrupt, inconsistent, empty): never retried.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadData(pub String);

/// An error rewritten as a message for people (its source chain dropped, so it prints once)
/// that keeps what the executor needs to know of that chain.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Explained {
    pub message: String,
    pub class: ErrorClass,
    /// Whether decoding a data file failed (then the executor finds and names the file).
    pub decoding: bool,
}

impl Explained {
    pub fn new(message: String, source: &(dyn StdError + 'static)) -> Self {
        let chain = || std::iter::successors(Some(source), |e: &&(dyn StdError + 'static)| (*e).source());
        let class = chain().find_map(class_of).unwrap_or(ErrorClass::Transient);
        let decoding = chain().any(is_decoding_error);
        Self { message, class, decoding }
    }
}

fn is_decoding_error(e: &(dyn StdError + 'static)) -> bool {
    e.is::<parquet::errors::ParquetError>() || e.is::<datafusion::arrow::error::ArrowError>()
}

/// Whether a data file failed to decode somewhere in this error.
pub fn is_decoding(e: &anyhow::Error) -> bool {
    e.chain().any(|c| is_decoding_error(c) || c.downcast_ref::<Explained>().is_some_and(|x| x.decoding))
}

pub fn classify(e: &anyhow::Error) -> ErrorClass {
    e.chain().find_map(class_of).unwrap_or(ErrorClass::Transient)
}

/// The class one error in a chain decides, or `None` to look at its source.
fn class_of(e: &(dyn StdError + 'static)) -> Option<ErrorClass> {
    use ErrorClass::*;
    if let Some(x) = e.downcast_ref::<Explained>() {
        return Some(x.class);
    }
    if e.is::<BadData>() || e.is::<parquet::errors::ParquetError>() && !is_external_parquet(e) {
        return Some(Deterministic);
    }
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        return io_class(io);
    }
    if let Some(os) = e.downcast_ref::<object_store::Error>() {
        return match os {
            object_store::Error::Generic { .. } | object_store::Error::JoinError { .. } => None,
            _ => Some(Deterministic),
        };
    }
    if let Some(df) = e.downcast_ref::<DataFusionError>() {
        return match df {
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_)
            | DataFusionError::Configuration(_)
            | DataFusionError::ResourcesExhausted(_)
            | DataFusionError::Execution(_)
            | DataFusionError::Internal(_) => Some(Deterministic),
            _ => None,
        };
    }
    if let Some(arrow) = e.downcast_ref::<datafusion::arrow::error::ArrowError>() {
        use datafusion::arrow::error::ArrowError::*;
        return match arrow {
            ExternalError(_) | IoError(..) => None,
            _ => Some(Deterministic),
        };
    }
    if let Some(rusqlite::Error::SqliteFailure(f, _)) = e.downcast_ref::<rusqlite::Error>() {
        return matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked).then_some(Transient);
    }
    None
}

fn is_external_parquet(e: &(dyn StdError + 'static)) -> bool {
    matches!(e.downcast_ref::<parquet::errors::ParquetError>(), Some(parquet::errors::ParquetError::External(_)))
}

fn io_class(io: &std::io::Error) -> Option<ErrorClass> {
    use std::io::ErrorKind::*;
    match io.kind() {
        TimedOut | ConnectionReset | ConnectionAborted | ConnectionRefused | BrokenPipe | Interrupted | WouldBlock | NotConnected
        | UnexpectedEof => Some(ErrorClass::Transient),
        // An io error wrapping another error (object_store inside arrow, say): look inside.
        Other if io.get_ref().is_some() => None,
        _ => Some(ErrorClass::Deterministic),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_and_sql_errors_are_deterministic_network_errors_transient() {
        let corrupt = anyhow::Error::from(DataFusionError::ParquetError(Box::new(parquet::errors::ParquetError::General(
            "snappy: corrupt input".into(),
        ))));
        assert_eq!(classify(&corrupt), ErrorClass::Deterministic);
        assert_eq!(classify(&DataFusionError::Plan("no column x".into()).into()), ErrorClass::Deterministic);
        assert_eq!(classify(&anyhow::Error::new(BadData("empty".into())).context("stage a")), ErrorClass::Deterministic);
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "peer reset");
        let wrapped = DataFusionError::ObjectStore(Box::new(object_store::Error::Generic { store: "S3", source: Box::new(reset) }));
        assert_eq!(classify(&anyhow::Error::from(wrapped).context("reading input")), ErrorClass::Transient);
        let http_503 = object_store::Error::Generic { store: "S3", source: "503 Service Unavailable".into() };
        assert_eq!(classify(&http_503.into()), ErrorClass::Transient);
        let denied = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "read-only folder");
        assert_eq!(classify(&denied.into()), ErrorClass::Deterministic);
        assert_eq!(classify(&anyhow::anyhow!("a stage's own error")), ErrorClass::Transient);
    }
}

/// Why CPU-bound work (a stage's blocking part, training, decoding) stopped early.
#[derive(Debug, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;
