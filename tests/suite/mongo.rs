//! A MongoDB wire-protocol server for tests: nx-27017 (PyPI), from the
//! virtual environment `.ci/run` creates, on a free port, killed on drop.
//!
//! `FINLIT_NX27017` names the executable. Without it, `.ci/venv/bin/nx-27017`
//! is tried; when neither exists the live-source tests fail under `CI`
//! and otherwise print SKIPPED where it is seen (past the output capture).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bson::{Bson, Document, RawDocumentBuf};

pub struct MongoServer {
    pub port: u16,
    pub db_file: PathBuf,
    exe: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

fn executable() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("FINLIT_NX27017") {
        let p = PathBuf::from(p);
        assert!(p.exists(), "FINLIT_NX27017={} does not exist", p.display());
        return Some(p);
    }
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/venv/bin/nx-27017");
    default.exists().then_some(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl MongoServer {
    /// Starts a server, or `None` (with a note) when nx-27017 is not installed.
    pub fn start() -> Option<MongoServer> {
        let Some(exe) = executable() else {
            // In CI a missing server is a failure; elsewhere the skip is
            // written past the test harness's capture, so it is seen.
            let why = "nx-27017 not found (run .ci/run, or set FINLIT_NX27017)";
            assert!(std::env::var("CI").is_err(), "{why}: CI cannot skip the live-source tests");
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "SKIPPED a live-source test: {why}");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let mut s = MongoServer { port: free_port(), db_file: dir.path().join("nx.db"), exe, dir, child: None };
        s.restart();
        Some(s)
    }

    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/finlit", self.port)
    }

    /// Starts (again) on the same port and data file.
    pub fn restart(&mut self) {
        let child = Command::new(&self.exe)
            .args(["--db", self.db_file.to_str().unwrap(), "--port", &self.port.to_string()])
            .args(["--log-file", self.dir.path().join("nx.log").to_str().unwrap()])
            .args(["--pid-file", self.dir.path().join("nx.pid").to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nx-27017");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nx-27017 did not start on port {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Loads every `*.bson` of a dump; Decimal128 becomes double (nx-27017
    /// does not store Decimal128). Writes what it loaded to `dump_out`, so a
    /// file-source migration can read exactly the same documents.
    pub fn load(&self, dump: &Path, dump_out: &Path) {
        std::fs::create_dir_all(dump_out).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let client = rt.block_on(mongodb::Client::with_uri_str(self.uri())).unwrap();
        let db = client.database("finlit");
        for f in std::fs::read_dir(dump).unwrap() {
            let p = f.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let Some(coll) = name.strip_suffix(".bson") else { continue };
            let docs: Vec<Document> = read_bson(&p).into_iter().map(without_decimals).collect();
            let mut bytes = Vec::new();
            for d in &docs {
                bytes.extend(bson::serialize_to_vec(d).unwrap());
            }
            std::fs::write(dump_out.join(&name), bytes).unwrap();
            let c = db.collection::<Document>(coll);
            for batch in docs.chunks(500) {
                rt.block_on(async { c.insert_many(batch.to_vec()).await }).unwrap();
            }
        }
    }
}

impl Drop for MongoServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn read_bson(path: &Path) -> Vec<Document> {
    let bytes = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let raw = RawDocumentBuf::from_bytes(bytes[pos..pos + len].to_vec()).unwrap();
        out.push(Document::try_from(raw.as_ref()).unwrap());
        pos += len;
    }
    out
}

fn without_decimals(d: Document) -> Document {
    d.into_iter().map(|(k, v)| (k, convert(v))).collect()
}

fn convert(v: Bson) -> Bson {
    match v {
        Bson::Decimal128(d) => Bson::Double(d.to_string().parse().unwrap()),
        Bson::Document(d) => Bson::Document(without_decimals(d)),
        Bson::Array(a) => Bson::Array(a.into_iter().map(convert).collect()),
        other => other,
    }
}
