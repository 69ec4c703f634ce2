//! Writes a realistic FinLit dataset: N learners and every collection, with
//! consistent ObjectId references, in the shapes of docs/source-shapes.md.
//!
//! ```sh
//! cargo run --release --example generate -- --learners 200 --out /tmp/finlit-dump
//! cargo run --release --example generate -- --learners 200 --format json --out /tmp/finlit-json
//! cargo run --release --example generate -- --learners 50 --bad --out /tmp/finlit-bad
//! cargo run --release --example generate -- --learners 200000 --only learners --out /tmp/bench
//! ```
//!
//! `--bad` adds documents that must be rejected (a missing required field,
//! an int64 beyond INTEGER, a string over its VARCHAR, a fractional count, an
//! unparsable date, an interaction pointing at no learner). The same seed
//! always gives the same data.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use bson::oid::ObjectId;
use bson::{Bson, DateTime, Decimal128, Document, doc};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn float(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// A deterministic ObjectId: a timestamp in 2024 and a counter.
    fn oid(&mut self) -> ObjectId {
        let mut b = [0u8; 12];
        let ts = 1_704_067_200u32 + self.below(31_536_000) as u32;
        b[..4].copy_from_slice(&ts.to_be_bytes());
        b[4..].copy_from_slice(&self.next().to_be_bytes());
        ObjectId::from_bytes(b)
    }
}

const DAY: i64 = 86_400_000;
const JAN_2024: i64 = 1_704_067_200_000;

fn date(ms: i64) -> Bson {
    Bson::DateTime(DateTime::from_millis(ms))
}

fn midnight(ms: i64) -> i64 {
    ms - ms.rem_euclid(DAY)
}

fn dec(s: &str) -> Bson {
    Bson::Decimal128(Decimal128::from_str(s).expect("valid decimal"))
}

const FIRST: &[&str] = &[
    "Ana", "Luis", "Priya", "Wei", "Fatima", "Juan", "Olga", "Kwame", "Mei", "Diego", "Amina", "Ivan", "Sofia",
    "Arjun", "Nadia", "Tomás",
];
const LAST: &[&str] =
    &["García", "Patel", "Chen", "Okafor", "Nguyen", "Kowalski", "Hernández", "Singh", "Ali", "Rossi", "Kim", "Mensah"];
const LANGS: &[(&str, &str)] = &[
    ("Spanish", "Mexico"),
    ("Hindi", "India"),
    ("Mandarin", "China"),
    ("Vietnamese", "Vietnam"),
    ("Arabic", "Egypt"),
    ("Tagalog", "Philippines"),
    ("Polish", "Poland"),
    ("Yoruba", "Nigeria"),
    ("Portuguese", "Brazil"),
];
const STATUS: &[&str] = &["H1B", "F1", "Green Card", "Citizen", "Refugee", "DACA", "L1"];
const GOALS: &[&str] = &["save", "invest", "credit", "budget", "remit", "retire", "home", "debt"];
const VARIANTS: &[(&str, &str)] = &[
    ("MX", "¿Qué harías con 2,000 pesos?"),
    ("IN", "What would you do with ₹5,000?"),
    ("PH", "What would you do with ₱3,000?"),
    ("NG", "What would you do with ₦50,000?"),
    ("VN", "Bạn sẽ làm gì với 1.000.000 đồng?"),
];
const TZS: &[&str] = &["America/New_York", "America/Chicago", "America/Los_Angeles", "America/Denver"];
const DOMAINS: &[&str] = &["budgeting", "banking", "credit", "taxes", "investing", "remittances"];
const BLOOM: &[&str] = &["remember", "understand", "apply", "analyze", "evaluate", "Create"];
const COUNTRIES: &[&str] = &["mx", "IN", "cn", "VN", "eg", "PH", "pl", "NG", "br"];

