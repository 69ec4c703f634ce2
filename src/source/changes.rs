//! A live server's change streams: one per collection the mappings read,
//! each resumable from a token, for `run` to record where they stand before
//! a snapshot and for `sync` to follow them from there.
//!
//! A changed document is read again by `_id` ([`MongoSource::current_documents`],
//! one query per collection and batch) rather than taken from the event:
//! what `fullDocument: "updateLookup"` does per event, and right as well on
//! servers whose event documents are not faithful (nx-27017 wraps the
//! ObjectIds inside them).
//!
//! Driven through the `aggregate` and `getMore` commands themselves rather
//! than the driver's typed stream, so that replies are read leniently (some
//! wire-compatible servers send a cursor id as int32) and one stream per
//! collection works on every server that has change streams. Per collection
//! rather than per database for the same reason; the order between
//! collections is not needed: `sync` makes a row whose parent has not
//! arrived yet wait for it.
//!
//! Knows the MongoDB commands and BSON; nothing of mappings or PostgreSQL.

use std::collections::{BTreeMap, HashMap};

use bson::{Bson, Document, RawDocumentBuf, doc};
use mongodb::Database;

use super::{MongoSource, SourceItem};

/// What a collection's change stream says about one document.
#[derive(Debug)]
pub struct ChangeEvent {
    pub collection: String,
    /// `insert`, `update`, `replace` or `delete`.
    pub operation: String,
    /// The document's `_id`, from `documentKey` (which a server makes authoritative).
    pub id: Bson,
    /// When the server applied the change.
    pub cluster_time: Option<ClusterTime>,
}

/// A change's time on the server: seconds since 1970 and how a person reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterTime {
    pub seconds: f64,
    pub text: String,
}

impl ClusterTime {
    /// A `Timestamp` (what MongoDB sends) or a date (what some
    /// wire-compatible servers send).
    fn of(v: &Bson) -> Option<ClusterTime> {
        let (seconds, millis) = match v {
            Bson::Timestamp(t) => (f64::from(t.time), i64::from(t.time) * 1000),
            Bson::DateTime(d) => (d.timestamp_millis() as f64 / 1000.0, d.timestamp_millis()),
            _ => return None,
        };
        let text = chrono::DateTime::from_timestamp_millis(millis)
            .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .unwrap_or_default();
        Some(ClusterTime { seconds, text })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(
        "the change stream of `{collection}` cannot resume from the recorded position: the server no longer has it (its oplog has rolled past it) ({reason}).\n  Take a new snapshot: `finlit-map run` from the live server records a new start point; then sync again"
    )]
    HistoryLost { collection: String, reason: String },
    #[error(
        "collection `{collection}` was {what} at {at} (a `{operation}` event): its rows cannot be followed further.\n  Take a new snapshot with `finlit-map run`, then sync again"
    )]
    Invalidated { collection: String, operation: String, what: &'static str, at: String },
    #[error("MongoDB change stream of `{collection}`: {reason}")]
    Mongo { collection: String, reason: String },
}

/// How long a `getMore` waits on a stream with no new event, in ms.
const QUIET_WAIT_MS: i64 = 10;

/// MongoDB's codes for a resume point the oplog no longer holds.
const HISTORY_LOST: [i32; 2] = [286, 280];

fn classify(collection: &str, e: &mongodb::error::Error) -> ChangeError {
    let code = match &*e.kind {
        mongodb::error::ErrorKind::Command(c) => Some(c.code),
        _ => None,
    };
    let reason = e.to_string();
    if history_lost(code, &reason) {
        ChangeError::HistoryLost { collection: collection.to_string(), reason }
    } else {
        ChangeError::Mongo { collection: collection.to_string(), reason }
    }
}

/// Whether a server error says the resume point is gone: by its code, or
/// (servers older than the code) by MongoDB's words for it.
fn history_lost(code: Option<i32>, message: &str) -> bool {
    code.is_some_and(|c| HISTORY_LOST.contains(&c))
        || message.contains("no longer be in the oplog")
        || message.contains("ChangeStreamHistoryLost")
}

/// A cursor id as the server sent it (int64, or int32 from some servers).
fn cursor_id(cursor: &Document) -> i64 {
    match cursor.get("id") {
        Some(Bson::Int64(i)) => *i,
        Some(Bson::Int32(i)) => i64::from(*i),
        _ => 0,
    }
}

fn stage(resume: Option<&Bson>) -> Document {
    let mut cs = Document::new();
    if let Some(t) = resume {
        cs.insert("resumeAfter", t.clone());
    }
    doc! { "$changeStream": cs }
}

