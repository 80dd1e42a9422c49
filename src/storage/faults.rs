//! Fault injection for reliability tests: an `ObjectStore` wrapper that fails or delays chosen
//! calls. Off unless `RESTOCK_FAULTS` is set; meant for the fault harness (`tests/it/faults.rs`,
//! `benches/faults.rs`), never for production use.
//!
//! `RESTOCK_FAULTS` is a comma-separated list of rules `OP[@PATH]:N[+]:EFFECT`:
//! * `OP`: `put` (plain and multipart writes), `cput` (create-if-absent or conditional puts:
//!   manifests, leases, Delta log commits), `get`, `list`, `delete`;
//! * `@PATH`: only calls whose object path contains this text (e.g. `put@tables/`);
//! * `N`: the Nth matching call of this process (1-based); `N+`: that call and every later one;
//! * `EFFECT`: `fail` (an I/O error), `503` (a server error), `drop` (connection reset),
//!   `denied` (permission refused), `delay=MS` (the call succeeds MS milliseconds late).
//!
//! Example: `RESTOCK_FAULTS='put@tables/:2:503,get:10+:delay=50'`.
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions,
    PutPayload, PutResult, Result,
};

pub const ENV: &str = "RESTOCK_FAULTS";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Put,
    CPut,
    Get,
    List,
    Delete,
}

#[derive(Debug, Clone, PartialEq)]
enum Effect {
    Fail,
    Unavailable,
    Drop,
    Denied,
    Delay(u64),
}

#[derive(Debug)]
struct Rule {
    op: Op,
    path: Option<String>,
    nth: u64,
    and_later: bool,
    effect: Effect,
    seen: AtomicU64,
}

/// Parse `RESTOCK_FAULTS`; a malformed rule is a clear error (a test that injects nothing
/// because of a typo would prove nothing).
fn parse(spec: &str) -> std::result::Result<Vec<Rule>, String> {
    spec.split(',').filter(|r| !r.trim().is_empty()).map(|r| parse_rule(r.trim())).collect()
}

fn parse_rule(r: &str) -> std::result::Result<Rule, String> {
    let bad = || format!("{ENV}: `{r}` is not OP[@PATH]:N[+]:EFFECT (see src/storage/faults.rs)");
    let mut parts = r.splitn(3, ':');
    let (target, n, effect) = (parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?);
    let (op, path) = match target.split_once('@') {
        Some((op, path)) => (op, Some(path.to_string())),
        None => (target, None),
    };
    let op = match op {
        "put" => Op::Put,
        "cput" => Op::CPut,
        "get" => Op::Get,
        "list" => Op::List,
        "delete" => Op::Delete,
        _ => return Err(bad()),
    };
    let (n, and_later) = match n.strip_suffix('+') {
        Some(n) => (n, true),
        None => (n, false),
    };
    let nth: u64 = n.parse().map_err(|_| bad())?;
    let effect = match effect {
        "fail" => Effect::Fail,
        "503" => Effect::Unavailable,
        "drop" => Effect::Drop,
        "denied" => Effect::Denied,
        d => Effect::Delay(d.strip_prefix("delay=").and_then(|ms| ms.parse().ok()).ok_or_else(bad)?),
    };
    Ok(Rule { op, path, nth, and_later, effect, seen: AtomicU64::new(0) })
}

/// The store, wrapped if `RESTOCK_FAULTS` is set. The rules (and their call counts) are shared
/// by every store of the process, so "the 3rd put" means the process's 3rd put.
pub fn wrap(inner: Arc<dyn ObjectStore>) -> anyhow::Result<Arc<dyn ObjectStore>> {
    static RULES: std::sync::OnceLock<std::result::Result<Option<Arc<Vec<Rule>>>, String>> = std::sync::OnceLock::new();
    let rules = RULES.get_or_init(|| match std::env::var(ENV) {
        Ok(spec) if !spec.trim().is_empty() => parse(&spec).map(|r| Some(Arc::new(r))),
        _ => Ok(None),
    });
    match rules {
        Ok(Some(rules)) => Ok(Arc::new(FaultStore { inner, rules: rules.clone() })),
        Ok(None) => Ok(inner),
        Err(e) => Err(anyhow::Error::msg(e.clone())),
    }
}

