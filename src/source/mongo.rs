//! A live MongoDB server through the official driver.
//!
//! Each mapping's collection is read in `_id` order with a batch size,
//! asking only for the fields the plan uses and letting the server apply the
//! mapping's filter where it can, so a run can continue after the last `_id`
//! a checkpoint recorded. Collections are listed with the `listCollections`
//! command (not the typed helper) so that wire-compatible servers work too.

use std::time::Duration;

use bson::{Bson, Document, doc};
use mongodb::options::ClientOptions;
use mongodb::{Client, Collection, Cursor};

use super::{DocStream, Position, SourceError, SourceItem};
use crate::pg::target::redact;
use crate::plan::{FilterTest, MappingPlan};
use crate::value::path::Segment;

#[derive(Debug, Clone)]
pub struct MongoSource {
    uri: String,
    client: Client,
    pub database: String,
    pub collections: Vec<String>,
    /// Each collection's UUID, where the server reports one.
    uuids: std::collections::BTreeMap<String, String>,
}

/// A driver error in words: a server that did not answer is "cannot reach
/// MongoDB at host:port: connection refused (gave up after 5 s)", not the
/// driver's topology dump; other errors as the driver says them.
fn unreachable_reason(e: &mongodb::error::Error, hosts: &[String], wait: u64) -> String {
    if !matches!(*e.kind, mongodb::error::ErrorKind::ServerSelection { .. }) {
        return e.to_string();
    }
    let text = e.to_string();
    let cause = text
        .split("I/O error: ")
        .nth(1)
        .map(|rest| rest.split([',', '(']).next().unwrap_or(rest).trim().to_lowercase())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "no server answered".to_string());
    format!("cannot reach MongoDB at {}: {cause} (gave up after {wait} s)", hosts.join(", "))
}

impl MongoSource {
    pub async fn connect(uri: &str, database: Option<&str>) -> Result<MongoSource, SourceError> {
        let err = |reason: String| SourceError::Mongo { uri: redact(uri), reason };
        let mut opts = ClientOptions::parse(uri).await.map_err(|e| err(e.to_string()))?;
        // Fail in seconds, not the driver's 30, when the server is not there.
        opts.server_selection_timeout.get_or_insert(Duration::from_secs(5));
        // A busy server may take a while to answer the driver's heartbeat
        // (a single-threaded wire-compatible one, under several readers):
        // waiting for it is no reason to break the reads. An unreachable
        // server still fails after the server selection timeout above.
        opts.connect_timeout.get_or_insert(Duration::from_secs(30));
        opts.app_name.get_or_insert("finlit-map".to_string());
        let database = database
            .map(str::to_string)
            .or_else(|| opts.default_database.clone())
            .ok_or_else(|| err("no database: put it in the URI (mongodb://host/finlit) or pass --source-db".into()))?;
        let hosts: Vec<String> = opts.hosts.iter().map(ToString::to_string).collect();
        let wait = opts.server_selection_timeout.unwrap_or_default().as_secs();
        let client = Client::with_options(opts).map_err(|e| err(e.to_string()))?;
        let reply = client
            .database(&database)
            .run_command(doc! { "listCollections": 1 })
            .await
            .map_err(|e| err(unreachable_reason(&e, &hosts, wait)))?;
        let batch = reply
            .get_document("cursor")
            .and_then(|c| c.get_array("firstBatch"))
            .map_err(|e| err(format!("unexpected listCollections reply: {e}")))?;
        let mut collections = Vec::new();
        let mut uuids = std::collections::BTreeMap::new();
        for c in batch.iter().filter_map(Bson::as_document) {
            let Ok(name) = c.get_str("name") else { continue };
            if name.starts_with("system.") {
                continue;
            }
            if let Some(Bson::Binary(b)) = c.get_document("info").ok().and_then(|i| i.get("uuid")) {
                let hex: String = b.bytes.iter().map(|x| format!("{x:02x}")).collect();
                uuids.insert(name.to_string(), format!("uuid {hex}"));
            }
            collections.push(name.to_string());
        }
        collections.sort();
        Ok(MongoSource { uri: uri.to_string(), client, database, collections, uuids })
    }

    pub(super) fn database_handle(&self) -> mongodb::Database {
        self.client.database(&self.database)
    }