struct Data {
    collections: Vec<(&'static str, Vec<Document>)>,
}

fn generate(learners: usize, bad: bool, seed: u64) -> Data {
    let mut r = Rng(seed);

    // Knowledge components: a tree per domain, children sometimes stored before parents.
    let mut kcs: Vec<Document> = Vec::new();
    let mut kc_ids: Vec<ObjectId> = Vec::new();
    for (d, domain) in DOMAINS.iter().enumerate() {
        let root = r.oid();
        let mut level: Vec<ObjectId> = vec![root];
        let mut nodes: Vec<(ObjectId, Option<ObjectId>, usize)> = vec![(root, None, 1)];
        for depth in 2..=3 {
            let mut next = Vec::new();
            for parent in &level {
                for _ in 0..(1 + r.below(3)) {
                    let id = r.oid();
                    nodes.push((id, Some(*parent), depth));
                    next.push(id);
                }
            }
            level = next;
        }
        // Store deepest first: children before their parents.
        nodes.reverse();
        for (i, (id, parent, depth)) in nodes.iter().enumerate() {
            let slug = format!("{domain}-{}-{}", depth, i);
            let mut kc = doc! {
                "_id": *id,
                "slug": if r.chance(10) { format!(" {} ", slug.to_uppercase()) } else { slug.clone() },
                "name": format!("{} topic {}", capitalize(domain), i + 1),
                "domain": *domain,
                "difficulty_tier": (*depth as i32 + r.below(2) as i32).min(5),
                "bloom_level": *r.pick(BLOOM),
                "estimated_minutes": 5 + r.below(40) as i32,
                "tags": [*domain, format!("tier{depth}")],
                "active": !r.chance(5),
                "created_at": date(JAN_2024 + d as i64 * DAY + i as i64 * 3_600_000),
            };
            if r.chance(80) {
                kc.insert("description", format!("What to know about {domain}, part {}.", i + 1));
            } else if r.chance(50) {
                kc.insert("description", "");
            }
            match parent {
                Some(p) => {
                    kc.insert("parent_id", *p);
                }
                None if r.chance(50) => {
                    kc.insert("parent_id", Bson::Null);
                }
                None => {}
            }
            if r.chance(60) {
                kc.insert("updated_at", date(JAN_2024 + 200 * DAY + r.below(100) as i64 * DAY));
            }
            kcs.push(kc);
            kc_ids.push(*id);
        }
    }
    // Prerequisites point at other skills (never at themselves).
    for i in 0..kcs.len() {
        if r.chance(40) {
            let mut pre = Vec::new();
            let mut seen = Vec::new();
            for _ in 0..(1 + r.below(2)) {
                let other = kc_ids[r.below(kc_ids.len() as u64) as usize];
                if other == kc_ids[i] || seen.contains(&other) {
                    continue;
                }
                seen.push(other);
                let mut p = doc! { "kc_id": other, "required": !r.chance(20) };
                if r.chance(70) {
                    p.insert("min_mastery", [0.5, 0.6, 0.7, 0.75, 0.8, 0.9][r.below(6) as usize]);
                }
                pre.push(Bson::Document(p));
            }
            kcs[i].insert("prerequisites", pre);
        }
    }

    // Learning items with embedded skill mappings.
    let mut items = Vec::new();
    let mut item_ids = Vec::new();
    for i in 0..(kc_ids.len() * 3) {
        let id = r.oid();
        let kind = *r.pick(&["multiple_choice", "multiple_choice", "true_false", "video", "interactive"]);
        let mut content = doc! {
            "question": format!("Question {i}: what would you do with ${}?", 100 + r.below(900)),
            "explanation": "Because saving first protects you from surprises.",
        };
        if kind == "multiple_choice" {
            content.insert(
                "choices",
                vec![
                    Bson::Document(doc! { "id": "a", "text": "Spend it" }),
                    Bson::Document(doc! { "id": "b", "text": "Save it" }),
                    Bson::Document(doc! { "id": "c", "text": "Lend it" }),
                ],
            );
            content.insert("answer", "b");
        }
        if !item_ids.is_empty() && r.chance(20) {
            content.insert("see_also", *r.pick(&item_ids));
        }
        let mut mappings = Vec::new();
        let mut used = Vec::new();
        for _ in 0..(1 + r.below(3)) {
            let kc = *r.pick(&kc_ids);
            if used.contains(&kc) {
                continue;
            }
            used.push(kc);
            let mut m = doc! { "kc_id": kc };
            if r.chance(70) {
                m.insert("weight", [0.25, 0.5, 0.7, 0.8, 1.0][r.below(5) as usize]);
            }
            mappings.push(Bson::Document(m));
        }
        let mut item = doc! {
            "_id": id,
            "type": kind,
            "title": format!("  Lesson {i}: money basics "),
            "content": content,
            "irt": {
                "difficulty": ((r.float() * 6.0 - 3.0) * 100.0).round() / 100.0,
                "discrimination": ((0.3 + r.float() * 2.0) * 100.0).round() / 100.0,
            },
            "kc_mappings": mappings,
            "estimated_seconds": 20 + r.below(300) as i32,
            "is_active": !r.chance(5),
            "created_at": date(JAN_2024 + r.below(300) as i64 * DAY),
        };
        if kind != "video" && r.chance(60) {
            item.get_document_mut("irt")
                .expect("irt")
                .insert("guessing", dec(["0.250", "0.200", "0.333", "0.5"][r.below(4) as usize]));
        }
        if kind == "video" {
            item.insert("media", doc! { "url": format!("https://cdn.finlit.example/v/{i}.mp4") });
        }
        // Keyed by country, as the app writes them: one to three countries.
        if r.chance(30) {
            let mut variants = Document::new();
            let first = r.below(VARIANTS.len() as u64) as usize;
            for k in 0..1 + r.below(3) as usize {
                let (country, question) = VARIANTS[(first + k) % VARIANTS.len()];
                variants.insert(country, doc! { "question": question });
            }
            item.insert("cultural_variants", variants);
        }
        if r.chance(70) {
            item.insert("language", *r.pick(&["en", "en", "es"]));
        }
        items.push(item);
        item_ids.push(id);
    }

    let achievements_spec = [
        ("first_lesson", "First Step", "lessons", 10),
        ("streak_3", "On a Roll", "streak", 25),
        ("streak_7", "Week Warrior", "streak", 50),
        ("streak_30", "Habit Formed", "streak", 200),
        ("budget_master", "Budget Master", "mastery", 100),
        ("credit_builder", "Credit Builder", "mastery", 100),
        ("saver", "Saver", "mastery", 75),
        ("xp_1000", "Thousandaire", "xp", 50),
        ("perfect_10", "Perfect Ten", "accuracy", 60),
        ("night_owl", "Night Owl", "secret", 20),
        ("remit_smart", "Smart Sender", "mastery", 80),
        ("tax_ready", "Tax Ready", "mastery", 90),
    ];
    let mut achievements = Vec::new();
    let mut ach_ids = Vec::new();
    for (i, (code, name, cat, xp)) in achievements_spec.iter().enumerate() {
        let id = r.oid();
        let mut a = doc! {
            "_id": id, "code": *code, "name": *name, "description": format!("Earned for {}", name.to_lowercase()),
            "category": *cat, "icon": format!("https://cdn.finlit.example/badges/{code}.png"), "xp_reward": *xp,
            "criteria": { "type": *cat, "threshold": (i as i32 + 1) * 3 }, "active": true,
            "created_at": date(JAN_2024),
        };
        if *cat == "secret" {
            a.insert("secret", true);
        }
        achievements.push(a);
        ach_ids.push(id);
    }

    let mut learner_docs = Vec::new();
    let mut states = Vec::new();
    let mut interactions = Vec::new();
    let mut progress = Vec::new();
    let mut learner_ach = Vec::new();
    for n in 0..learners {
        let (learner, id, created, last_active) = learner_doc(&mut r, n);
        learner_docs.push(learner);

        let mut used = Vec::new();
        for _ in 0..4 {
            let kc = *r.pick(&kc_ids);
            if used.contains(&kc) {
                continue;
            }
            used.push(kc);
            let p = (r.float() * 1000.0).round() / 1000.0;
            let status = if p > 0.9 {
                "mastered"
            } else if p > 0.3 {
                "in_progress"
            } else {
                *r.pick(&["locked", "unlocked"])
            };
            let unlocked_at = created + r.below(30) as i64 * DAY;
            let mut s = doc! {
                "_id": r.oid(),
                "learner_id": id,
                "kc_id": kc,
                "mastery": {
                    "p_mastery": p, "status": status, "unlocked": status != "locked", "mastered": status == "mastered",
                    "attempts": r.below(40) as i32, "correct": r.below(20) as i32,
                    "unlocked_at": if status == "locked" { Bson::Null } else { date(unlocked_at) },
                    "mastered_at": if status == "mastered" { date(unlocked_at + 10 * DAY) } else { Bson::Null },
                },
                "created_at": date(created),
                "updated_at": date(last_active),
            };
            if status != "locked" {
                s.insert(
                    "fsrs",
                    doc! {
                        "stability": (r.float() * 3000.0).round() / 100.0,
                        "difficulty": (1.0 + r.float() * 9.0 * 100.0).round() / 100.0,
                        "reps": r.below(20) as i32, "lapses": r.below(4) as i32,
                        "state": *r.pick(&["learning", "review", "relearning"]),
                        "last_review": date(last_active), "due": date(last_active + (1 + r.below(20) as i64) * DAY),
                    },
                );
            }
            states.push(s);
        }
        let session = format!("s-{:016x}", r.next());
        for k in 0..8 {
            let item = r.below(item_ids.len() as u64) as usize;
            let kind = *r.pick(&["answer", "answer", "answer", "hint", "skip", "video_view"]);
            let mut it = doc! {
                "_id": r.oid(),
                "learner_id": id,
                "item_id": item_ids[item],
                "session_id": if k < 4 { session.clone() } else { format!("s-{:016x}", r.next()) },
                "type": kind,
                "response_time_ms": Bson::Int64(500 + r.below(60_000) as i64),
                "hints_used": r.below(3) as i32,
                "attempt": 1 + r.below(3) as i32,
                "xp": *r.pick(&[0, 5, 10, 15]),
                "device": *r.pick(&["ios", "Android", "web"]),
                "created_at": date(created + k * 3_600_000 + r.below(3_600_000) as i64),
            };
            if r.chance(80) {
                let m = items[item].get_array("kc_mappings").ok().and_then(|a| a.first().cloned());
                if let Some(Bson::Document(m)) = m {
                    it.insert("kc_id", m.get("kc_id").cloned().unwrap_or(Bson::Null));
                }
            }
            if kind == "answer" {
                let correct = r.chance(65);
                it.insert("correct", correct);
                it.insert(
                    "response",
                    doc! { "selected": if correct { "b" } else { "a" }, "changed_answer": r.chance(10) },
                );
                let wrong: &[&str] = &["0.0000", "0.2500", "0.5000"];
                let score: &str = if correct { "1.0000" } else { wrong[r.below(wrong.len() as u64) as usize] };
                it.insert("score", dec(score));
                it.insert("rating", if correct { 3 + r.below(2) as i32 } else { 1 + r.below(2) as i32 });
            }
            interactions.push(it);
        }
        let mut day = midnight(last_active) - 5 * DAY;
        for s in 0..5 {
            let minutes = r.below(40) as i32;
            let goal = *r.pick(&[5, 10, 15, 20]);
            let mut p = doc! {
                "_id": r.oid(), "learner_id": id, "date": date(day), "minutes": minutes, "goal_minutes": goal,
                "goal_met": minutes >= goal, "xp": minutes * 7, "items_completed": minutes / 3,
            };
            if minutes >= goal {
                p.insert("streak_day", s + 1);
            }
            progress.push(p);
            day += DAY;
        }
        let mut used = Vec::new();
        for _ in 0..2 {
            let a = r.below(ach_ids.len() as u64) as usize;
            if used.contains(&a) {
                continue;
            }
            used.push(a);
            let target = 3 * (a as i32 + 1);
            let prog = r.below(target as u64 + 1) as i32;
            learner_ach.push(doc! {
                "_id": r.oid(), "learner_id": id, "achievement_id": ach_ids[a], "progress": prog, "target": target,
                "completed": prog >= target,
                "earned_at": if prog >= target { date(last_active) } else { Bson::Null },
                "created_at": date(created),
            });
        }
    }

    let mut templates = Vec::new();
    for (i, kc) in kc_ids.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        let mut t = doc! {
            "_id": r.oid(), "kc_id": *kc,
            "text": "If you earn {{salary}} a month and save {{rate}}%, how much do you save in a year?",
            "variables": { "salary": { "min": 1000, "max": 6000, "step": 100 }, "rate": { "min": 5, "max": 30, "step": 5 } },
            "answer_formula": "salary * rate / 100 * 12",
            "difficulty_tier": 1 + (i % 5) as i32,
            "active": true,
            "created_at": date(JAN_2024 + i as i64 * DAY),
        };
        if r.chance(60) {
            t.insert("countries", ["US", *r.pick(&["MX", "IN", "PH"])]);
        }
        templates.push(t);
    }
    let mut contexts = Vec::new();
    for (i, c) in COUNTRIES.iter().enumerate() {
        for j in 0..2 {
            let mut cx = doc! {
                "_id": r.oid(), "country": *c, "title": format!("Banking in {} ({})", c.to_uppercase(), j + 1),
                "text": "How money works here compared with home.",
                "comparisons": [ { "topic": "credit", "us": "FICO score", "home": "local bureau" } ],
                "created_at": date(JAN_2024 + (i * 2 + j) as i64 * DAY),
            };
            if j == 0 {
                cx.insert("kc_id", *r.pick(&kc_ids));
            }
            if r.chance(50) {
                cx.insert("warnings", ["Fees vary widely", "Keep receipts"]);
            }
            contexts.push(cx);
        }
    }

