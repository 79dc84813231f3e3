//! A value serialised as its JSON tree (`serde_json::to_value`) would
//! serialise, without building the tree.
//!
//! A run's state is merged as JSON trees, and its `shard.json` has always
//! been the tree written out: object keys sorted (a tree's map is ordered),
//! numbers as the tree holds them. For a million agents that tree took
//! 1.4 GB while the typed state is some 80 MB, so the state is written
//! through [`AsTree`] instead: structs are walked once to learn their keys,
//! then once per key in sorted order, and lists element by element, so
//! nothing of the size of the state is held. Maps and enums with data (few
//! and small in a state) still go through a tree of their own.

use std::fmt;

use serde::ser::{self, Impossible, Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

/// `value`, serialised as `serde_json::to_value(value)` serialises.
pub struct AsTree<'a, T: ?Sized>(pub &'a T);

impl<T: Serialize + ?Sized> Serialize for AsTree<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.serialize(Probe).map_err(ser::Error::custom)? {
            Shape::Leaf(v) => v.serialize(s),
            Shape::Seq(len) => {
                let mut seq = s.serialize_seq(Some(len))?;
                self.0.serialize(Elements { seq: &mut seq }).map_err(Carried::into_inner)?;
                seq.end()
            }
            Shape::Struct(mut keys) => {
                keys.sort_unstable();
                keys.dedup();
                let mut map = s.serialize_map(Some(keys.len()))?;
                for key in keys {
                    map.serialize_entry(key, &Field { value: self.0, key })?;
                }
                map.end()
            }
            Shape::Tree => serde_json::to_value(self.0).map_err(ser::Error::custom)?.serialize(s),
        }
    }
}

/// What a value is, learnt without walking into it.
enum Shape {
    /// A number, string, bool or null, as the tree holds it.
    Leaf(Value),
    /// A list of this many elements.
    Seq(usize),
    /// A struct with these fields (those not skipped).
    Struct(Vec<&'static str>),
    /// Anything else: made a tree.
    Tree,
}

/// The name `serde_json::value::RawValue` serialises under: a tree parses it.
const RAW_VALUE: &str = "$serde_json::private::RawValue";

/// An error of the serialiser a value is written to, carried through a
/// walk of the value.
#[derive(Debug)]
enum Carried<E> {
    Inner(E),
    Msg(String),
}

impl<E: ser::Error> Carried<E> {
    fn into_inner(self) -> E {
        match self {
            Carried::Inner(e) => e,
            Carried::Msg(m) => E::custom(m),
        }
    }
}

impl<E: fmt::Display> fmt::Display for Carried<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Carried::Inner(e) => e.fmt(f),
            Carried::Msg(m) => f.write_str(m),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for Carried<E> {}

impl<E: ser::Error> ser::Error for Carried<E> {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Carried::Msg(msg.to_string())
    }
}

/// A value serialised twice gave two shapes (a `Serialize` that is not a
/// function of the value).
const CHANGED: &str = "a value changed its shape between two walks";

/// Leaves as `serde_json::value::Serializer` makes them.
macro_rules! leaves {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(fn $name(self, $($arg: $ty),*) -> Result<Shape, serde_json::Error> {
            serde_json::value::Serializer.$name($($arg),*).map(Shape::Leaf)
        })*
    };
}

/// Methods a walk expecting one shape refuses.
macro_rules! refuse {
    ($($name:ident($($ty:ty),*) -> $ok:ty;)*) => {
        $(fn $name(self, $(_: $ty),*) -> Result<$ok, Self::Error> {
            Err(ser::Error::custom(CHANGED))
        })*
    };
}