    fn collection(&self, name: &str) -> Collection<Document> {
        self.client.database(&self.database).collection(name)
    }

    fn err(&self, e: impl std::fmt::Display) -> SourceError {
        SourceError::Mongo { uri: redact(&self.uri), reason: e.to_string() }
    }

    pub fn uuid(&self, collection: &str) -> Option<String> {
        self.uuids.get(collection).cloned()
    }

    /// The collection's size as its metadata says (no scan).
    pub async fn estimated_count(&self, collection: &str) -> Result<u64, SourceError> {
        self.collection(collection).estimated_document_count().await.map_err(|e| self.err(e))
    }

    pub async fn count(&self, collection: &str, filter: &Document) -> Result<u64, SourceError> {
        self.collection(collection).count_documents(filter.clone()).await.map_err(|e| self.err(e))
    }

    /// The collection in ranges of about `per_range` documents: bounds are
    /// `_id`s of a random sample (`$sample`), in the order MongoDB's range
    /// filters compare them. One range when the collection is small, when
    /// its `_id`s are of several types or of a type without a plain order,
    /// when the server cannot sample, or (unless `always`) when its plan for
    /// an `_id` range is a scan of the collection (said in the log).
    pub async fn ranges(
        &self,
        collection: &str,
        per_range: u64,
        always: bool,
    ) -> Result<Vec<super::Range>, SourceError> {
        let docs = self.estimated_count(collection).await.unwrap_or(0);
        let parts = docs.div_ceil(per_range.max(1));
        if parts < 2 {
            return Ok(vec![super::Range::whole()]);
        }
        // Ranges are worth reading apart only where the server finds one
        // from its `_id` index: a server that scans the collection for each
        // (nx-27017 does) reads it once per range instead of once. Asked
        // before sampling, which such a server pays for with a scan too.
        if !always {
            let first = self.collection(collection).find_one(doc! {}).projection(doc! { "_id": 1 }).await;
            let id = first.ok().flatten().and_then(|mut d| d.remove("_id"));
            if !matches!(&id, Some(id) if self.indexed_range(collection, id, id).await) {
                tracing::info!(collection, "the server scans the collection for an `_id` range: one reader");
                return Ok(vec![super::Range::whole()]);
            }
        }
        // Enough sampled ids per range that the bounds land near the quantiles.
        let size = (parts * 32).min(docs).min(100_000) as i64;
        let pipeline = vec![doc! { "$sample": { "size": size } }, doc! { "$project": { "_id": 1 } }];
        let sampled: Result<Vec<Bson>, mongodb::error::Error> = async {
            use futures::TryStreamExt;
            let cursor = self.collection(collection).aggregate(pipeline).await?;
            let docs: Vec<Document> = cursor.try_collect().await?;
            Ok(docs.into_iter().filter_map(|mut d| d.remove("_id")).collect())
        }
        .await;
        let mut ids = match sampled {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(collection, "the server cannot sample `_id`s ({e}): one reader for the collection");
                return Ok(vec![super::Range::whole()]);
            }
        };
        // The bounds are put in order here, as MongoDB compares `_id`s in
        // the range filters, not as the server sorts them (wire-compatible
        // servers sort numbers as text). Bounds of one type only, of a type
        // whose order is plain: a range must never overlap the next.
        let Some(order) = ids
            .first()
            .and_then(plain_order)
            .filter(|_| ids.iter().all(|id| plain_order(id).is_some() && bracket(id) == bracket(&ids[0])))
        else {
            tracing::info!(collection, "`_id`s of several or unordered types: one reader for the collection");
            return Ok(vec![super::Range::whole()]);
        };
        ids.sort_by(order);
        ids.dedup_by(|a, b| order(a, b) == std::cmp::Ordering::Equal);
        let mut cuts: Vec<Bson> = Vec::new();
        for i in 1..parts {
            let Some(id) = ids.get((i as usize * ids.len()) / parts as usize) else { continue };
            // Equal neighbours would make an empty range.
            if cuts.last().is_none_or(|last| order(last, id) == std::cmp::Ordering::Less) {
                cuts.push(id.clone());
            }
        }
        Ok(super::Range::between(
            cuts.into_iter().map(|id| Position::AfterId { id: id.into_relaxed_extjson() }).collect(),
        ))
    }
}

