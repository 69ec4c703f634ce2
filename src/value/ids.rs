//! Deterministic ids: a source id (ObjectId, string, integer) becomes a
//! UUIDv5 in one project namespace, so the same source id gives the same UUID
//! in its own table and in every foreign key that points at it, on every run.
//!
//! The UUID's name is the id's canonical text: an ObjectId's 24 lowercase hex
//! digits, a string as is, an integer in decimal, a UUID in hyphenated form.
//!
//! An id from several fields (`id = ["$.zip", "$.state"]`) is typed: its
//! name is, for each value in order, a tag (`s` for text: a string, an
//! ObjectId's hex, a UUID's hyphenated form; `i` for an integer), the
//! text's length in bytes in decimal, `:` and the text. So `["10001",
//! "NY"]` is named `s5:10001s2:NY`, `[10001, "NY"]` is `i5:10001s2:NY`, and
//! no two lists share a name. This encoding is fixed forever: ids in
//! databases depend on it.

use bson::RawBsonRef;
use bson::oid::ObjectId;
use bson::spec::BinarySubtype;
use uuid::Uuid;

/// The namespace used when a project declares none. Declaring one in
/// `finlit-map.toml` is better: it makes the ids yours.
pub const DEFAULT_NAMESPACE: Uuid = uuid::uuid!("8a2f3c1e-5b7d-5e4a-9c6f-0d1e2f3a4b5c");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdNamespace(pub Uuid);

impl Default for IdNamespace {
    fn default() -> Self {
        IdNamespace(DEFAULT_NAMESPACE)
    }
}

/// UUIDv5 (RFC 9562): SHA-1 of the namespace and the name, version and
/// variant set. What `Uuid::new_v5` computes, with a SHA-1 that uses the
/// CPU's SHA instructions where it has them (every row of an id column
/// pays for one; `uuid5_is_the_rfcs` checks both agree).
fn uuid5(ns: &Uuid, name: &[u8]) -> Uuid {
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    h.update(ns.as_bytes());
    h.update(name);
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_sha1_bytes(b).into_uuid()
}