    if bad {
        let mut b = |n: usize, f: &dyn Fn(&mut Document)| {
            let mut d = learner_docs[n % learner_docs.len()].clone();
            d.insert("_id", r.oid());
            d.insert("email", format!("bad{n}@example.com"));
            f(&mut d);
            learner_docs.push(d);
        };
        b(0, &|d| {
            d.remove("email");
        });
        b(1, &|d| {
            d.get_document_mut("gamification").expect("g").insert("total_xp", Bson::Int64(3_000_000_000));
        });
        b(2, &|d| {
            d.insert("display_name", "x".repeat(300));
        });
        b(3, &|d| {
            d.get_document_mut("gamification").expect("g").insert("daily_goal_minutes", 1.5);
        });
        b(4, &|d| {
            d.get_document_mut("gamification").expect("g").insert("streak_last_date", "last tuesday");
        });
        let mut orphan = interactions[0].clone();
        orphan.insert("_id", r.oid());
        orphan.insert("learner_id", r.oid());
        interactions.push(orphan);
    }

    Data {
        collections: vec![
            ("learners", learner_docs),
            ("knowledge_components", kcs),
            ("learning_items", items),
            ("learner_skill_states", states),
            ("interactions", interactions),
            ("achievements", achievements),
            ("learner_achievements", learner_ach),
            ("daily_progress", progress),
            ("question_templates", templates),
            ("cultural_contexts", contexts),
        ],
    }
}