impl MongoSource {
    /// Whether the server's plan for an `_id` range uses an index (its
    /// `explain` names an index scan stage); `false` when it cannot say.
    async fn indexed_range(&self, collection: &str, lo: &Bson, hi: &Bson) -> bool {
        let cmd = doc! {
            "explain": { "find": collection, "filter": { "_id": { "$gt": lo.clone(), "$lte": hi.clone() } } },
            "verbosity": "queryPlanner",
        };
        match self.database_handle().run_command(cmd).await {
            Ok(plan) => {
                let text = Bson::Document(plan).into_relaxed_extjson().to_string();
                ["IXSCAN", "IDHACK", "EXPRESS_IXSCAN", "CLUSTERED_IXSCAN"].iter().any(|s| text.contains(s))
            }
            Err(e) => {
                tracing::info!(collection, "explain failed ({e})");
                false
            }
        }
    }
}

/// The server-side part of a mapping's filter: conditions on plain dotted
/// paths. The engine applies the whole filter again to what arrives.
pub fn pushdown(m: &MappingPlan) -> Document {
    let mut and = Vec::new();
    for f in &m.filter {
        let Some(segs) = f.path.segments_for_query() else { continue };
        let path: Vec<String> = segs
            .iter()
            .map(|s| match s {
                Segment::Key(k) => k.clone(),
                Segment::Index(i) => i.to_string(),
            })
            .collect();
        let path = path.join(".");
        let value = |b: &bson::RawBson| Bson::try_from(b.clone()).unwrap_or(Bson::Null);
        let cond = match &f.test {
            FilterTest::Equals(v) => doc! { &path: value(v) },
            FilterTest::NotEquals(v) => doc! { &path: { "$ne": value(v) } },
            FilterTest::In(vs) => doc! { &path: { "$in": vs.iter().map(value).collect::<Vec<_>>() } },
            FilterTest::NotIn(vs) => doc! { &path: { "$nin": vs.iter().map(value).collect::<Vec<_>>() } },
            FilterTest::Exists(b) => doc! { &path: { "$exists": *b } },
            // Not sent: wire-compatible servers disagree on `$type`; the engine tests it.
            FilterTest::Type(_) => continue,
        };
        and.push(Bson::Document(cond));
    }
    if and.is_empty() {
        Document::new()
    } else {
        doc! { "$and": and }
    }
}

/// MongoDB's canonical order of BSON types, as `_id` sorts: brackets of
/// `$type` names whose values compare with each other (`$gt` never crosses
/// a bracket). Arrays, regular expressions and `undefined` cannot be an
/// `_id`, but are listed so the order is complete.
const TYPE_ORDER: &[&[&str]] = &[
    &["minKey"],
    &["undefined", "null"],
    &["int", "long", "double", "decimal"],
    &["symbol", "string"],
    &["object"],
    &["array"],
    &["binData"],
    &["objectId"],
    &["bool"],
    &["date"],
    &["timestamp"],
    &["regex"],
    &["dbPointer"],
    &["javascript"],
    &["javascriptWithScope"],
    &["maxKey"],
];

/// The bracket of [`TYPE_ORDER`] a value belongs to.
fn bracket(v: &Bson) -> usize {
    match v {
        Bson::MinKey => 0,
        Bson::Undefined | Bson::Null => 1,
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => 2,
        Bson::Symbol(_) | Bson::String(_) => 3,
        Bson::Document(_) => 4,
        Bson::Array(_) => 5,
        Bson::Binary(_) => 6,
        Bson::ObjectId(_) => 7,
        Bson::Boolean(_) => 8,
        Bson::DateTime(_) => 9,
        Bson::Timestamp(_) => 10,
        Bson::RegularExpression(_) => 11,
        Bson::DbPointer(_) => 12,
        Bson::JavaScriptCode(_) => 13,
        Bson::JavaScriptCodeWithScope(_) => 14,
        Bson::MaxKey => 15,
    }
}

/// Every document whose `_id` sorts after `id`: greater within its type
/// bracket (`$gt` compares only there), or of any later bracket. One `$type`
/// per clause, which wire-compatible servers understand too.
fn after_id(id: &Bson) -> Document {
    let mut or = vec![Bson::Document(doc! { "_id": { "$gt": id.clone() } })];
    for names in &TYPE_ORDER[bracket(id) + 1..] {
        for name in *names {
            or.push(Bson::Document(doc! { "_id": { "$type": *name } }));
        }
    }
    doc! { "$or": or }
}