impl IdNamespace {
    pub fn object_id(&self, oid: &ObjectId) -> Uuid {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 24];
        for (i, b) in oid.bytes().iter().enumerate() {
            hex[2 * i] = HEX[(b >> 4) as usize];
            hex[2 * i + 1] = HEX[(b & 15) as usize];
        }
        uuid5(&self.0, &hex)
    }

    /// The UUID for the values of several fields, in order (module docs).
    pub fn derive_parts(&self, parts: &[RawBsonRef<'_>]) -> Result<Uuid, String> {
        let mut name = Vec::new();
        for (i, v) in parts.iter().enumerate() {
            let (tag, text) = match *v {
                RawBsonRef::ObjectId(oid) => ('s', oid.to_hex()),
                RawBsonRef::String(s) if !s.is_empty() => ('s', s.to_string()),
                RawBsonRef::Int32(n) => ('i', n.to_string()),
                RawBsonRef::Int64(n) => ('i', n.to_string()),
                RawBsonRef::Binary(b) if matches!(b.subtype, BinarySubtype::Uuid | BinarySubtype::UuidOld) => (
                    's',
                    Uuid::from_slice(b.bytes).map_err(|e| format!("bad UUID binary: {e}"))?.hyphenated().to_string(),
                ),
                RawBsonRef::String(_) => return Err(format!("part {} of the id is an empty string", i + 1)),
                other => {
                    return Err(format!(
                        "part {} of the id is {}, which cannot be part of an id (ObjectId, string, integer or UUID expected)",
                        i + 1,
                        crate::value::text::bson_kind(other)
                    ));
                }
            };
            name.push(tag as u8);
            name.extend_from_slice(text.len().to_string().as_bytes());
            name.push(b':');
            name.extend_from_slice(text.as_bytes());
        }
        Ok(uuid5(&self.0, &name))
    }

    /// The UUID for a source id value, or why it cannot be one.
    pub fn derive(&self, v: RawBsonRef<'_>) -> Result<Uuid, String> {
        match v {
            RawBsonRef::ObjectId(oid) => Ok(self.object_id(&oid)),
            RawBsonRef::String(s) if !s.is_empty() => Ok(uuid5(&self.0, s.as_bytes())),
            RawBsonRef::String(_) => Err("an empty string is not an id".into()),
            RawBsonRef::Int32(i) => Ok(uuid5(&self.0, i.to_string().as_bytes())),
            RawBsonRef::Int64(i) => Ok(uuid5(&self.0, i.to_string().as_bytes())),
            RawBsonRef::Binary(b) if matches!(b.subtype, BinarySubtype::Uuid | BinarySubtype::UuidOld) => {
                let u = Uuid::from_slice(b.bytes).map_err(|e| format!("bad UUID binary: {e}"))?;
                Ok(uuid5(&self.0, u.hyphenated().to_string().as_bytes()))
            }
            other => Err(format!(
                "{} cannot be an id (ObjectId, string, integer or UUID expected)",
                crate::value::text::bson_kind(other)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_id_same_uuid_everywhere() {
        let ns = IdNamespace::default();
        let oid = ObjectId::parse_str("507f1f77bcf86cd799439011").unwrap();
        let a = ns.derive(RawBsonRef::ObjectId(oid)).unwrap();
        assert_eq!(a, ns.derive(RawBsonRef::ObjectId(oid)).unwrap());
        assert_eq!(a, ns.derive(RawBsonRef::String("507f1f77bcf86cd799439011")).unwrap());
        assert_eq!(a.get_version_num(), 5);
        assert_eq!(ns.derive(RawBsonRef::Int32(7)).unwrap(), ns.derive(RawBsonRef::Int64(7)).unwrap());
        assert!(ns.derive(RawBsonRef::Double(1.5)).is_err());
        let other = IdNamespace(Uuid::from_u128(1));
        assert_ne!(a, other.derive(RawBsonRef::ObjectId(oid)).unwrap());
    }

    proptest::proptest! {
        /// The SHA-1 with the CPU's instructions gives the uuid crate's UUIDv5,
        /// for any namespace and name (lengths across SHA-1's 64-byte blocks).
        #[test]
        fn uuid5_is_the_rfcs(ns in proptest::prelude::any::<u128>(), name in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let ns = Uuid::from_u128(ns);
            proptest::prop_assert_eq!(super::uuid5(&ns, &name), Uuid::new_v5(&ns, &name));
        }
    }

    /// The several-field encoding, pinned: these UUIDs must never change.
    #[test]
    fn ids_from_several_fields_are_typed_and_stable() {
        let ns = IdNamespace::default();
        let zip_ny = ns.derive_parts(&[RawBsonRef::String("10001"), RawBsonRef::String("NY")]).unwrap();
        assert_eq!(zip_ny, Uuid::new_v5(&DEFAULT_NAMESPACE, b"s5:10001s2:NY"));
        let int_zip = ns.derive_parts(&[RawBsonRef::Int32(10001), RawBsonRef::String("NY")]).unwrap();
        assert_ne!(zip_ny, int_zip);
        assert_eq!(int_zip, ns.derive_parts(&[RawBsonRef::Int64(10001), RawBsonRef::String("NY")]).unwrap());
        // Lengths keep the parts apart: ("ab", "c") is not ("a", "bc").
        assert_ne!(
            ns.derive_parts(&[RawBsonRef::String("ab"), RawBsonRef::String("c")]).unwrap(),
            ns.derive_parts(&[RawBsonRef::String("a"), RawBsonRef::String("bc")]).unwrap()
        );
        assert!(ns.derive_parts(&[RawBsonRef::String("a"), RawBsonRef::Double(1.5)]).unwrap_err().contains("part 2"));
        assert!(ns.derive_parts(&[RawBsonRef::String("")]).unwrap_err().contains("empty string"));
    }
}
