//! A hash of structured values that is stable across runs, machines and
//! Rust versions: SHA-256 over a canonical encoding defined here, never
//! `std::hash` (whose `DefaultHasher` is randomly keyed per process and may
//! change between Rust releases).
//!
//! # The canonical encoding (version 1; changing it changes every key)
//!
//! Every value starts with a one-byte type tag; integers are little-endian
//! at their full width; lengths and counts are `u64` little-endian, so
//! `("ab", "c")` and `("a", "bc")` never meet.
//!
//! | value | encoding |
//! |---|---|
//! | `u8` `u16` `u32` `u64` `u128` | `0x01`..`0x05`, then the integer |
//! | `i8` `i16` `i32` `i64` `i128` | `0x11`..`0x15`, then the integer (two's complement) |
//! | `usize` / `isize` | as `u64` / `i64` (same key on 32- and 64-bit machines) |
//! | `bool` | `0x20`, then `0` or `1` |
//! | `char` | `0x21`, then its scalar value as `u32` |
//! | `str`, `String` | `0x30`, length, UTF-8 bytes |
//! | [`Bytes`] | `0x31`, length, the bytes |
//! | `[T]`, `Vec<T>`, `[T; N]` | `0x40`, count, each element |
//! | tuples (up to 8) | `0x50`, arity as one byte, each element |
//! | `Option<T>` | `0x60` for `None`; `0x61`, then the value |
//! | `()` | `0x70` |
//!
//! References and `Box` encode as what they point to.

use sha2::{Digest, Sha256};

/// A value with a stable, documented hash (see the [module docs](self) for
/// the encoding). Implement it for your own types by hashing their fields
/// in a fixed order, e.g. as a tuple:
///
/// ```
/// use quorate_spinlock::{StableHash, StableHasher};
/// struct Report { customer: u64, month: String }
/// impl StableHash for Report {
///     fn stable_hash(&self, hasher: &mut StableHasher) {
///         (&self.customer, &self.month).stable_hash(hasher);
///     }
/// }
/// ```
pub trait StableHash {
    /// Feeds the canonical encoding of `self` to `hasher`.
    fn stable_hash(&self, hasher: &mut StableHasher);

    /// The text of a plain string (`str`, `String`, and references to
    /// them), `None` for anything else: [`SpinKey::hashed`](crate::SpinKey::hashed)
    /// keys a string by its text, as `SpinKey::from` does, so that the two
    /// ways of naming a string's lock are one key. Leave the default.
    fn key_text(&self) -> Option<&str> {
        None
    }
}

/// SHA-256 over canonical encodings.
#[derive(Clone, Debug, Default)]
pub struct StableHasher {
    sha: Sha256,
}

impl StableHasher {
    /// An empty hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one value.
    pub fn update<T: StableHash + ?Sized>(&mut self, value: &T) -> &mut Self {
        value.stable_hash(self);
        self
    }

    /// The SHA-256 digest of everything fed so far.
    pub fn finish(self) -> [u8; 32] {
        self.sha.finalize().into()
    }

    /// Raw bytes, with no tag or length: for [`StableHash`] impls that
    /// define their own framing.
    pub fn write_raw(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
    }

    fn tag(&mut self, tag: u8) {
        self.sha.update([tag]);
    }

    fn len(&mut self, len: usize) {
        // usize fits in u64 on every supported target
        self.sha.update((len as u64).to_le_bytes());
    }
}

/// The SHA-256 of `value`'s canonical encoding.
pub fn stable_hash<T: StableHash + ?Sized>(value: &T) -> [u8; 32] {
    let mut hasher = StableHasher::new();
    hasher.update(value);
    hasher.finish()
}

/// Raw bytes as one value (tag `0x31`), as opposed to `[u8]`, which is a
/// sequence of tagged `u8` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bytes<'a>(pub &'a [u8]);

macro_rules! int {
    ($($t:ty => $tag:expr),*) => {$(
        impl StableHash for $t {
            fn stable_hash(&self, hasher: &mut StableHasher) {
                hasher.tag($tag);
                hasher.write_raw(&self.to_le_bytes());
            }
        }
    )*};
}

int!(u8 => 0x01, u16 => 0x02, u32 => 0x03, u64 => 0x04, u128 => 0x05,
     i8 => 0x11, i16 => 0x12, i32 => 0x13, i64 => 0x14, i128 => 0x15);

impl StableHash for usize {
    fn stable_hash(&self, hasher: &mut StableHasher) {
        (*self as u64).stable_hash(hasher);
    }
}

impl StableHash for isize {
    fn stable_hash(&self, hasher: &mut StableHasher) {
        (*self as i64).stable_hash(hasher);
    }
}

impl StableHash for bool {
    fn stable_hash(&self, hasher: &mut StableHasher) {
        hasher.tag(0x20);
        hasher.write_raw(&[u8::from(*self)]);
    }
}

impl StableHash for char {
    fn stable_hash(&self, hasher: &mut StableHasher) {
        hasher.tag(0x21);
        hasher.write_raw(&u32::from(*self).to_le_bytes());
    }
}

impl StableHash for str {
    fn stable_hash(&self, hasher: &mut StableHasher) {
        hasher.tag(0x30);
        hasher.len(self.len());
        hasher.write_raw(self.as_bytes());
    }

    fn key_text(&self) -> Option<&str> {
        Some(self)
    }
}

impl StableHash for String {
    fn stable_hash(&self, hasher: &mut StableHasher) {
        self.as_str().stable_hash(hasher);
    }