/// How MongoDB orders `_id`s of this value's type, for the types whose
/// order is plain: numbers by value (not decimals, not NaN), strings by
/// their bytes (the simple collation), ObjectIds by their bytes, dates by
/// time. `None` for any other type (their ranges are not cut).
fn plain_order(id: &Bson) -> Option<fn(&Bson, &Bson) -> std::cmp::Ordering> {
    fn number(b: &Bson) -> f64 {
        match b {
            Bson::Int32(i) => f64::from(*i),
            Bson::Int64(i) => *i as f64,
            Bson::Double(d) => *d,
            _ => f64::NAN,
        }
    }
    match id {
        // Integers past 2^53 do not survive as doubles: such bounds are not cut between.
        Bson::Int32(_) => Some(|a, b| number(a).total_cmp(&number(b))),
        Bson::Int64(i) if i.unsigned_abs() < (1 << 53) => Some(|a, b| number(a).total_cmp(&number(b))),
        Bson::Double(d) if d.is_finite() => Some(|a, b| number(a).total_cmp(&number(b))),
        Bson::String(_) => Some(|a, b| match (a, b) {
            (Bson::String(x), Bson::String(y)) => x.as_bytes().cmp(y.as_bytes()),
            _ => std::cmp::Ordering::Equal,
        }),
        Bson::ObjectId(_) => Some(|a, b| match (a, b) {
            (Bson::ObjectId(x), Bson::ObjectId(y)) => x.bytes().cmp(&y.bytes()),
            _ => std::cmp::Ordering::Equal,
        }),
        Bson::DateTime(_) => Some(|a, b| match (a, b) {
            (Bson::DateTime(x), Bson::DateTime(y)) => x.cmp(y),
            _ => std::cmp::Ordering::Equal,
        }),
        _ => None,
    }
}

/// Every document whose `_id` sorts at or before `id`: the complement of
/// [`after_id`], so a range `(a, b]` and the next `(b, c]` never overlap.
fn up_to_id(id: &Bson) -> Document {
    let mut or = vec![Bson::Document(doc! { "_id": { "$lte": id.clone() } })];
    for names in &TYPE_ORDER[..bracket(id)] {
        for name in *names {
            or.push(Bson::Document(doc! { "_id": { "$type": *name } }));
        }
    }
    doc! { "$or": or }
}

/// A checkpoint's or a range end's `_id`, back from relaxed extended JSON.
fn position_id(s: &MongoSource, p: Option<&Position>) -> Result<Option<Bson>, SourceError> {
    match p {
        Some(Position::AfterId { id }) if !id.is_null() => {
            Bson::try_from(id.clone()).map(Some).map_err(|e| s.err(format!("bad checkpoint: {e}")))
        }
        _ => Ok(None),
    }
}

/// Whether the mapping reads every field a document of the collection has
/// (judged by its first document): a projection then saves nothing, and
/// costs the server work (nx-27017 reads 200,000 documents a third slower
/// with one).
fn reads_everything(s: &MongoSource, collection: &str, fields: &[String], rt: &tokio::runtime::Handle) -> bool {
    let coll = s.client.database(&s.database).collection::<bson::RawDocumentBuf>(collection);
    match rt.block_on(async { coll.find_one(doc! {}).await }) {
        Ok(Some(d)) => d.iter().all(|e| e.is_ok_and(|(k, _)| fields.iter().any(|f| f.as_str() == k.as_str()))),
        _ => false,
    }
}

/// One collection read in `_id` order from a position.
pub struct MongoStream {
    cursor: Cursor<Document>,
    rt: tokio::runtime::Handle,
    uri: String,
    last_id: Option<Bson>,
    start: Option<Position>,
}

