//! Reads an index file's JSON entry by entry into an [`IndexSink`], never
//! building the file's `Vec` of packs and blobs: each blob is handed on as
//! soon as it is parsed, so loading costs what the sink keeps (40 bytes a
//! blob for [`crate::format::index::Index`]) rather than the document.
//!
//! The accepted documents are exactly [`IndexFile`]'s, formats 1 and 2
//! alike: the same fields, each required one present, none twice, none
//! unknown, no trailing data.
//!
//! [`IndexFile`]: crate::format::index::IndexFile

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::format::id::PackId;
use crate::format::index::{CondemnedPack, IndexedBlob};
use crate::format::pack::BlobKind;

/// Where the entries of an index file go.
pub trait IndexSink {
    /// One blob of the pack being read (its id and kind may come later).
    fn blob(&mut self, blob: &IndexedBlob);

    /// The pack whose blobs were the last `blobs` passed to
    /// [`IndexSink::blob`].
    fn pack(&mut self, id: PackId, kind: BlobKind, blobs: usize);
}

/// Parses one index file's JSON into `sink`; returns its deletion marks.
/// On an error the sink may have received part of the file.
pub fn parse(json: &[u8], sink: &mut impl IndexSink) -> serde_json::Result<Vec<CondemnedPack>> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let condemned = FileSeed { sink }.deserialize(&mut de)?;
    de.end()?;
    Ok(condemned)
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum FileField {
    Packs,
    Condemned,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum PackField {
    Id,
    Kind,
    Blobs,
}

struct FileSeed<'s, S> {
    sink: &'s mut S,
}

impl<'de, S: IndexSink> DeserializeSeed<'de> for FileSeed<'_, S> {
    type Value = Vec<CondemnedPack>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_struct("IndexFile", &["packs", "condemned"], self)
    }
}

impl<'de, S: IndexSink> Visitor<'de> for FileSeed<'_, S> {
    type Value = Vec<CondemnedPack>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an index file")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut packs = false;
        let mut condemned = None;
        while let Some(field) = map.next_key::<FileField>()? {
            match field {
                FileField::Packs if packs => return Err(de::Error::duplicate_field("packs")),
                FileField::Packs => {
                    map.next_value_seed(PacksSeed {
                        sink: &mut *self.sink,
                    })?;
                    packs = true;
                }
                FileField::Condemned if condemned.is_some() => {
                    return Err(de::Error::duplicate_field("condemned"));
                }
                FileField::Condemned => condemned = Some(map.next_value()?),
            }
        }
        if !packs {
            return Err(de::Error::missing_field("packs"));
        }
        Ok(condemned.unwrap_or_default())
    }
}

struct PacksSeed<'s, S> {
    sink: &'s mut S,
}

impl<'de, S: IndexSink> DeserializeSeed<'de> for PacksSeed<'_, S> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, S: IndexSink> Visitor<'de> for PacksSeed<'_, S> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of packs")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(PackSeed {
                sink: &mut *self.sink,
            })?
            .is_some()
        {}
        Ok(())
    }
}

struct PackSeed<'s, S> {
    sink: &'s mut S,
}

impl<'de, S: IndexSink> DeserializeSeed<'de> for PackSeed<'_, S> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_struct("IndexedPack", &["id", "kind", "blobs"], self)
    }
}

impl<'de, S: IndexSink> Visitor<'de> for PackSeed<'_, S> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a pack")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (mut id, mut kind, mut blobs) = (None, None, None);
        while let Some(field) = map.next_key::<PackField>()? {
            match field {
                PackField::Id if id.is_some() => return Err(de::Error::duplicate_field("id")),
                PackField::Id => id = Some(map.next_value::<PackId>()?),
                PackField::Kind if kind.is_some() => {
                    return Err(de::Error::duplicate_field("kind"));
                }
                PackField::Kind => kind = Some(map.next_value::<BlobKind>()?),
                PackField::Blobs if blobs.is_some() => {
                    return Err(de::Error::duplicate_field("blobs"));
                }
                PackField::Blobs => {
                    blobs = Some(map.next_value_seed(BlobsSeed {
                        sink: &mut *self.sink,
                    })?)
                }
            }
        }
        let id = id.ok_or_else(|| de::Error::missing_field("id"))?;
        let kind = kind.ok_or_else(|| de::Error::missing_field("kind"))?;
        let blobs = blobs.ok_or_else(|| de::Error::missing_field("blobs"))?;
        self.sink.pack(id, kind, blobs);
        Ok(())
    }
}