    fn key_text(&self) -> Option<&str> {
        Some(self)
    }
}

impl StableHash for Bytes<'_> {
    fn stable_hash(&self, hasher: &mut StableHasher) {
        hasher.tag(0x31);
        hasher.len(self.0.len());
        hasher.write_raw(self.0);
    }
}

impl<T: StableHash> StableHash for [T] {
    fn stable_hash(&self, hasher: &mut StableHasher) {
        hasher.tag(0x40);
        hasher.len(self.len());
        for item in self {
            item.stable_hash(hasher);
        }
    }
}

impl<T: StableHash> StableHash for Vec<T> {
    fn stable_hash(&self, hasher: &mut StableHasher) {
        self.as_slice().stable_hash(hasher);
    }
}

impl<T: StableHash, const N: usize> StableHash for [T; N] {
    fn stable_hash(&self, hasher: &mut StableHasher) {
        self.as_slice().stable_hash(hasher);
    }
}

impl<T: StableHash> StableHash for Option<T> {
    fn stable_hash(&self, hasher: &mut StableHasher) {
        match self {
            None => hasher.tag(0x60),
            Some(value) => {
                hasher.tag(0x61);
                value.stable_hash(hasher);
            }
        }
    }
}

impl StableHash for () {
    fn stable_hash(&self, hasher: &mut StableHasher) {
        hasher.tag(0x70);
    }
}

impl<T: StableHash + ?Sized> StableHash for &T {
    fn stable_hash(&self, hasher: &mut StableHasher) {
        (**self).stable_hash(hasher);
    }

    fn key_text(&self) -> Option<&str> {
        (**self).key_text()
    }
}

impl<T: StableHash + ?Sized> StableHash for Box<T> {
    fn stable_hash(&self, hasher: &mut StableHasher) {
        (**self).stable_hash(hasher);
    }

    fn key_text(&self) -> Option<&str> {
        (**self).key_text()
    }
}

macro_rules! tuple {
    ($n:expr; $($name:ident),+) => {
        impl<$($name: StableHash),+> StableHash for ($($name,)+) {
            #[allow(non_snake_case)]
            fn stable_hash(&self, hasher: &mut StableHasher) {
                hasher.tag(0x50);
                hasher.write_raw(&[$n]);
                let ($($name,)+) = self;
                $($name.stable_hash(hasher);)+
            }
        }
    };
}

tuple!(1; A);
tuple!(2; A, B);
tuple!(3; A, B, C);
tuple!(4; A, B, C, D);
tuple!(5; A, B, C, D, E);
tuple!(6; A, B, C, D, E, F);
tuple!(7; A, B, C, D, E, F, G);
tuple!(8; A, B, C, D, E, F, G, H);

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(digest: [u8; 32]) -> String {
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Pinned digests, computed independently (Python's hashlib over the
    /// documented encoding). A failure here means every stored key changed.
    #[test]
    fn known_values_are_pinned() {
        let cases: [(&str, String); 6] = [
            ("str", hex(stable_hash("example"))),
            ("u64", hex(stable_hash(&42u64))),
            ("tuple", hex(stable_hash(&("ab", "c")))),
            ("vec", hex(stable_hash(&vec![1u32, 2, 3]))),
            ("option", hex(stable_hash(&(Some(-7i64), None::<bool>)))),
            ("bytes", hex(stable_hash(&Bytes(b"\x00\xff")))),
        ];
        for (name, got) in cases {
            assert_eq!(got, pinned(name), "{name}");
        }
    }

    fn pinned(name: &str) -> &'static str {
        match name {
            "str" => "5a2e7de372594480ff5032f35c1902da63c1b997ea1be2028fcf53bb154a7ec3",
            "u64" => "428a1f12528e84d38f4b25d8e74d121090ff32293cff8f52d28f68c58f16bdd1",
            "tuple" => "5ac7043d950767632440c0f0a2e504ba07aab4ffdaf19a11f7fbf34ff2a40ca0",
            "vec" => "8387e82017f43fcd498c148269647c387e79109bcb81ea3dc856de4f87abe608",
            "option" => "7f98cfd928643fc8090091cbd64a312e5549b09974e50b7d8774dbf51c51129f",
            _ => "bbe83890c324989c04b6abb0799898b8d50c21e7771a3b642959a6fec9a4797f",
        }
    }

    #[test]
    fn framing_keeps_neighbours_apart() {
        assert_ne!(stable_hash(&("ab", "c")), stable_hash(&("a", "bc")));
        assert_ne!(stable_hash(&1u32), stable_hash(&1u64));
        assert_ne!(stable_hash(&vec![1u8, 2]), stable_hash(&Bytes(&[1, 2])));
        assert_ne!(stable_hash(&(1u8,)), stable_hash(&1u8));
        assert_ne!(stable_hash(&Some(())), stable_hash(&None::<()>));
        assert_ne!(
            stable_hash(&vec![vec![1u8], vec![]]),
            stable_hash(&vec![vec![], vec![1u8]])
        );
    }

    #[test]
    fn same_value_same_digest_through_any_indirection() {
        let owned = String::from("k");
        assert_eq!(stable_hash(&owned), stable_hash("k"));
        assert_eq!(stable_hash(&Box::new(5usize)), stable_hash(&5u64));
        assert_eq!(stable_hash(&[1i32, 2]), stable_hash(&vec![1i32, 2]));
    }
}