impl MongoStream {
    pub fn open(
        s: &MongoSource,
        m: &MappingPlan,
        from: Option<&Position>,
        end: Option<&Position>,
        batch: usize,
        rt: tokio::runtime::Handle,
    ) -> Result<MongoStream, SourceError> {
        let mut and: Vec<Bson> = Vec::new();
        let pushed = pushdown(m);
        if !pushed.is_empty() {
            and.push(Bson::Document(pushed));
        }
        match (position_id(s, from)?, position_id(s, end)?) {
            // Both bounds of one type: `$gt`/`$lte` compare only within a
            // type, which is exactly the range, and a plain range on `_id`
            // is one an index serves (on any server).
            (Some(lo), Some(hi)) if bracket(&lo) == bracket(&hi) => {
                and.push(Bson::Document(doc! { "_id": { "$gt": lo, "$lte": hi } }));
            }
            (lo, hi) => {
                if let Some(id) = lo {
                    and.push(Bson::Document(after_id(&id)));
                }
                if let Some(id) = hi {
                    and.push(Bson::Document(up_to_id(&id)));
                }
            }
        }
        let filter = match and.len() {
            0 => Document::new(),
            1 => match and.pop() {
                Some(Bson::Document(d)) => d,
                _ => Document::new(),
            },
            _ => doc! { "$and": and },
        };
        let coll = s.collection(&m.source);
        let mut find = coll.find(filter).sort(doc! { "_id": 1 }).batch_size(batch.clamp(1, 100_000) as u32);
        if let Some(fields) = m.fields.as_ref().filter(|f| !reads_everything(s, &m.source, f, &rt)) {
            let mut projection = Document::new();
            for f in fields {
                projection.insert(f, 1);
            }
            find = find.projection(projection);
        }
        let cursor = rt.block_on(async { find.await }).map_err(|e| s.err(e))?;
        Ok(MongoStream { cursor, rt, uri: redact(&s.uri), last_id: None, start: from.cloned() })
    }
}

impl DocStream for MongoStream {
    fn next_doc(&mut self) -> Option<Result<SourceItem, SourceError>> {
        let err =
            |e: mongodb::error::Error, uri: &str| SourceError::Mongo { uri: uri.to_string(), reason: e.to_string() };
        match self.rt.block_on(self.cursor.advance()) {
            Ok(true) => {
                let raw = self.cursor.current();
                if let Ok(Some(id)) = raw.get("_id") {
                    self.last_id = Bson::try_from(id).ok();
                }
                Some(Ok(SourceItem::from_bson(raw.to_owned())))
            }
            Ok(false) => None,
            Err(e) => Some(Err(err(e, &self.uri))),
        }
    }

    fn position(&self) -> Position {
        match &self.last_id {
            Some(id) => Position::AfterId { id: id.clone().into_relaxed_extjson() },
            None => self.start.clone().unwrap_or(Position::AfterId { id: serde_json::Value::Null }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn later_types(id: Bson) -> Vec<String> {
        let f = after_id(&id);
        let or = f.get_array("$or").unwrap();
        assert_eq!(or[0].as_document().unwrap().get_document("_id").unwrap().get("$gt"), Some(&id));
        or[1..]
            .iter()
            .map(|c| c.as_document().unwrap().get_document("_id").unwrap().get_str("$type").unwrap().to_string())
            .collect()
    }

    /// A checkpoint at a string `_id` still reads every ObjectId, date,
    /// boolean… after it, as MongoDB's `_id` order puts them later.
    #[test]
    fn resuming_after_an_id_reads_every_later_type() {
        let after_string = later_types(Bson::String("m".into()));
        for t in ["object", "binData", "objectId", "bool", "date", "timestamp", "maxKey"] {
            assert!(after_string.iter().any(|x| x == t), "{t} missing after a string: {after_string:?}");
        }
        for t in ["string", "symbol", "int", "double", "null", "minKey"] {
            assert!(!after_string.iter().any(|x| x == t), "{t} read again after a string");
        }
        // Numbers are one bracket: `$gt: 2.5` already covers ints, longs and decimals.
        let after_number = later_types(Bson::Double(2.5));
        assert_eq!(after_number[..2], ["symbol".to_string(), "string".to_string()]);
        assert!(later_types(Bson::MaxKey).is_empty());
        assert_eq!(later_types(Bson::MinKey).len(), TYPE_ORDER[1..].iter().map(|b| b.len()).sum::<usize>());
        // Every bracket is reachable: the table and `bracket` agree.
        assert_eq!(bracket(&Bson::MaxKey), TYPE_ORDER.len() - 1);
    }
}