macro_rules! refuse_leaves {
    () => {
        refuse! {
            serialize_bool(bool) -> Self::Ok; serialize_i8(i8) -> Self::Ok; serialize_i16(i16) -> Self::Ok;
            serialize_i32(i32) -> Self::Ok; serialize_i64(i64) -> Self::Ok; serialize_i128(i128) -> Self::Ok;
            serialize_u8(u8) -> Self::Ok; serialize_u16(u16) -> Self::Ok; serialize_u32(u32) -> Self::Ok;
            serialize_u64(u64) -> Self::Ok; serialize_u128(u128) -> Self::Ok; serialize_f32(f32) -> Self::Ok;
            serialize_f64(f64) -> Self::Ok; serialize_char(char) -> Self::Ok; serialize_str(&str) -> Self::Ok;
            serialize_bytes(&[u8]) -> Self::Ok; serialize_none() -> Self::Ok; serialize_unit() -> Self::Ok;
            serialize_unit_struct(&'static str) -> Self::Ok;
            serialize_unit_variant(&'static str, u32, &'static str) -> Self::Ok;
            serialize_map(Option<usize>) -> Self::SerializeMap;
            serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant;
            serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant;
        }
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<Self::Ok, Self::Error> {
            Err(ser::Error::custom(CHANGED))
        }
    };
}

/// Learns a value's [`Shape`].
struct Probe;

impl Serializer for Probe {
    type Ok = Shape;
    type Error = serde_json::Error;
    type SerializeSeq = Count;
    type SerializeTuple = Count;
    type SerializeTupleStruct = Count;
    type SerializeTupleVariant = Other;
    type SerializeMap = Other;
    type SerializeStruct = Keys;
    type SerializeStructVariant = Other;

    leaves! {
        serialize_bool(v: bool); serialize_i8(v: i8); serialize_i16(v: i16); serialize_i32(v: i32);
        serialize_i64(v: i64); serialize_i128(v: i128); serialize_u8(v: u8); serialize_u16(v: u16);
        serialize_u32(v: u32); serialize_u64(v: u64); serialize_u128(v: u128); serialize_f32(v: f32);
        serialize_f64(v: f64); serialize_char(v: char); serialize_str(v: &str); serialize_bytes(v: &[u8]);
        serialize_none(); serialize_unit(); serialize_unit_struct(name: &'static str);
        serialize_unit_variant(name: &'static str, index: u32, variant: &'static str);
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Shape, serde_json::Error> {
        value.serialize(Probe)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Shape, serde_json::Error> {
        value.serialize(Probe)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Shape, serde_json::Error> {
        Ok(Shape::Tree)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Count, serde_json::Error> {
        Ok(Count(0))
    }

    fn serialize_tuple(self, _: usize) -> Result<Count, serde_json::Error> {
        Ok(Count(0))
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Count, serde_json::Error> {
        Ok(Count(0))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Other, serde_json::Error> {
        Ok(Other)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Other, serde_json::Error> {
        Ok(Other)
    }

    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Keys, serde_json::Error> {
        Ok(Keys { keys: Vec::with_capacity(len), raw: name == RAW_VALUE })
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Other, serde_json::Error> {
        Ok(Other)
    }
}

/// A list's elements, counted and not walked.
struct Count(usize);

impl SerializeSeq for Count {
    type Ok = Shape;
    type Error = serde_json::Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, _: &T) -> Result<(), serde_json::Error> {
        self.0 += 1;
        Ok(())
    }
    fn end(self) -> Result<Shape, serde_json::Error> {
        Ok(Shape::Seq(self.0))
    }
}

impl ser::SerializeTuple for Count {
    type Ok = Shape;
    type Error = serde_json::Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), serde_json::Error> {
        SerializeSeq::serialize_element(self, v)
    }
    fn end(self) -> Result<Shape, serde_json::Error> {
        SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleStruct for Count {
    type Ok = Shape;
    type Error = serde_json::Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), serde_json::Error> {
        SerializeSeq::serialize_element(self, v)
    }
    fn end(self) -> Result<Shape, serde_json::Error> {
        SerializeSeq::end(self)
    }
}

/// A struct's keys, its fields not walked.
struct Keys {
    keys: Vec<&'static str>,
    raw: bool,
}

impl ser::SerializeStruct for Keys {
    type Ok = Shape;
    type Error = serde_json::Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        _: &T,
    ) -> Result<(), serde_json::Error> {
        self.keys.push(key);
        Ok(())
    }
    fn end(self) -> Result<Shape, serde_json::Error> {
        Ok(if self.raw { Shape::Tree } else { Shape::Struct(self.keys) })
    }
}

/// A map or an enum with data: left to a tree.
struct Other;

impl SerializeMap for Other {
    type Ok = Shape;
    type Error = serde_json::Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, _: &T) -> Result<(), serde_json::Error> {
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, _: &T) -> Result<(), serde_json::Error> {
        Ok(())
    }
    fn end(self) -> Result<Shape, serde_json::Error> {
        Ok(Shape::Tree)
    }
}

impl ser::SerializeTupleVariant for Other {
    type Ok = Shape;
    type Error = serde_json::Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &T) -> Result<(), serde_json::Error> {
        Ok(())
    }
    fn end(self) -> Result<Shape, serde_json::Error> {
        Ok(Shape::Tree)
    }
}

impl ser::SerializeStructVariant for Other {
    type Ok = Shape;
    type Error = serde_json::Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        _: &T,
    ) -> Result<(), serde_json::Error> {
        Ok(())
    }
    fn end(self) -> Result<Shape, serde_json::Error> {
        Ok(Shape::Tree)
    }
}

/// Writes each element of a list into `seq`, as its tree would be.
struct Elements<'a, Q> {
    seq: &'a mut Q,
}

impl<'a, Q: SerializeSeq> Serializer for Elements<'a, Q> {
    type Ok = ();
    type Error = Carried<Q::Error>;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Impossible<(), Self::Error>;
    type SerializeMap = Impossible<(), Self::Error>;
    type SerializeStruct = Impossible<(), Self::Error>;
    type SerializeStructVariant = Impossible<(), Self::Error>;

    refuse_leaves!();
    refuse! { serialize_struct(&'static str, usize) -> Self::SerializeStruct; }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Self::Error> {
        value.serialize(self)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Self::Error> {
        value.serialize(self)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self, Self::Error> {
        Ok(self)
    }

    fn serialize_tuple(self, _: usize) -> Result<Self, Self::Error> {
        Ok(self)
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, Self::Error> {
        Ok(self)
    }
}

impl<Q: SerializeSeq> SerializeSeq for Elements<'_, Q> {
    type Ok = ();
    type Error = Carried<Q::Error>;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Self::Error> {
        self.seq.serialize_element(&AsTree(value)).map_err(Carried::Inner)
    }
    fn end(self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl<Q: SerializeSeq> ser::SerializeTuple for Elements<'_, Q> {
    type Ok = ();
    type Error = Carried<Q::Error>;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Self::Error> {
        SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl<Q: SerializeSeq> ser::SerializeTupleStruct for Elements<'_, Q> {
    type Ok = ();
    type Error = Carried<Q::Error>;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Self::Error> {
        SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// The field `key` of the struct `value`, as its tree would be.
struct Field<'a, T: ?Sized> {
    value: &'a T,
    key: &'static str,
}

impl<T: Serialize + ?Sized> Serialize for Field<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(FindField { key: self.key, s: Some(s), out: None }).map_err(Carried::into_inner)
    }
}

/// Walks a struct and writes its field `key` to `s`.
struct FindField<S: Serializer> {
    key: &'static str,
    s: Option<S>,
    out: Option<S::Ok>,
}

impl<S: Serializer> Serializer for FindField<S> {
    type Ok = S::Ok;
    type Error = Carried<S::Error>;
    type SerializeSeq = Impossible<S::Ok, Self::Error>;
    type SerializeTuple = Impossible<S::Ok, Self::Error>;
    type SerializeTupleStruct = Impossible<S::Ok, Self::Error>;
    type SerializeTupleVariant = Impossible<S::Ok, Self::Error>;
    type SerializeMap = Impossible<S::Ok, Self::Error>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<S::Ok, Self::Error>;

    refuse_leaves!();
    refuse! {
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, Self::Error> {
        value.serialize(self)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<S::Ok, Self::Error> {
        value.serialize(self)
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Self::Error> {
        Ok(self)
    }
}

impl<S: Serializer> ser::SerializeStruct for FindField<S> {
    type Ok = S::Ok;
    type Error = Carried<S::Error>;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Self::Error> {
        if key == self.key
            && let Some(s) = self.s.take()
        {
            self.out = Some(AsTree(value).serialize(s).map_err(Carried::Inner)?);
        }
        Ok(())
    }
    fn end(self) -> Result<S::Ok, Self::Error> {
        self.out.ok_or_else(|| ser::Error::custom(CHANGED))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;
    use serde_json::json;

    use super::AsTree;

    #[derive(Serialize)]
    struct Inner {
        zeta: u32,
        alpha: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        gone: Option<u8>,
        tag: Kind,
    }

    #[derive(Serialize)]
    enum Kind {
        Plain,
        With(u8),
    }

    #[derive(Serialize)]
    struct Id(u64);

    #[derive(Serialize)]
    struct Outer {
        list: Vec<Inner>,
        by: BTreeMap<u16, u64>,
        big: u128,
        tuple: (u8, String),
        id: Id,
        small: f32,
        nan: f64,
        tree: serde_json::Value,
        nested: Option<Box<Outer>>,
        empty: Vec<u8>,
        a_key: char,
    }

    fn outer(nested: Option<Box<Outer>>) -> Outer {
        Outer {
            list: vec![
                Inner { zeta: 1, alpha: Some(0.1), gone: None, tag: Kind::Plain },
                Inner { zeta: 2, alpha: None, gone: Some(3), tag: Kind::With(4) },
            ],
            by: [(10, 1), (9, 2), (100, 3)].into(),
            big: 1 << 70 >> 10,
            tuple: (7, "x\"y".into()),
            id: Id(5),
            small: 0.1,
            nan: f64::NAN,
            tree: json!({"b": [1, {"d": 2, "c": 3}], "a": null}),
            nested,
            empty: Vec::new(),
            a_key: 'é',
        }
    }

    /// Written through `AsTree`, a value is the bytes of its tree, compact
    /// and pretty, and the same tree.
    #[test]
    fn a_value_writes_as_its_tree() {
        let v = outer(Some(Box::new(outer(None))));
        let tree = serde_json::to_value(&v).unwrap();
        assert_eq!(serde_json::to_string(&AsTree(&v)).unwrap(), tree.to_string());
        assert_eq!(
            serde_json::to_string_pretty(&AsTree(&v)).unwrap(),
            serde_json::to_string_pretty(&tree).unwrap()
        );
        assert_eq!(serde_json::to_value(AsTree(&v)).unwrap(), tree);
        // what the tree refuses, the walk refuses
        #[derive(Serialize)]
        struct Huge {
            n: u128,
        }
        assert!(serde_json::to_value(Huge { n: u128::MAX }).is_err());
        assert!(serde_json::to_string(&AsTree(&Huge { n: u128::MAX })).is_err());
    }
}