struct BlobsSeed<'s, S> {
    sink: &'s mut S,
}

impl<'de, S: IndexSink> DeserializeSeed<'de> for BlobsSeed<'_, S> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, S: IndexSink> Visitor<'de> for BlobsSeed<'_, S> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of blobs")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut n = 0;
        while let Some(b) = seq.next_element::<IndexedBlob>()? {
            self.sink.blob(&b);
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::id::{BlobId, Id};
    use crate::format::index::{IndexFile, IndexedPack};

    #[derive(Default)]
    struct Collect {
        pending: Vec<IndexedBlob>,
        packs: Vec<(PackId, BlobKind, Vec<IndexedBlob>)>,
    }

    impl IndexSink for Collect {
        fn blob(&mut self, blob: &IndexedBlob) {
            self.pending.push(*blob);
        }
        fn pack(&mut self, id: PackId, kind: BlobKind, blobs: usize) {
            let at = self.pending.len() - blobs;
            self.packs.push((id, kind, self.pending.split_off(at)));
        }
    }

    fn file() -> IndexFile {
        let blob = |n: u8| IndexedBlob {
            id: BlobId(Id([n; 32])),
            offset: n as u32,
            length: 3,
            raw_length: 4,
        };
        IndexFile {
            packs: vec![
                IndexedPack {
                    id: PackId(Id([9; 32])),
                    kind: BlobKind::Tree,
                    blobs: vec![blob(1), blob(2)],
                },
                IndexedPack {
                    id: PackId(Id([8; 32])),
                    kind: BlobKind::Data,
                    blobs: vec![],
                },
            ],
            condemned: vec![CondemnedPack {
                pack: PackId(Id([8; 32])),
                since: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            }],
        }
    }

    #[test]
    fn reads_what_the_struct_reads() {
        let f = file();
        let json = serde_json::to_vec(&f).unwrap();
        let mut sink = Collect::default();
        let condemned = parse(&json, &mut sink).unwrap();
        assert_eq!(condemned, f.condemned);
        assert_eq!(sink.packs.len(), 2);
        assert_eq!(sink.packs[0].0, PackId(Id([9; 32])));
        assert_eq!(sink.packs[0].1, BlobKind::Tree);
        assert_eq!(sink.packs[0].2.len(), 2);
        assert_eq!(sink.packs[0].2[1].id, BlobId(Id([2; 32])));
        assert!(sink.packs[1].2.is_empty());
        // Fields in any order: the blobs before the pack's id.
        let reordered = format!(
            r#"{{"packs":[{{"blobs":[{{"raw_length":4,"length":3,"offset":1,"id":"{}"}}],"kind":"data","id":"{}"}}]}}"#,
            Id([1; 32]),
            Id([7; 32])
        );
        let mut sink = Collect::default();
        assert!(parse(reordered.as_bytes(), &mut sink).unwrap().is_empty());
        assert_eq!(sink.packs[0].0, PackId(Id([7; 32])));
        assert_eq!(sink.packs[0].2[0].offset, 1);
    }

    #[test]
    fn refuses_what_the_struct_refuses() {
        let json = String::from_utf8(serde_json::to_vec(&file()).unwrap()).unwrap();
        let id = Id([1; 32]).to_hex();
        let bad = [
            r#"{"condemned":[]}"#.to_owned(),
            r#"{"packs":[],"packs":[]}"#.to_owned(),
            r#"{"packs":[],"extra":1}"#.to_owned(),
            format!(r#"{{"packs":[{{"id":"{id}","kind":"data"}}]}}"#),
            format!(r#"{{"packs":[{{"id":"{id}","kind":"data","blobs":[],"more":1}}]}}"#),
            format!(r#"{{"packs":[{{"id":"{id}","id":"{id}","kind":"data","blobs":[]}}]}}"#),
            format!(r#"{{"packs":[{{"id":"{id}","kind":"data","blobs":[{{"id":"{id}"}}]}}]}}"#),
            format!(r#"{{"packs":[{{"id":"{id}","kind":"nope","blobs":[]}}]}}"#),
            r#"{"packs":[{"id":"zz","kind":"data","blobs":[]}]}"#.to_owned(),
            format!("{json} {{}}"),
            json[..json.len() - 1].to_owned(),
        ];
        for b in bad {
            assert!(
                serde_json::from_str::<IndexFile>(&b).is_err(),
                "the struct accepts {b}"
            );
            assert!(parse(b.as_bytes(), &mut Collect::default()).is_err(), "{b}");
        }
    }
}
