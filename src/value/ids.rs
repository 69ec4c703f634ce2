//! Deterministic ids: a source id (ObjectId, string, integer) becomes a
//! UUIDv5 in one project namespace, so the same source id gives the same UUID
//! in its own table and in every foreign key that points at it, on every run.
//!
//! The UUID's name is the id's canonical text: an ObjectId's 24 lowercase hex
//! digits, a string as is, an integer in decimal, a UUID in hyphenated form.

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

impl IdNamespace {
    pub fn object_id(&self, oid: &ObjectId) -> Uuid {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 24];
        for (i, b) in oid.bytes().iter().enumerate() {
            hex[2 * i] = HEX[(b >> 4) as usize];
            hex[2 * i + 1] = HEX[(b & 15) as usize];
        }
        Uuid::new_v5(&self.0, &hex)
    }

    /// The UUID for a source id value, or why it cannot be one.
    pub fn derive(&self, v: RawBsonRef<'_>) -> Result<Uuid, String> {
        match v {
            RawBsonRef::ObjectId(oid) => Ok(self.object_id(&oid)),
            RawBsonRef::String(s) if !s.is_empty() => Ok(Uuid::new_v5(&self.0, s.as_bytes())),
            RawBsonRef::String(_) => Err("an empty string is not an id".into()),
            RawBsonRef::Int32(i) => Ok(Uuid::new_v5(&self.0, i.to_string().as_bytes())),
            RawBsonRef::Int64(i) => Ok(Uuid::new_v5(&self.0, i.to_string().as_bytes())),
            RawBsonRef::Binary(b) if matches!(b.subtype, BinarySubtype::Uuid | BinarySubtype::UuidOld) => {
                let u = Uuid::from_slice(b.bytes).map_err(|e| format!("bad UUID binary: {e}"))?;
                Ok(Uuid::new_v5(&self.0, u.hyphenated().to_string().as_bytes()))
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
}