#[derive(Debug)]
pub struct FaultStore {
    inner: Arc<dyn ObjectStore>,
    rules: Arc<Vec<Rule>>,
}

impl fmt::Display for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultStore({})", self.inner)
    }
}

impl FaultStore {
    /// Count the call against every matching rule; the first rule that fires decides.
    async fn check(&self, op: Op, path: &Path) -> Result<()> {
        check(&self.rules, op, path).await
    }
}

async fn check(rules: &[Rule], op: Op, path: &Path) -> Result<()> {
    let mut fired = None;
    for rule in rules.iter().filter(|r| r.op == op && r.path.as_ref().is_none_or(|p| path.as_ref().contains(p.as_str()))) {
        let n = rule.seen.fetch_add(1, Ordering::SeqCst) + 1;
        if fired.is_none() && (n == rule.nth || rule.and_later && n > rule.nth) {
            fired = Some(rule.effect.clone());
        }
    }
    let generic = |source: Box<dyn std::error::Error + Send + Sync>| object_store::Error::Generic { store: "fault-injection", source };
    match fired {
        None => Ok(()),
        Some(Effect::Delay(ms)) => {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            Ok(())
        }
        Some(Effect::Fail) => Err(generic(Box::new(std::io::Error::other(format!("injected I/O failure on {path}"))))),
        Some(Effect::Unavailable) => Err(generic(format!("injected 503 Service Unavailable on {path}").into())),
        Some(Effect::Drop) => Err(generic(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            format!("injected dropped connection on {path}"),
        )))),
        Some(Effect::Denied) => Err(generic(Box::new(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("injected permission denied on {path}"),
        )))),
    }
}

#[async_trait]
impl ObjectStore for FaultStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        let op = if matches!(opts.mode, PutMode::Overwrite) { Op::Put } else { Op::CPut };
        self.check(op, location).await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.check(Op::Put, location).await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.check(Op::Get, location).await?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.check(Op::Get, location).await?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        let rules = self.rules.clone();
        let checked = locations
            .then(move |loc| {
                let rules = rules.clone();
                async move {
                    let loc = loc?;
                    check(&rules, Op::Delete, &loc).await?;
                    Ok(loc)
                }
            })
            .boxed();
        self.inner.delete_stream(checked)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let rules = self.rules.clone();
        let p = prefix.cloned().unwrap_or_default();
        let mut inner = Some(self.inner.list(prefix));
        futures::stream::once(async move { check(&rules, Op::List, &p).await })
            .flat_map(move |r| match (r, inner.take()) {
                (Ok(()), Some(listing)) => listing,
                (Ok(()), None) => futures::stream::empty().boxed(),
                (Err(e), _) => futures::stream::once(async move { Err(e) }).boxed(),
            })
            .boxed()
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.check(Op::List, &prefix.cloned().unwrap_or_default()).await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.check(Op::Put, to).await?;
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_typos_are_refused() {
        let r = parse("put@tables/:2:503, get:10+:delay=50,cput:1:drop").unwrap();
        assert_eq!(
            (r[0].op, r[0].path.as_deref(), r[0].nth, r[0].and_later, &r[0].effect),
            (Op::Put, Some("tables/"), 2, false, &Effect::Unavailable)
        );
        assert_eq!((r[1].op, r[1].nth, r[1].and_later, &r[1].effect), (Op::Get, 10, true, &Effect::Delay(50)));
        assert_eq!((r[2].op, &r[2].effect), (Op::CPut, &Effect::Drop));
        assert!(parse("pu:1:fail").is_err());
        assert!(parse("put:x:fail").is_err());
        assert!(parse("put:1:explode").is_err());
    }

    #[tokio::test]
    async fn the_nth_matching_call_fails() {
        let rules = parse("put@tables/:2+:503").unwrap();
        let t = Path::from("lake/tables/a/part-1.parquet");
        assert!(check(&rules, Op::Put, &Path::from("lake/raw/x")).await.is_ok(), "other paths do not count");
        assert!(check(&rules, Op::Put, &t).await.is_ok());
        let e = check(&rules, Op::Put, &t).await.unwrap_err().to_string();
        assert!(e.contains("503"), "{e}");
        assert!(check(&rules, Op::Put, &t).await.is_err(), "2+ keeps failing");
        assert!(check(&rules, Op::Get, &t).await.is_ok());
    }
}