impl MongoSource {
    /// Where each collection's change stream stands now, by collection, as
    /// extended JSON: recorded before a snapshot is read, so that every
    /// write during or after it can be followed from there (`sync`).
    pub async fn change_stream_positions(
        &self,
        collections: &[String],
    ) -> Result<BTreeMap<String, serde_json::Value>, String> {
        let db = self.database_handle();
        let mut out = BTreeMap::new();
        for c in collections {
            let reply = db
                .run_command(doc! { "aggregate": c, "pipeline": [stage(None)], "cursor": {} })
                .await
                .map_err(|e| format!("`{c}`: {e}"))?;
            let cursor = reply.get_document("cursor").map_err(|e| format!("`{c}`: unexpected reply: {e}"))?;
            let token =
                token_of(cursor, "firstBatch").ok_or_else(|| format!("`{c}`: the server gave no resume token"))?;
            let id = cursor_id(cursor);
            if id != 0 {
                // Only its position was wanted: close the stream.
                let _ = db.run_command(doc! { "killCursors": c, "cursors": [id] }).await;
            }
            out.insert(c.clone(), token.into_canonical_extjson());
        }
        Ok(out)
    }

    /// Opens every collection's stream from its token.
    pub async fn follow(&self, from: &BTreeMap<String, Bson>, batch: usize) -> Result<ChangeStreams, ChangeError> {
        let db = self.database_handle();
        let mut streams = Vec::new();
        for (collection, token) in from {
            let reply = db
                .run_command(doc! {
                    "aggregate": collection, "pipeline": [stage(Some(token))], "cursor": { "batchSize": 0 }
                })
                .await
                .map_err(|e| classify(collection, &e))?;
            let cursor = reply.get_document("cursor").map_err(|e| ChangeError::Mongo {
                collection: collection.clone(),
                reason: format!("unexpected reply: {e}"),
            })?;
            streams.push(Stream { collection: collection.clone(), id: cursor_id(cursor), token: token.clone() });
        }
        Ok(ChangeStreams { db, streams, batch: batch.clamp(1, 10_000), next: 0 })
    }
}

/// The token a reply leaves a stream at: the server's post-batch token, or
/// the last event's own.
fn token_of(cursor: &Document, batch: &str) -> Option<Bson> {
    cursor.get("postBatchResumeToken").cloned().or_else(|| {
        let b = cursor.get_array(batch).ok()?;
        b.last()?.as_document()?.get("_id").cloned()
    })
}

struct Stream {
    collection: String,
    id: i64,
    token: Bson,
}

/// Every followed collection's stream.
pub struct ChangeStreams {
    db: Database,
    streams: Vec<Stream>,
    batch: usize,
    /// The stream asked first next time, so none is starved.
    next: usize,
}

impl ChangeStreams {
    /// Up to `max` events, asking each stream in turn once; an empty result
    /// means no stream had anything new (caught up).
    pub async fn poll(&mut self, max: usize) -> Result<Vec<ChangeEvent>, ChangeError> {
        let mut out = Vec::new();
        let n = self.streams.len();
        for k in 0..n {
            let room = max.saturating_sub(out.len()).min(self.batch);
            if room == 0 {
                break;
            }
            let s = &mut self.streams[(self.next + k) % n];
            // A server waits this long on a stream with nothing new (its
            // default is a second): short, or every quiet collection would
            // slow each batch of a busy one. The caller sleeps when all are quiet.
            let reply = self
                .db
                .run_command(doc! {
                    "getMore": s.id, "collection": &s.collection, "batchSize": room as i64, "maxTimeMS": QUIET_WAIT_MS
                })
                .await
                .map_err(|e| classify(&s.collection, &e))?;
            let cursor = reply.get_document("cursor").map_err(|e| ChangeError::Mongo {
                collection: s.collection.clone(),
                reason: format!("unexpected reply: {e}"),
            })?;
            for ev in cursor.get_array("nextBatch").map(|b| b.as_slice()).unwrap_or_default() {
                if let Some(e) = Bson::as_document(ev) {
                    if let Some(event) = event(&s.collection, e)? {
                        out.push(event);
                    }
                }
            }
            if let Some(t) = token_of(cursor, "nextBatch") {
                s.token = t;
            }
        }
        self.next = (self.next + 1) % n.max(1);
        Ok(out)
    }

    /// Where each stream stands after what `poll` returned.
    pub fn tokens(&self) -> BTreeMap<String, serde_json::Value> {
        self.streams.iter().map(|s| (s.collection.clone(), s.token.clone().into_canonical_extjson())).collect()
    }