/// One learner document, the seed's shape; also its id and dates for the documents that hang off it.
fn learner_doc(r: &mut Rng, n: usize) -> (Document, ObjectId, i64, i64) {
    let id = r.oid();
    let (lang, country) = *r.pick(LANGS);
    let first = *r.pick(FIRST);
    let last = *r.pick(LAST);
    let created = JAN_2024 + r.below(365) as i64 * DAY + r.below(DAY as u64) as i64;
    let last_active = created + r.below(120) as i64 * DAY + r.below(DAY as u64) as i64;
    let mut email = format!("{}.{}{}@example.com", first.to_lowercase(), last.to_lowercase(), n);
    if r.chance(15) {
        email = format!("  {}  ", email.to_uppercase());
    }
    let mut goals = Vec::new();
    for _ in 0..(1 + r.below(3)) {
        let g = *r.pick(GOALS);
        if !goals.contains(&g) {
            goals.push(g);
        }
    }
    let mut profile = doc! {
        "native_language": lang,
        "immigration_status": *r.pick(STATUS),
        "country_of_origin": country,
        "visa_type": *r.pick(STATUS),
        "has_ssn": r.chance(60),
        "sends_remittances": r.chance(45),
        "financial_goals": goals,
    };
    if r.chance(80) {
        profile.insert("english_proficiency", *r.pick(&["basic", "intermediate", "advanced", "fluent"]));
    }
    let streak = r.below(30) as i32;
    let mut learner = doc! {
        "_id": id,
        "email": email,
        "display_name": format!("{first} {last}"),
        "profile": profile,
        "gamification": {
            "total_xp": r.below(20_000) as i32,
            "streak_count": streak,
            // The app writes the moment of the last streak day, not a date.
            "streak_last_date": date(last_active),
            "daily_goal_minutes": *r.pick(&[5, 10, 15, 20, 30]),
        },
        "financial_experience_level": *r.pick(&["novice", "beginner", "intermediate", "advanced"]),
        "timezone": *r.pick(TZS),
        "created_at": date(created),
        "last_active_at": date(last_active),
    };
    if r.chance(10) {
        learner.remove("timezone");
    }
    (learner, id, created, last_active)
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

fn write(data: &Data, out: &Path, json: bool, only: &[String]) -> std::io::Result<()> {
    std::fs::create_dir_all(out)?;
    for (name, docs) in &data.collections {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        if json {
            let mut w = BufWriter::new(File::create(out.join(format!("{name}.jsonl")))?);
            for d in docs {
                serde_json::to_writer(&mut w, &Bson::Document(d.clone()).into_relaxed_extjson())?;
                w.write_all(b"\n")?;
            }
            w.flush()?;
        } else {
            let mut w = BufWriter::new(File::create(out.join(format!("{name}.bson")))?);
            for d in docs {
                w.write_all(&bson::serialize_to_vec(d).map_err(std::io::Error::other)?)?;
            }
            w.flush()?;
            let meta = serde_json::json!({
                "indexes": [{ "v": 2, "key": { "_id": 1 }, "name": "_id_" }],
                "collectionName": name,
                "type": "collection",
            });
            std::fs::write(out.join(format!("{name}.metadata.json")), meta.to_string())?;
        }
    }
    Ok(())
}

/// Learners only, written as they are made: memory stays flat for millions.
fn stream_learners(learners: usize, seed: u64, out: &Path, json: bool) -> std::io::Result<()> {
    std::fs::create_dir_all(out)?;
    let mut r = Rng(seed);
    let ext = if json { "jsonl" } else { "bson" };
    let mut w = BufWriter::new(File::create(out.join(format!("learners.{ext}")))?);
    for n in 0..learners {
        let (d, ..) = learner_doc(&mut r, n);
        if json {
            serde_json::to_writer(&mut w, &Bson::Document(d).into_relaxed_extjson())?;
            w.write_all(b"\n")?;
        } else {
            w.write_all(&bson::serialize_to_vec(&d).map_err(std::io::Error::other)?)?;
        }
    }
    w.flush()
}

fn main() {
    let mut learners = 200usize;
    let mut out = PathBuf::from("finlit-dump");
    let mut json = false;
    let mut bad = false;
    let mut seed = 42u64;
    let mut only = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage(&format!("{a} needs a value")));
        match a.as_str() {
            "--learners" => learners = val().parse().unwrap_or_else(|_| usage("--learners takes a number")),
            "--out" => out = PathBuf::from(val()),
            "--format" => match val().as_str() {
                "bson" => json = false,
                "json" => json = true,
                other => usage(&format!("unknown format {other}")),
            },
            "--bad" => bad = true,
            "--seed" => seed = val().parse().unwrap_or_else(|_| usage("--seed takes a number")),
            "--only" => only.push(val()),
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if only == ["learners"] && !bad {
        if let Err(e) = stream_learners(learners, seed, &out, json) {
            eprintln!("error: writing {}: {e}", out.display());
            std::process::exit(1);
        }
        eprintln!("wrote {learners} documents to {}", out.display());
        return;
    }
    let data = generate(learners, bad, seed);
    if let Err(e) = write(&data, &out, json, &only) {
        eprintln!("error: writing {}: {e}", out.display());
        std::process::exit(1);
    }
    let total: usize = data
        .collections
        .iter()
        .filter(|(n, _)| only.is_empty() || only.iter().any(|o| o == n))
        .map(|(_, d)| d.len())
        .sum();
    eprintln!("wrote {total} documents to {}", out.display());
}

fn usage(msg: &str) -> ! {
    if !msg.is_empty() {
        eprintln!("error: {msg}");
    }
    eprintln!(
        "usage: generate [--learners N] [--out DIR] [--format bson|json] [--bad] [--seed N] [--only COLLECTION]..."
    );
    std::process::exit(if msg.is_empty() { 0 } else { 2 });
}