    /// Closes the server's cursors.
    pub async fn close(self) {
        for s in &self.streams {
            let _ = self.db.run_command(doc! { "killCursors": &s.collection, "cursors": [s.id] }).await;
        }
    }
}

/// One event of a stream: a document change, `None` for events that change
/// no document (an index built), or the error of one that ends the stream.
fn event(collection: &str, e: &Document) -> Result<Option<ChangeEvent>, ChangeError> {
    let operation = e.get_str("operationType").unwrap_or_default().to_string();
    let cluster_time = e.get("clusterTime").and_then(ClusterTime::of);
    let what = match operation.as_str() {
        "insert" | "update" | "replace" | "delete" => None,
        "drop" | "dropDatabase" => Some("dropped"),
        "rename" => Some("renamed"),
        "invalidate" => Some("invalidated"),
        _ => return Ok(None),
    };
    if let Some(what) = what {
        let at = cluster_time.map_or_else(|| "an unknown time".to_string(), |t| t.text);
        return Err(ChangeError::Invalidated { collection: collection.to_string(), operation, what, at });
    }
    let bad = |reason: &str| ChangeError::Mongo {
        collection: collection.to_string(),
        reason: format!("a `{operation}` event {reason}: {e}"),
    };
    let id = e
        .get_document("documentKey")
        .ok()
        .and_then(|k| k.get("_id"))
        .cloned()
        .ok_or_else(|| bad("has no documentKey._id"))?;
    Ok(Some(ChangeEvent { collection: collection.to_string(), operation, id, cluster_time }))
}

/// The one text of an `_id` (canonical extended JSON), to match documents to changes.
pub fn id_text(id: &Bson) -> String {
    id.clone().into_canonical_extjson().to_string()
}

impl MongoSource {
    /// The current version of each of these documents of a collection, by
    /// [`id_text`]; a document not there was deleted since.
    pub async fn current_documents(
        &self,
        collection: &str,
        ids: &[Bson],
    ) -> Result<HashMap<String, SourceItem>, ChangeError> {
        let mut out = HashMap::new();
        let coll = self.database_handle().collection::<RawDocumentBuf>(collection);
        let err =
            |e: mongodb::error::Error| ChangeError::Mongo { collection: collection.to_string(), reason: e.to_string() };
        for part in ids.chunks(1000) {
            let mut cursor = coll.find(doc! { "_id": { "$in": part.to_vec() } }).await.map_err(err)?;
            while cursor.advance().await.map_err(err)? {
                let raw = cursor.current();
                let Some(id) = raw.get("_id").ok().flatten().and_then(|v| Bson::try_from(v).ok()) else { continue };
                out.insert(id_text(&id), SourceItem::from_bson(raw.to_owned()));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resume_point_the_server_no_longer_has_is_told_apart() {
        let rows: [(Option<i32>, &str, bool); 5] = [
            (Some(286), "Executor error during getMore :: caused by :: ChangeStreamHistoryLost", true),
            (Some(280), "cannot resume stream", true),
            (
                None,
                "Resume of change stream was not possible, as the resume point may no longer be in the oplog.",
                true,
            ),
            (Some(11601), "operation was interrupted", false),
            (None, "connection refused", false),
        ];
        for (code, message, lost) in rows {
            assert_eq!(history_lost(code, message), lost, "{code:?} {message}");
        }
    }

    /// The `_id` is `documentKey`'s, whatever `fullDocument` says; events
    /// that change no document are skipped, those that end a stream stop it.
    #[test]
    fn events_take_the_id_from_the_document_key() {
        let oid = bson::oid::ObjectId::new();
        let e = doc! {
            "_id": { "_data": "x" }, "operationType": "update",
            "clusterTime": bson::Timestamp { time: 1_700_000_000, increment: 1 },
            "documentKey": { "_id": oid },
            "fullDocument": { "_id": { "wrapped": true }, "v": 1 },
        };
        let ev = event("c", &e).unwrap().unwrap();
        assert_eq!(ev.id, Bson::ObjectId(oid));
        assert_eq!(ev.operation, "update");
        assert_eq!(ev.cluster_time.unwrap().seconds, 1_700_000_000.0);
        let idx = doc! { "operationType": "createIndexes" };
        assert!(event("c", &idx).unwrap().is_none());
        let drop = doc! { "operationType": "drop", "clusterTime": bson::DateTime::from_millis(0) };
        let err = event("c", &drop).unwrap_err().to_string();
        assert!(err.contains("was dropped at 1970-01-01T00:00:00.000Z"), "{err}");
    }
}
